"""``nodectl``: run the node and look after it (a thin CLI over the node_agent library)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from dataclasses import replace
from pathlib import Path

from central_link.certs import CertError
from firmware.image import ImageError

from . import account_import, cli_certs, cli_flash, cli_image
from .auth import Authenticator, AuthError, class_problem
from .config import ConfigError, NodeConfig, card_problem, load
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


class UsageError(Exception):
    """A command line that cannot be carried out; the message names the argument and what to do."""


def _config(args) -> NodeConfig:
    cfg = load(args.config)
    if getattr(args, "card", None):
        problem = card_problem(args.card)
        if problem:
            raise UsageError(f"--card: {problem}")
        cfg = replace(cfg, card=args.card)
    if getattr(args, "data_dir", None):
        cfg = replace(cfg, data_dir=Path(args.data_dir).resolve())
    return cfg


def _store(cfg: NodeConfig, args) -> Store:
    store = Store(cfg.data_dir / "node.db")
    # an admin's command waits this long for another writer, then says so (the daemon waits 30 s)
    store.db.execute(f"PRAGMA busy_timeout = {int(args.lock_wait * 1000)}")
    return store


def _auth(cfg: NodeConfig, args) -> Authenticator:
    return Authenticator(_store(cfg, args), max_daily_failures=cfg.max_daily_failures)


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
    try:
        return _show_status(cfg, st, args.json)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{cfg.data_dir / 'status.json'} is damaged or from another version of the node "
                         f"({type(exc).__name__}: {str(exc)[:80]}): a running node rewrites it every second; "
                         "if none is running, delete the file") from None


def _show_status(cfg: NodeConfig, st, as_json: bool) -> int:
    if st is None or time.time() - float(st["updated"]) > 5:
        print(f"node {cfg.node_id} is not running (no fresh status in {cfg.data_dir})")
        return 1
    if as_json:
        print(json.dumps(st, indent=2))
        return 0
    card = st["card"]
    print(f"node {st['node']}  version {st['version']}  up {st['uptime_s']} s  pid {st['pid']}")
    print(f"card {card['board'] or '-'} firmware {card['firmware'] or '-'}  "
          f"{'connected' if card['connected'] else 'NOT CONNECTED'} ({card['url']}), "
          f"bad frames {card['bad_frames']}, reconnects {card['reconnects']}")
    hq = st.get("hq")
    link = ("no HQ link configured" if hq is None else f"HQ {hq['url']} connected" if hq["connected"]
            else f"HQ {hq['url']} NOT CONNECTED ({hq['last_error'] or 'connecting'})")
    print(f"open alarms {st['open_alarms']}, items waiting for HQ {st['outbox_pending']}, {link}\n")
    print(table(["line", "number", "flow", "state", "calls", "caller", "at"],
                [[ln["line"], ln["number"], ln["flow"], ln["state"], ln["calls"], ln["caller"] or "-",
                  ln["node"] or "-"] for ln in st["lines"]]))
    return 0


def cmd_accounts(args) -> int:
    cfg = _config(args)
    auth = _auth(cfg, args)
    if args.action == "add":
        name = (args.name or "").strip()
        problem = account_import.name_problem(name)
        if problem:
            raise UsageError(f"--name: {problem}")
        if problem := class_problem(args.account_class):
            raise UsageError(f"--class: {problem}")
        auth.add_account(args.account, _read_pin(args), name=name, account_class=args.account_class,
                         replace=args.replace)
        print(f"account {args.account} {'updated' if args.replace else 'added'}")
    elif args.action == "import":
        return _import(auth.store, Path(args.csv), replace=args.replace, all_or_nothing=args.all_or_nothing)
    elif args.action == "list":
        rows = auth.accounts()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(table(["account", "name", "class", "disabled", "blacklisted", "created"],
                        [[r["id"], r["name"] or "-", r["account_class"] or "-", "yes" if r["disabled"] else "no",
                          "YES" if r["blacklisted"] else "no", r["created"]] for r in rows]))
    elif args.action in ("disable", "enable"):
        auth.set_disabled(args.account, args.action == "disable")
        print(f"account {args.account} {args.action}d")
    return 0


def _read_pin(args) -> str:
    if args.pin_stdin:
        try:
            return sys.stdin.readline(64).strip()
        except UnicodeDecodeError:
            raise UsageError("--pin-stdin: standard input is not text: give the PIN as digits and a newline") from None
    if not sys.stdin.isatty():
        raise UsageError(f"accounts add {args.account}: there is no terminal to ask for the PIN: "
                         "give it on standard input with --pin-stdin")
    return getpass.getpass(f"PIN for {args.account}: ")


def _import(store: Store, path: Path, *, replace: bool, all_or_nothing: bool) -> int:
    """CSV with columns account,pin[,name]: bad rows reported by their line in the file."""
    try:
        checked = account_import.read_rows(path)
    except account_import.CsvError as exc:
        print(f"nodectl: {exc}", file=sys.stderr)
        return 2
    _print_some(checked.errors)
    if checked.errors and all_or_nothing:
        print(f"nodectl: {len(checked.errors)} bad row(s): nothing imported (--all-or-nothing)", file=sys.stderr)
        return 1
    rows = checked.rows
    print(f"{path}: {len(rows)} good row(s); hashing their PINs on {account_import.cores()} core(s)",
          file=sys.stderr, flush=True)
    result = account_import.Result()
    # a `kill` stops an import as Ctrl-C does: the batches committed stay, the summary says so
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        account_import.import_rows(store, rows, path, replace=replace, all_or_nothing=all_or_nothing,
                                   progress=account_import.Progress(len(rows), sys.stderr), result=result)
    except KeyboardInterrupt:
        kept = ("nothing was imported (--all-or-nothing)" if all_or_nothing else
                f"{result.committed} account(s) were committed and are whole, the rest not started: "
                "run the same import again to finish it")
        print(f"\nnodectl: import of {path} interrupted: {kept}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print_some(result.refused)
    if all_or_nothing and result.refused:
        print(f"nodectl: {len(result.refused)} row(s) would change existing accounts: nothing imported "
              "(--all-or-nothing; --replace to change them)", file=sys.stderr)
        return 1
    parts = [f"imported {result.added} new account(s)"]
    if result.replaced:
        parts.append(f"{result.replaced} replaced")
    if result.unchanged:
        parts.append(f"{result.unchanged} already as in the file")
    if result.refused:
        parts.append(f"{len(result.refused)} refused (exist already; --replace to change them), listed above")
    if checked.errors:
        parts.append(f"{len(checked.errors)} bad row(s) skipped, listed above")
    print("; ".join(parts))
    return 1 if checked.errors or result.refused else 0


def _print_some(lines: list[str], limit: int = 200) -> None:
    for line in lines[:limit]:
        print(line, file=sys.stderr)
    if len(lines) > limit:
        print(f"... and {len(lines) - limit} more like these", file=sys.stderr)


def cmd_alarms(args) -> int:
    auth = _auth(_config(args), args)
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
    store = _store(cfg, args)
    rows = list(store.db.query("SELECT * FROM call_records ORDER BY started DESC LIMIT ?", [args.limit]))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    print(table(["started", "line", "caller", "disposition", "auth", "path"],
                [[(r["started"] or "-")[:19], r["line"], r["caller_number"] or "-", r["disposition"] or "-",
                  r["auth_outcome"] or "-", _ivr_path(r["ivr_path"])] for r in rows]) if rows else "no calls yet")
    return 0


def _ivr_path(raw: str | None) -> str:
    try:
        path = json.loads(raw or "[]")
        return " > ".join(str(p) for p in path) if isinstance(path, list) else "?"
    except ValueError:
        return "?"


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
        unknown = [lang for lang in args.language or [] if lang not in lib.languages]
        if unknown:
            raise UsageError(f"--language {unknown[0][:20]!r}: callers of {cfg.path} hear "
                             f"{', '.join(lib.languages)}: choose among them")
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
    p.add_argument("--lock-wait", type=_bounded(float, 0, 3600, "seconds"), metavar="S",
                   default=unset if after_command else 10.0,
                   help="how long to wait for the database while another process writes to it (default 10 s)")


def _bounded(kind: type, lo: float, hi: float, what: str):
    """An argparse type: a number from lo to hi (a 20-digit id must not reach SQLite as an overflow)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:30]!r} is not a number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text[:30]} is out of range: {what} from {kind(lo)} to {kind(hi)}")
        return value
    parse.__name__ = kind.__name__
    return parse


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
    add.add_argument("--class", dest="account_class", default="", metavar="CLASS",
                     help="the account's class (e.g. vip): sent to HQ with a verified caller's call, whose "
                          "queue may rank it ([priorities] classes at HQ)")
    add.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")
    add.add_argument("--replace", action="store_true", help="set a new PIN for an existing account")
    imp = asub.add_parser("import", parents=[common], help="import accounts from a CSV (account,pin[,name][,class])")
    imp.add_argument("csv")
    imp.add_argument("--all-or-nothing", action="store_true",
                     help="import nothing if any row is bad or would change an account, and nothing if "
                          "interrupted (default: import the good rows in batches, report the bad)")
    imp.add_argument("--replace", action="store_true",
                     help="set the PIN, name and class of accounts that exist already (default: refuse, and list them)")
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
    clr.add_argument("id", type=_bounded(int, 1, 2**63 - 1, "an alarm id"))
    clr.add_argument("--by", default=os.environ.get("USER", "admin"), help="who cleared it (default $USER)")
    c = sub.add_parser("calls", parents=[common], help="call records, newest first")
    c.add_argument("--json", action="store_true")
    c.add_argument("--limit", type=_bounded(int, 1, 1_000_000, "a number of calls"), default=50)
    cf = sub.add_parser("config", parents=[common], help="configuration tools")
    cfsub = cf.add_subparsers(dest="action", required=True)
    cfsub.add_parser("check", parents=[common], help="check the configuration and say exactly what is wrong")
    pr = sub.add_parser("prompts", parents=[common], help="prompt tools")
    prsub = pr.add_subparsers(dest="action", required=True)
    prsub.add_parser("build", parents=[common], help="synthesise / convert every prompt into the cache now")
    ex = prsub.add_parser("export", parents=[common], help="write every prompt as WAV (NAME.LANG.wav) to listen to")
    ex.add_argument("folder")
    ex.add_argument("--language", action="append", help="only this language (repeatable; default all the callers hear)")
    cli_image.add_parser(sub, common)
    cli_flash.add_parser(sub, common)
    cli_certs.add_parser(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; whatever the input, the answer is a message and an exit status, not a traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    handlers = {"run": cmd_run, "status": cmd_status, "accounts": cmd_accounts, "alarms": cmd_alarms,
                "calls": cmd_calls, "config": cmd_config_check, "prompts": cmd_prompts, "image": cli_image.run,
                "flash": cli_flash.run_flash, "card": cli_flash.run_card, "certs": cli_certs.run}
    try:
        return handlers[args.cmd](args)
    except (ConfigError, AuthError, StoreError, PromptError, UsageError, ImageError, CertError) as exc:
        print(f"nodectl: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            return _unexpected(exc)
        print(f"nodectl: the node database in {_data_dir(args)} is locked by another writer (another "
              f"nodectl, or a sqlite3 shell) and stayed so for {args.lock_wait:g} s: try again when it is "
              "done, or give --lock-wait more seconds", file=sys.stderr)
        return 75  # EX_TEMPFAIL: trying again later can work
    except BrokenPipeError:  # `nodectl calls | head`: the reader has all it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter flushes it at exit
        return 141
    except OSError as exc:
        where = exc.filename if exc.filename is not None else "a file"
        print(f"nodectl: {where}: {exc.strerror or exc}: check the path and its permissions", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a message, never a traceback
        return _unexpected(exc)


def _data_dir(args) -> str:
    try:
        return str(_config(args).data_dir)
    except Exception:  # noqa: BLE001 - only for a message
        return "the data directory"


def _unexpected(exc: BaseException) -> int:
    logging.getLogger("nodectl").info("what failed", exc_info=exc)  # the traceback only with -v
    print(f"nodectl: unexpected error ({type(exc).__name__}: {str(exc)[:200]}): this is a bug; please report "
          "it with the command you ran (-v shows where it happened)", file=sys.stderr)
    return 70  # EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
