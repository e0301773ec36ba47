"""``simctl``: serve a simulated line card, and script callers against it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from . import schema
from .client import SimClient, SimError

DEFAULT_SIM = "127.0.0.1:7001"


def _arg(f: schema.Field, cast=float):
    """An argparse type that checks a value as the control port would, with the same bounds."""

    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {f.describe()}, not {text!r}") from None
        try:
            f.check(v, "", schema.Context(channels=8))
        except schema.RequestError as exc:
            raise argparse.ArgumentTypeError(str(exc).strip()) from None
        return v

    return parse


def _field(op: str, name: str) -> schema.Field:
    f = schema.OPS[op].fields[name]
    return f.inner if isinstance(f, schema.Nullable) else f


def _cid(name: str) -> schema.Field:
    return _field("ring", "cid").fields[name]


_LINE = _arg(schema.Int(lo=1, hi=8), int)
_PORT = _arg(schema.Int(lo=0, hi=65535), int)
_MS = _arg(_field("listen", "ms"), int)


async def serve_card(args: argparse.Namespace) -> int:
    from .card import SimCard
    from .control import ControlServer

    # the firmware thread and the UART's pump threads share the GIL: switching every 1 ms (not
    # CPython's 5 ms) keeps a pump from waiting behind the firmware's work (docs/simulator.md)
    sys.setswitchinterval(0.001)
    card = SimCard(channels=args.channels, baud=args.baud, speed=args.speed, law=args.law,
                   country=args.country, port=args.port, seed=args.seed, flash=args.flash,
                   firmware_dir=args.firmware_dir).start()
    card.uart.faults.ber_up = card.uart.faults.ber_down = args.ber
    ctl = ControlServer(card)
    host, port = await ctl.start(port=args.control_port)
    info = {"serial": card.url, "control": f"{host}:{port}", "channels": args.channels, "baud": args.baud,
            "speed": args.speed, "flash": str(card.flash_path)}
    print(f"simulated line card: {args.channels} lines, {args.baud} baud, speed x{args.speed:g}")
    print(f"  serial port : {card.url}")
    print(f"  control     : {host}:{port}   (simctl call --sim {host}:{port} ...)")
    print(f"  flash       : {card.flash_path}", flush=True)
    if args.info_file:  # written whole, then renamed: a reader never sees half of it
        tmp = Path(args.info_file + ".tmp")
        try:
            tmp.write_text(json.dumps(info))
            tmp.replace(args.info_file)
        except OSError as exc:
            await ctl.close()
            card.stop()
            raise SimError(f"--info-file {args.info_file}: cannot write it ({exc.strerror})") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    st = await ctl.handle({"op": "status"})
    await ctl.close()
    card.stop()
    print("card stopped; serial counters:", json.dumps(st.get("port")), flush=True)
    return 0


def _ring_args(args: argparse.Namespace) -> dict:
    req: dict = {"line": args.line, "timeout_ms": args.answer_timeout * 1000, "max_rings": args.max_rings}
    if args.cid_number:
        req["cid"] = {"number": args.cid_number, "name": args.cid_name or "", "mode": args.cid_mode}
    if args.cadence:
        req["cadence"] = args.cadence
    return req


def load_script(path: str) -> list[dict]:
    """The steps of a ``--script`` file, or a :class:`SimError` that says where it is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SimError(f"{path}: cannot read the script ({exc})") from None
    try:
        steps = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise SimError(f"{path}: nested too deeply") from None
    if not isinstance(steps, list):
        raise SimError(f"{path}: a script is a JSON list of steps [{{\"op\": ...}}, ...]")
    for n, step in enumerate(steps, 1):
        if not isinstance(step, dict) or not isinstance(step.get("op"), str):
            raise SimError(f"{path}: step {n} must be an object with an \"op\" ({', '.join(schema.OPS)})")
    return steps


def call_steps(args: argparse.Namespace) -> list[dict]:
    """The requests of ``simctl call``: from ``--script``, or from its options."""
    if args.script:
        return load_script(args.script)
    steps = [{"op": "ring", **_ring_args(args)}]
    if args.greeting:
        steps.append({"op": "listen", "line": args.line, "ms": args.greeting})
    if args.digits:
        steps.append({"op": "dtmf", "line": args.line, "digits": args.digits, "on_ms": args.on_ms,
                      "off_ms": args.off_ms, "level_dbm0": args.level, "twist_db": args.twist,
                      "freq_offset": args.freq_offset})
    if args.say:
        steps.append({"op": "speak", "line": args.line, "text": args.say, "voice": args.voice})
    if args.play:
        steps.append({"op": "play", "line": args.line, "wav": str(Path(args.play).resolve())})
    if args.listen:
        steps.append({"op": "listen", "line": args.line, "ms": args.listen})
    if args.hangup:
        steps.append({"op": "hangup", "line": args.line, "mode": args.hangup})
    return steps


