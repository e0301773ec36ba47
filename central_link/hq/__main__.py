"""``python -m central_link.hq -c hq.toml``: run the HQ hub until SIGINT / SIGTERM; ``... agents add``: accounts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys
from dataclasses import replace

from ..tls import TlsConfigError
from .config import HubConfigError, load
from .hub import Hub


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m central_link.hq",
                                description="Run the HQ hub: nodes connect to wss://127.0.0.1:PORT/node with their "
                                            "certificates (docs/central-link.md).")
    p.add_argument("-c", "--config", default="hq.toml", help="the hub's configuration file (default hq.toml)")
    p.add_argument("--port", type=int, help="listen on this port instead of the configuration's (0: any free one)")
    p.add_argument("-v", "--verbose", action="store_true", help="log each connection, not only refusals")
    p.add_argument("--nodes", action="store_true", help="print the node registry (from the hub's database) and exit")
    return p


def show_nodes(cfg) -> None:
    """The registry as the running hub keeps it: every node it knows, connected or not, its versions and lines."""
    from .store import HubStore

    store = HubStore(cfg.data_dir / "hq.db")
    try:
        rows = list(store.db.query("SELECT id FROM nodes ORDER BY id"))
        for r in rows:
            n = store.node(r["id"])
            lines = ", ".join(f"{ln['line']} {ln['state']}" for ln in n["lines"]) or "-"
            state = ("connected from " + n["address"]) if n["connected"] else "not connected"
            listed = "" if n["allowed"] else " (no longer in [hub] nodes)"
            print(f"{n['id']}{listed}: {state}; software {n['software'] or '-'}, firmware {n['firmware'] or '-'}; "
                  f"lines {lines}; last seen {n['last_seen'] or 'never'}")
        if not rows:
            print("no nodes: list them in [hub] nodes")
    finally:
        store.close()


async def _run(hub: Hub) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await hub.start()
    print(f"hub up: wss://127.0.0.1:{port}/node", flush=True)  # the line a supervisor waits for
    print(f"agent console: https://127.0.0.1:{hub.console_port}/agent/", flush=True)
    try:
        await stop.wait()
    finally:
        await hub.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agents"]:  # the accounts command: `agents add NAME --role ROLE`
        from .admin import main as agents

        return agents(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        cfg = load(args.config)
        if args.port is not None:
            if not 0 <= args.port <= 65535:
                raise HubConfigError(cfg.path, [f"--port {args.port}: use 0 to 65535"])
            cfg = replace(cfg, port=args.port)
        if args.nodes:
            show_nodes(cfg)
            return 0
        hub = Hub(cfg)
        asyncio.run(_run(hub))
    except (HubConfigError, TlsConfigError) as exc:
        print(f"central_link.hq: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        print(f"central_link.hq: the hub database in {cfg.data_dir} cannot be used ({exc}): move it aside and "
              "restore the last backup", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"central_link.hq: cannot listen: {exc.strerror or exc} (is another hub on that port? try --port)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
