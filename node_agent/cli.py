"""``nodectl``: run the node and look after it (a thin CLI over the node_agent library)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from .auth import ACCOUNT_RE, PIN_RE, Authenticator, AuthError
from .config import ConfigError, NodeConfig, load
from .daemon import Node, read_status
from .prompts import PromptError, PromptLibrary
from .store import Store, StoreError

DEFAULT_CONFIG = os.environ.get("BRANCHNODE_CONFIG", "branch.toml")


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def _config(args) -> NodeConfig:
    cfg = load(args.config)
    if getattr(args, "card", None):
        cfg = replace(cfg, card=args.card)
    if getattr(args, "data_dir", None):
        cfg = replace(cfg, data_dir=Path(args.data_dir).resolve())
    return cfg


def _auth(cfg: NodeConfig) -> Authenticator:
    return Authenticator(Store(cfg.data_dir / "node.db"), max_daily_failures=cfg.max_daily_failures)


def cmd_run(args) -> int:
    cfg = _config(args)
    node = Node(cfg)

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(node.run(ready))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async def announce() -> None:  # the line `make run` and service managers wait for
            await ready.wait()
            ident = node.board.identity
            print(f"node {cfg.node_id} up: card {ident.board_id} firmware {ident.firmware}, answering on "
                  f"line(s) {', '.join(str(r.line.number) for r in node.runners)}", flush=True)

        waiter, up = asyncio.create_task(stop.wait()), asyncio.create_task(announce())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    print(f"node {cfg.node_id}: card {cfg.card}, data in {cfg.data_dir}", flush=True)
    asyncio.run(main())
    return 0


def cmd_status(args) -> int:
    cfg = _config(args)
    st = read_status(cfg.data_dir)
    if st is None or time.time() - st["updated"] > 5:
        print(f"node {cfg.node_id} is not running (no fresh status in {cfg.data_dir})")
        return 1
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    card = st["card"]
    print(f"node {st['node']}  version {st['version']}  up {st['uptime_s']} s  pid {st['pid']}")
    print(f"card {card['board'] or '-'} firmware {card['firmware'] or '-'}  "
          f"{'connected' if card['connected'] else 'NOT CONNECTED'} ({card['url']}), "
          f"bad frames {card['bad_frames']}, reconnects {card['reconnects']}")
    print(f"open alarms {st['open_alarms']}, items waiting for HQ {st['outbox_pending']}\n")
    print(table(["line", "number", "flow", "state", "calls", "caller", "at"],
                [[ln["line"], ln["number"], ln["flow"], ln["state"], ln["calls"], ln["caller"] or "-",
                  ln["node"] or "-"] for ln in st["lines"]]))
    return 0


def cmd_accounts(args) -> int:
    cfg = _config(args)
    auth = _auth(cfg)
    if args.action == "add":
        pin = sys.stdin.readline().strip() if args.pin_stdin else getpass.getpass(f"PIN for {args.account}: ")
        auth.add_account(args.account, pin, name=args.name or "", replace=args.replace)
        print(f"account {args.account} {'updated' if args.replace else 'added'}")
    elif args.action == "import":
        return _import(auth, Path(args.csv), args.all_or_nothing)
    elif args.action == "list":
        rows = auth.accounts()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(table(["account", "name", "disabled", "blacklisted", "created"],
                        [[r["id"], r["name"] or "-", "yes" if r["disabled"] else "no",
                          "YES" if r["blacklisted"] else "no", r["created"]] for r in rows]))
    elif args.action in ("disable", "enable"):
        auth.set_disabled(args.account, args.action == "disable")
        print(f"account {args.account} {args.action}d")
    return 0


def _import(auth: Authenticator, path: Path, all_or_nothing: bool) -> int:
    """CSV with columns account,pin[,name]. Bad rows are reported by line number."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        print(f"nodectl: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"account", "pin"} <= set(reader.fieldnames):
        print(f"nodectl: {path}: the first line must name the columns account,pin[,name]", file=sys.stderr)
        return 2
    good, errors = [], []
    for lineno, row in enumerate(reader, start=2):
        acct, pin, name = (row.get("account") or "").strip(), (row.get("pin") or "").strip(), (row.get("name") or "").strip()
        if not ACCOUNT_RE.match(acct):
            errors.append(f"{path}:{lineno}: account {acct!r} must be 4 to 20 digits")
        elif not PIN_RE.match(pin):
            errors.append(f"{path}:{lineno}: account {acct}: the PIN must be 4 to 12 digits")
        elif any(g[0] == acct for g in good):
            errors.append(f"{path}:{lineno}: account {acct} appears twice")
        else:
            good.append((acct, pin, name))
    for e in errors:
        print(e, file=sys.stderr)
    if errors and all_or_nothing:
        print(f"nodectl: {len(errors)} bad row(s): nothing imported (--all-or-nothing)", file=sys.stderr)
        return 1
    for acct, pin, name in good:
        auth.add_account(acct, pin, name=name, replace=True)
    print(f"imported {len(good)} account(s)" + (f"; {len(errors)} bad row(s) skipped, listed above" if errors else ""))
    return 1 if errors else 0


def cmd_alarms(args) -> int:
    auth = _auth(_config(args))
    if args.action == "clear":
        a = auth.clear_alarm(args.id, by=args.by)
        print(f"alarm {a['id']} ({a['kind']}, account {a['account']}) cleared")
        return 0
    rows = auth.alarms(include_cleared=args.all)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(["id", "kind", "account", "raised", "detail", "cleared"],
                    [[r["id"], r["kind"], r["account"], r["raised_at"], r["detail"],
                      r["cleared_at"] or "-"] for r in rows]) if rows else "no open alarms")
    return 0