async def run_call(args: argparse.Namespace) -> int:
    report: dict = {"line": args.line, "steps": []}
    steps = call_steps(args)  # a bad script is refused before anything rings
    async with SimClient.parse(args.sim) as sim:
        for n, step in enumerate(steps, 1):
            step = dict(step)
            op = step.pop("op")
            if schema.takes_line(op):
                step.setdefault("line", args.line)
            try:
                result = await sim.call(op, **step)
            except SimError as exc:
                raise SimError(f"step {n} ({op}): {exc}") from None
            report["steps"].append({"op": op, **result})
            if op == "ring" and not result.get("answered"):
                report["error"] = "the node did not answer"
                break
    report["ok"] = "error" not in report
    print(json.dumps(report, indent=2 if args.pretty else None))
    return 0 if report["ok"] else 1


def print_ops() -> int:
    print(schema.bounds())
    return 0


async def run_simple(args: argparse.Namespace, op: str, **kw) -> int:
    async with SimClient.parse(args.sim) as sim:
        print(json.dumps(await sim.call(op, **kw), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simctl", description="Simulated line card and PSTN for branchnode.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the simulator does")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("card", help="serve a simulated line card (runs the real firmware)",
                       description="Run the card firmware under CPython behind a TCP port that stands for its "
                                   "USB serial port. Point the node at the printed socket:// URL.")
    c.add_argument("--channels", type=int, default=8, choices=range(1, 9), metavar="1-8", help="lines (default 8)")
    c.add_argument("--baud", type=_arg(schema.Int(lo=9600, hi=12_000_000), int), default=921600, help="serial speed the link is paced at (default 921600)")
    c.add_argument("--speed", type=_arg(schema.Num(lo=0.1, hi=100)), default=1.0, help="card clock speed, 1 = real time (default 1)")
    c.add_argument("--law", choices=("ulaw", "alaw"), default="ulaw", help="G.711 law of the codec (default ulaw)")
    c.add_argument("--country", choices=("cn", "na"), default="cn", help="ring cadence and tones (default cn)")
    c.add_argument("--port", type=_PORT, default=0, help="serial TCP port on 127.0.0.1 (default: any free)")
    c.add_argument("--control-port", type=_PORT, default=7001, help="control TCP port on 127.0.0.1 (default 7001)")
    c.add_argument("--ber", type=_arg(_field("fault", "ber")), default=0.0, help="bit-error rate injected both ways (default 0)")
    c.add_argument("--seed", type=_arg(schema.Int(lo=0, hi=2**31 - 1), int), default=1, help="seed for injected faults")
    c.add_argument("--info-file", help="write the serial URL and control address here as JSON")
    c.add_argument("--flash", help="the card's flash chip, kept in this file across power cycles and runs "
                                   "(created with the factory image if missing; default: a new file for this run)")
    c.add_argument("--firmware-dir", help="folder of card source trees (copies of firmware/card) whose images the "
                                          "card may run (docs/simulator.md, \"Which code runs\")")

    k = sub.add_parser("call", help="place a scripted call and report what happened as JSON",
                       description="Ring a line (with caller ID), wait for the node to answer, send digits / "
                                   "speech / a WAV, listen, hang up. Prints a JSON report; exit 1 if unanswered.")
    k.add_argument("--sim", default=DEFAULT_SIM, help=f"simulator control address (default {DEFAULT_SIM})")
    k.add_argument("--line", type=_LINE, default=1, help="line to ring, from 1 (default 1)")
    k.add_argument("--cid-number", type=_arg(_cid("number"), str), help="caller ID number to send")
    k.add_argument("--cid-name", type=_arg(_cid("name"), str), help="caller ID name")
    k.add_argument("--cid-mode", choices=("bell202", "v23", "dtmf"), default="bell202", help="caller ID signalling")
    k.add_argument("--cadence", choices=("cn", "na"), help="ring cadence (default: the card's country)")
    k.add_argument("--max-rings", type=_arg(_field("ring", "max_rings"), int), default=0, help="give up after this many rings (0: never)")
    k.add_argument("--answer-timeout", type=_arg(schema.Num(lo=0, hi=schema.MAX_WAIT_MS / 1000, unit=" s")), default=30, help="seconds to wait for an answer (default 30)")
    k.add_argument("--greeting", type=_MS, default=0, metavar="MS", help="listen this long right after answer")
    k.add_argument("--digits", type=_arg(_field("dtmf", "digits"), str), help="DTMF digits to key after answer")
    k.add_argument("--on-ms", type=_arg(_field("dtmf", "on_ms"), int), default=80, help="tone duration (default 80)")
    k.add_argument("--off-ms", type=_arg(_field("dtmf", "off_ms"), int), default=80, help="gap between tones (default 80)")
    k.add_argument("--level", type=_arg(_field("dtmf", "level_dbm0")), default=-10, help="level per tone in dBm0 (default -10)")
    k.add_argument("--twist", type=_arg(_field("dtmf", "twist_db")), default=0, help="twist in dB: row minus column level, >0 normal, <0 reverse (default 0)")
    k.add_argument("--freq-offset", type=_arg(_field("dtmf", "freq_offset")), default=0, help="relative frequency error, e.g. 0.015")
    k.add_argument("--say", type=_arg(_field("speak", "text"), str), help="speak this text (espeak-ng) into the line")
    k.add_argument("--voice", type=_arg(_field("speak", "voice"), str), default="en", help="espeak-ng voice (en, cmn, yue; default en)")
    k.add_argument("--play", help="play this WAV file (any rate) into the line")
    k.add_argument("--listen", type=_MS, default=0, metavar="MS", help="listen this long, report what was heard")
    k.add_argument("--hangup", choices=("loop_break", "busy_tone"), help="hang up this way at the end")
    k.add_argument("--script", help="JSON list of steps ({'op': 'ring'|'dtmf'|'speak'|'play'|'listen'|'hangup', ...})")
    k.add_argument("--pretty", action="store_true", help="indent the JSON report")

    s = sub.add_parser("status", help="the simulated card's lines and counters")
    s.add_argument("--sim", default=DEFAULT_SIM)
    f = sub.add_parser("fault", help="inject faults on the serial link")
    f.add_argument("--sim", default=DEFAULT_SIM)
    f.add_argument("--ber", type=_arg(_field("fault", "ber")), help="bit-error rate both ways")
    f.add_argument("--drop", type=_arg(_field("fault", "drop_up")), help="byte drop probability both ways")
    r = sub.add_parser("reset", help="reset the card (like its reset line)")
    r.add_argument("--sim", default=DEFAULT_SIM)
    w = sub.add_parser("power", help="switch the card's power off or on (the flash keeps what it holds)")
    w.add_argument("state", choices=("on", "off"))
    w.add_argument("--sim", default=DEFAULT_SIM)
    u = sub.add_parser("cut", help="cut the card's power at a point to come (a flash operation, a byte of an "
                                   "image, the reboot, the trial), or disarm with none",
                       description="The card stays off after the cut until `simctl power on`.")
    u.add_argument("at", choices=_field("cut", "at").options)
    u.add_argument("--n", type=_arg(_field("cut", "n"), int), help="flash_op: the Nth erase or write from now; "
                                                                    "image_byte: the image offset")
    u.add_argument("--sim", default=DEFAULT_SIM)
    sub.add_parser("ops", help="the control port's ops, their fields and what each accepts")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        if args.cmd == "card":
            return asyncio.run(serve_card(args))
        if args.cmd == "call":
            return asyncio.run(run_call(args))
        if args.cmd == "status":
            return asyncio.run(run_simple(args, "status"))
        if args.cmd == "fault":
            kw = {}
            if args.ber is not None:
                kw["ber"] = args.ber
            if args.drop is not None:
                kw["drop_up"] = kw["drop_down"] = args.drop
            return asyncio.run(run_simple(args, "fault", **kw))
        if args.cmd == "reset":
            return asyncio.run(run_simple(args, "reset_card"))
        if args.cmd == "power":
            return asyncio.run(run_simple(args, "power", on=args.state == "on"))
        if args.cmd == "cut":
            return asyncio.run(run_simple(args, "cut", at=args.at, **({} if args.n is None else {"n": args.n})))
        if args.cmd == "ops":
            return print_ops()
    except (SimError, OSError, ValueError) as exc:
        print(f"simctl: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
