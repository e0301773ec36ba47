"""``python -m node_agent --card URL``: run the (minimal) branch node against a line card."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import hal

from .minimal import MinimalNode, greeting


async def amain(args: argparse.Namespace) -> int:
    board = hal.open(args.card, hal.BoardConfig(country=args.country))
    try:
        await board.start(timeout=args.connect_timeout)
    except ConnectionError as exc:
        print(f"node_agent: {exc}", file=sys.stderr)
        return 2
    ident = board.identity
    print(f"node up: card {ident.board_id} firmware {ident.firmware}, {ident.channels} lines ({ident.law})", flush=True)
    node = MinimalNode(board, greeting_pcm=greeting(args.greeting, args.voice))
    task = asyncio.create_task(node.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    task.cancel()
    await board.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m node_agent", description="Run the branch node against a line card.")
    p.add_argument("--card", required=True, help="card URL: /dev/ttyACM0 or socket://127.0.0.1:PORT")
    p.add_argument("--country", choices=("cn", "na"), default="cn", help="tones on the lines (default cn)")
    p.add_argument("--greeting", default="Welcome to the branch. Please key your account number.",
                   help="text spoken after answering")
    p.add_argument("--voice", default="en", help="espeak-ng voice for the greeting (default en)")
    p.add_argument("--connect-timeout", type=float, default=10, help="seconds to wait for the card")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
