"""``python -m central_link.hq agents add NAME --role ROLE [-c hq.toml]``: create an agent account.

The password is read from stdin when it is not a terminal (one line), else asked twice at a prompt;
it is never an argument (arguments show in `ps` and the shell's history).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from .agents import Role
from .config import HubConfigError, load
from .store import HubStore


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m central_link.hq agents",
                                description="Manage the hub's agent accounts (in the hub's database).")
    p.add_argument("-c", "--config", default="hq.toml", help="the hub's configuration file (default hq.toml)")
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create an agent; the password from stdin or a prompt")
    add.add_argument("name")
    add.add_argument("--role", choices=[str(r) for r in Role], default=str(Role.AGENT))
    sub.add_parser("list", help="list the agents and their roles")
    return p


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ: run the command again")
    return first


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load(args.config)
    except HubConfigError as exc:
        print(f"central_link.hq agents: {exc}", file=sys.stderr)
        return 2
    store = HubStore(cfg.data_dir / "hq.db")
    try:
        if args.action == "list":
            for a in store.agents():
                print(f"{a['name']}: {a['role']} (since {a['created']})")
            return 0
        store.add_agent(args.name, args.role, _password())
    except ValueError as exc:
        print(f"central_link.hq agents add: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"agent {args.name} added as {args.role}")
    return 0