def cmd_calls(args) -> int:
    cfg = _config(args)
    store = Store(cfg.data_dir / "node.db")
    rows = list(store.db.query("SELECT * FROM call_records ORDER BY started DESC LIMIT ?", [args.limit]))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    print(table(["started", "line", "caller", "disposition", "auth", "path"],
                [[r["started"][:19], r["line"], r["caller_number"] or "-", r["disposition"], r["auth_outcome"] or "-",
                  " > ".join(json.loads(r["ivr_path"] or "[]"))] for r in rows]) if rows else "no calls yet")
    return 0


def cmd_config_check(args) -> int:
    cfg = load(args.config)
    n = sum(len(f.nodes) for f in cfg.flows.values())
    print(f"{args.config}: OK — node {cfg.node_id}, {len(cfg.lines)} line(s), {len(cfg.flows)} flow(s), "
          f"{n} node(s), {len(cfg.prompts)} prompt(s)")
    return 0


def cmd_prompts(args) -> int:
    cfg = _config(args)
    lib = PromptLibrary(cfg)
    if args.action == "export":
        files = lib.export(Path(args.folder), args.language or None)
        print(f"prompts: {len(files)} WAV file(s) written to {args.folder}")
        return 0
    r = lib.build()
    print(f"prompts: {r.built} built, {r.cached} already cached, in {r.cache_dir}")
    return 0


def _common_options(p: argparse.ArgumentParser, *, after_command: bool) -> None:
    # after the command (`nodectl run -c FILE`) an option left out must not reset what was given
    # before the command: there it has no default at all
    unset = argparse.SUPPRESS
    p.add_argument("-c", "--config", default=unset if after_command else DEFAULT_CONFIG,
                   help=f"the node's configuration (default {DEFAULT_CONFIG}, or $BRANCHNODE_CONFIG)")
    p.add_argument("--data-dir", default=unset if after_command else None,
                   help="override the configuration's data directory")
    p.add_argument("-v", "--verbose", action="store_true", default=unset if after_command else False,
                   help="log what the node does")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nodectl", description="Run and look after a branchnode node.")
    _common_options(p, after_command=False)
    common = argparse.ArgumentParser(add_help=False)  # the same options, accepted after any command
    _common_options(common, after_command=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", parents=[common], help="run the node daemon",
                       description="Answer calls on the configured lines until stopped (SIGTERM or Ctrl-C). "
                                   "Waits for the card if it is not there yet. `python -m node_agent` is the same.")
    r.add_argument("--card", help="override the configuration's card URL")
    s = sub.add_parser("status", parents=[common], help="lines, calls, card link and versions of the running node")
    s.add_argument("--json", action="store_true")
    a = sub.add_parser("accounts", parents=[common], help="caller accounts for keypad authentication")
    asub = a.add_subparsers(dest="action", required=True)
    add = asub.add_parser("add", parents=[common], help="add an account (the PIN is asked for, never an argument)")
    add.add_argument("account")
    add.add_argument("--name")
    add.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")
    add.add_argument("--replace", action="store_true", help="set a new PIN for an existing account")
    imp = asub.add_parser("import", parents=[common], help="import accounts from a CSV (account,pin[,name])")
    imp.add_argument("csv")
    imp.add_argument("--all-or-nothing", action="store_true",
                     help="import nothing if any row is bad (default: import the good rows, report the bad)")
    ls = asub.add_parser("list", parents=[common], help="list accounts (never PINs)")
    ls.add_argument("--json", action="store_true")
    for verb in ("disable", "enable"):
        d = asub.add_parser(verb, parents=[common], help=f"{verb} an account")
        d.add_argument("account")
    al = sub.add_parser("alarms", parents=[common], help="blacklist alarms")
    alsub = al.add_subparsers(dest="action", required=True)
    all_ = alsub.add_parser("list", parents=[common], help="open alarms")
    all_.add_argument("--all", action="store_true", help="include cleared ones")
    all_.add_argument("--json", action="store_true")
    clr = alsub.add_parser("clear", parents=[common], help="clear an alarm: its account works again")
    clr.add_argument("id", type=int)
    clr.add_argument("--by", default=os.environ.get("USER", "admin"), help="who cleared it (default $USER)")
    c = sub.add_parser("calls", parents=[common], help="call records, newest first")
    c.add_argument("--json", action="store_true")
    c.add_argument("--limit", type=int, default=50)
    cf = sub.add_parser("config", parents=[common], help="configuration tools")
    cfsub = cf.add_subparsers(dest="action", required=True)
    cfsub.add_parser("check", parents=[common], help="check the configuration and say exactly what is wrong")
    pr = sub.add_parser("prompts", parents=[common], help="prompt tools")
    prsub = pr.add_subparsers(dest="action", required=True)
    prsub.add_parser("build", parents=[common], help="synthesise / convert every prompt into the cache now")
    ex = prsub.add_parser("export", parents=[common], help="write every prompt as WAV (NAME.LANG.wav) to listen to")
    ex.add_argument("folder")
    ex.add_argument("--language", action="append", help="only this language (repeatable; default all the callers hear)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    handlers = {"run": cmd_run, "status": cmd_status, "accounts": cmd_accounts, "alarms": cmd_alarms,
                "calls": cmd_calls, "config": cmd_config_check, "prompts": cmd_prompts}
    try:
        return handlers[args.cmd](args)
    except ConfigError as exc:
        print(f"nodectl: {exc}", file=sys.stderr)
        return 2
    except (AuthError, StoreError, PromptError) as exc:
        print(f"nodectl: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
