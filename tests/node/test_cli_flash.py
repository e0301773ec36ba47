"""`nodectl flash` and `nodectl card info` against an in-process card running the real updater on
the simulator's flash model (bench/flash_card.py), over a link paced at 921,600 baud: a whole
update, every refusal with the card byte-identical, resume after a chunk that kept failing and
after a cut link, skip when already running, waiting for a call to end, progress, exit codes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import signal
import stat
import threading
import time

import pytest

import hal
from bench.flash_card import UpdaterCard, new_flash, program
from drivers.linecard import LineCardLink
from drivers.linecard.flasher import CHUNK_TRIES, WINDOW
from firmware.card import wire
from firmware.image import container, sign
from node_agent import cli_flash
from node_agent.cli import build_parser, main
from node_agent.control import ControlServer, socket_path
from tests.node.test_config import GOOD

BOARD = "BNLC-8FX"
URL = "socket://127.0.0.1:7000"  # what the command is given; the bytes go to the in-process card


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    deploy = sign.keygen(d / "deploy.key")
    other = sign.keygen(d / "other.key")
    return {"deploy": (sign.load_private(deploy[0]), str(deploy[1])), "other": (sign.load_private(other[0]), str(other[1]))}


def make(minor: int, n: int, security: int = 1, board: str = BOARD) -> container.Image:
    payload = hashlib.shake_256(f"cli {minor} {n} {board}".encode()).digest(n)
    return container.make(board, (1, minor, 0), security, payload)


def write(tmp_path, name: str, img: container.Image, key=None) -> str:
    p = tmp_path / name
    p.write_bytes(bytes(sign.sign(img, key) if key is not None else img))
    return str(p)


OLD = make(0, 6000)
NEW = make(1, 24000)


def card_running(img: container.Image = OLD, **kw) -> UpdaterCard:
    f = new_flash()
    program(f, img.signed_part)
    return UpdaterCard(f, **kw)


def flash(card: UpdaterCard, *argv: str, key: str | None = None, config: str = "/nonexistent/branch.toml",
          transport=None) -> int:
    args = build_parser().parse_args(["-c", config, "flash", *argv, "--card", URL, "--wait", "2",
                                      *(["--key", key] if key else [])])
    return cli_flash.run_flash(args, transport=transport or card.transport)


def info(card: UpdaterCard, *argv: str, config: str = "/nonexistent/branch.toml", transport=None) -> int:
    args = build_parser().parse_args(["-c", config, "card", "info", "--card", URL, *argv])
    return cli_flash.run_card(args, transport=transport or card.transport)


def test_flash_n_to_n_plus_1_reboots_into_it_and_it_confirms(tmp_path, keys, capsys):
    card = card_running()
    path = write(tmp_path, "fw-1.1.0.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out, err = capsys.readouterr()
    assert f"{path}: board BNLC-8FX version 1.1.0 security counter 1, signed by key" in out
    assert "card BNLC-8FX runs 1.0.0 from slot 0; sending 1.1.0" in out
    assert f"sent {len(NEW.signed_part)} bytes in" in out and "(0 sent again)" in out
    assert "card runs 1.1.0 from slot 1, confirmed (its self-test passed); slot 0 keeps 1.0.0" in out
    # not a terminal: a plain line every 10 %, 0 % to 100 %, each with bytes, rate and time left
    plain = [ln for ln in err.splitlines() if ln.startswith("flash: ")]
    assert [int(ln.split()[1].rstrip("%")) // 10 for ln in plain] == list(range(11))
    assert all("KiB/s" in ln and "left" in ln for ln in plain) and "\r" not in err
    assert card.slot_bytes(1, len(NEW.signed_part)) == NEW.signed_part
    assert card.slot_bytes(0, len(OLD.signed_part)) == OLD.signed_part
    assert card.counters.resets == [0] and card.counters.boots == 2

    assert info(card) == 0
    text = capsys.readouterr().out
    assert "board     BNLC-8FX" in text and "firmware  1.1.0 (slot 1), 2 lines" in text
    old_d, new_d = OLD.header.sha256.hex()[:16], NEW.header.sha256.hex()[:16]
    assert f"0     confirmed  1.0.0    1         {old_d}" in text
    assert f"1     confirmed  1.1.0    1         {new_d}  running, active" in text
    assert "last revert  none" in text


def _tampered(img: container.Image, key) -> bytes:
    signed = bytearray(bytes(sign.sign(img, key)))
    signed[-1] ^= 0x01  # the signature's last byte
    return bytes(signed)


@pytest.mark.parametrize("case", ["bad signature", "unknown key", "unsigned", "other board", "lower security counter",
                                  "truncated", "damaged payload"])
def test_every_refusal_leaves_the_card_byte_identical(case, tmp_path, keys, capsys):
    card = card_running(make(0, 6000, security=3))
    deploy, other = keys["deploy"][0], keys["other"][0]
    p = tmp_path / "fw.img"
    if case == "bad signature":
        p.write_bytes(_tampered(NEW, deploy))
        says = "does not verify with the public key"
    elif case == "unknown key":
        p.write_bytes(bytes(sign.sign(make(1, 24000, security=3), other)))
        says = "does not verify with the public key"
    elif case == "unsigned":
        p.write_bytes(bytes(make(1, 24000, security=3)))
        says = "unsigned"
    elif case == "other board":
        p.write_bytes(bytes(sign.sign(make(1, 24000, security=3, board="BNLC-4FX"), deploy)))
        says = "built for board BNLC-4FX, the card is a BNLC-8FX: use the image built for BNLC-8FX"
    elif case == "lower security counter":
        p.write_bytes(bytes(sign.sign(make(1, 24000, security=2), deploy)))
        says = "security counter 2, lower than the card's 3 (it runs 1.0.0): the card would refuse it as a downgrade"
    elif case == "truncated":
        p.write_bytes(bytes(sign.sign(make(1, 24000, security=3), deploy))[:20000])
        says = "truncated"
    else:
        raw = bytearray(bytes(sign.sign(make(1, 24000, security=3), deploy)))
        raw[5000] ^= 0xFF
        p.write_bytes(bytes(raw))
        says = "digest mismatch"
    before = card.contents()
    assert flash(card, str(p), key=keys["deploy"][1]) == cli_flash.EXIT_REFUSED
    err = capsys.readouterr().err
    assert says in err and "nothing was sent" in err
    assert card.contents() == before  # slots, metadata and journal: byte for byte
    assert card.counters.chunk_frames == 0 and card.counters.resets == []


def test_a_chunk_that_keeps_arriving_damaged_stops_with_exit_3_and_a_rerun_resumes(tmp_path, keys, capsys):
    card = card_running()
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    bad = 64 + 50 * wire.IMAGE_DATA_MAX
    card.corrupt[bad] = 1000
    running = card.slot_bytes(0)
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_LINK
    err = capsys.readouterr().err
    assert f"failed {CHUNK_TRIES} times in a row" in err and f"kept {bad} of {len(NEW.signed_part)} bytes" in err
    assert "run the same command again to resume" in err
    assert card.counters.damaged == CHUNK_TRIES and card.slot_bytes(0) == running and card.counters.resets == []
    card.corrupt.clear()
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out, err = capsys.readouterr()
    assert f"resuming at byte {bad} of {len(NEW.signed_part)}" in err
    assert f"(0 sent again, resumed at byte {bad})" in out  # nothing the card had was sent twice
    assert card.slot_bytes(1, len(NEW.signed_part)) == NEW.signed_part


def test_a_cut_link_mid_transfer_resumes_where_it_stopped(tmp_path, keys, capsys):
    card = card_running()
    card.unplug_at_byte(10000, 0.3)
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out = capsys.readouterr().out
    resent = int(out.split("(")[1].split(" sent again")[0])
    assert 0 < resent <= WINDOW * wire.IMAGE_DATA_MAX  # only the chunks in flight when the cable went
    assert card.slot_bytes(1, len(NEW.signed_part)) == NEW.signed_part and card.counters.boots == 2


def test_a_power_cut_mid_transfer_resumes_from_the_cards_journal(tmp_path, keys, capsys):
    card = card_running()
    card.cut_power_at_byte(15000)
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out = capsys.readouterr().out
    resent = int(out.split("(")[1].split(" sent again")[0])
    # the card resumes at its last complete flash block: at most that block and the window again, and
    # the window once more (sent again go-back-N into the dark card before its restart was seen)
    assert card.counters.power_cuts == 1 and 0 < resent <= card.flash.block_size + 2 * WINDOW * wire.IMAGE_DATA_MAX
    assert card.slot_bytes(1, len(NEW.signed_part)) == NEW.signed_part
    assert card.slot_bytes(0, len(OLD.signed_part)) == OLD.signed_part


def test_a_card_already_running_the_image_is_skipped_unless_forced(tmp_path, keys, capsys):
    card = card_running(make(1, 24000))
    path = write(tmp_path, "fw.img", make(1, 24000), keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    digest = make(1, 24000).header.sha256.hex()[:16]
    assert (f"already runs 1.1.0 (security counter 1, payload digest {digest}): nothing to do (--force to flash it "
            "again)") in capsys.readouterr().out
    assert card.counters.chunk_frames == 0 and card.counters.resets == []
    assert flash(card, path, "--force", key=keys["deploy"][1]) == cli_flash.EXIT_OK
    assert card.counters.chunk_frames > 0 and card.counters.resets == [0]


def test_another_build_with_the_same_version_and_counter_is_flashed(tmp_path, keys, capsys):
    """The card's SLOTS carries each slot's payload digest: the same version and security counter
    with other contents is another image, not one to skip."""
    running, rebuilt = make(1, 24000), make(1, 24001)  # 1.1.0, counter 1 both; other payloads
    assert running.header.version == rebuilt.header.version and running.header.sha256 != rebuilt.header.sha256
    card = card_running(running)
    path = write(tmp_path, "fw.img", rebuilt, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out = capsys.readouterr().out
    assert "nothing to do" not in out
    assert (f"sending 1.1.0 (another build of 1.1.0: payload digest {rebuilt.header.sha256.hex()[:16]}, the card's "
            f"{running.header.sha256.hex()[:16]})") in out
    assert card.slot_bytes(1, len(rebuilt.signed_part)) == rebuilt.signed_part and card.counters.resets == [0]
    assert info(card, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["digest"] for s in data["slots"]] == [running.header.sha256.hex()[:16], rebuilt.header.sha256.hex()[:16]]


def test_verify_only_checks_against_the_card_and_sends_nothing(tmp_path, keys, capsys):
    card = card_running()
    before = card.contents()
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, "--verify-only", key=keys["deploy"][1]) == cli_flash.EXIT_OK
    assert "verified: the card (BNLC-8FX, runs 1.0.0, security counter 1) would take 1.1.0" in capsys.readouterr().out
    assert card.contents() == before and card.counters.chunk_frames == 0


def test_the_reboot_waits_until_no_line_is_in_a_call_unless_now(tmp_path, keys, capsys):
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    card = card_running()
    card.offhook = 0b10  # a call on line 2 during the whole transfer
    ended = []

    def hang_up_soon():
        import asyncio
        asyncio.get_running_loop().call_later(0.4, lambda: (ended.append(time.monotonic()),
                                                            setattr(card, "offhook", 0)))
    card.on_pending = hang_up_soon
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out = capsys.readouterr().out
    assert "waiting for line(s) 2 to be free before rebooting the card (--now to reboot at once)" in out
    assert ended and card.counters.resets == [0]  # reset only once the line was free
    card2 = card_running()
    card2.offhook = 0b1
    assert flash(card2, path, "--now", key=keys["deploy"][1]) == cli_flash.EXIT_OK
    assert card2.counters.resets == [0b1]  # --now: rebooted during the call
    assert "waiting for line" not in capsys.readouterr().out


def test_a_call_that_rings_in_between_the_check_and_the_reboot_is_not_cut(tmp_path, keys, capsys):
    # the host saw every line free; the card rings at the very moment the RESET arrives: the card
    # itself refuses it (RESET_IF_IDLE), and the host waits for the new call to end
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    card = card_running()
    frame, rang = card.frame, []

    def frame_ringing_at_the_reset(ftype, ch, seq, body):
        if ftype == wire.T_CMD and body[0] == wire.OP_RESET and not rang:
            import asyncio
            rang.append(time.monotonic())
            card.ringing = 0b1
            asyncio.get_running_loop().call_later(0.4, setattr, card, "ringing", 0)  # the caller gives up
        frame(ftype, ch, seq, body)
    card.frame = frame_ringing_at_the_reset
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out = capsys.readouterr().out
    assert "a line of the card came into use just before the reboot: not rebooted; waiting again" in out
    assert card.counters.busy_resets >= 1 and card.counters.resets == [0]  # reset once, with every line free
    assert "card runs 1.1.0 from slot 1, confirmed" in out


def test_a_failed_self_test_reverts_exit_4_and_card_info_says_why(tmp_path, keys, capsys):
    card = card_running(self_test_passes=False)
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_NOT_TAKEN
    assert "the card reverted to 1.0.0: the trial of 1.1.0 ended with 'self-test failed'" in capsys.readouterr().err
    assert info(card) == 0
    text = capsys.readouterr().out
    assert "firmware  1.0.0 (slot 0)" in text and "1     reverted   1.1.0" in text
    assert "last revert  slot 1: self-test failed" in text
    assert info(card, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["last_revert"] == {"slot": 1, "reason": "self-test failed"}
    assert [(s["state"], s["version"]) for s in data["slots"]] == [("confirmed", "1.0.0"), ("reverted", "1.1.0")]
    assert (data["board"], data["firmware"], data["running_slot"]) == ("BNLC-8FX", "1.0.0", 0)


def test_a_trial_that_does_not_confirm_in_time_is_exit_5(tmp_path, keys, capsys):
    card = card_running(self_test_passes=None)  # the new image's self-test never finishes
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, "--confirm-timeout", "0.5", key=keys["deploy"][1]) == cli_flash.EXIT_NOT_CONFIRMED
    assert "boots 1.1.0 on trial but it did not confirm itself within 0.5 s" in capsys.readouterr().err
    assert info(card) == 0
    assert (f"1     trial      1.1.0    1         {NEW.header.sha256.hex()[:16]}  running, 2 boot(s) left to confirm"
            in capsys.readouterr().out)


def test_a_rerun_during_the_last_updates_trial_waits_for_it_then_goes_on(tmp_path, keys, capsys):
    # a cut during the reboot: the rerun finds the card on trial, as after a technician's power cycle
    card = card_running(self_test_passes=None)
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, "--confirm-timeout", "0.3", key=keys["deploy"][1]) == cli_flash.EXIT_NOT_CONFIRMED
    capsys.readouterr()
    card.self_test_passes, card.self_test_frames = True, card.frames_since_boot + 5  # it ends a few frames on
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out = capsys.readouterr().out
    assert "the card runs 1.1.0 on trial (from the last update): waiting up to 60 s for it to confirm or revert" in out
    assert "the trial of 1.1.0 ended: confirmed" in out
    assert "already runs 1.1.0" in out and "sending" not in out


def test_a_rerun_during_a_trial_that_reverts_sends_the_image_again(tmp_path, keys, capsys):
    card = card_running(self_test_passes=None)
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, "--confirm-timeout", "0.3", key=keys["deploy"][1]) == cli_flash.EXIT_NOT_CONFIRMED
    capsys.readouterr()
    card.self_test_passes, card.self_test_frames = False, card.frames_since_boot + 5
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_NOT_TAKEN  # and it fails its self-test again
    out, err = capsys.readouterr()
    assert "the trial of 1.1.0 ended: the card reverted to 1.0.0 ('self-test failed')" in out
    assert "runs 1.0.0 from slot 0; sending 1.1.0" in out
    assert "the card reverted to 1.0.0: the trial of 1.1.0 ended with 'self-test failed'" in err


def test_a_rerun_during_a_trial_that_never_ends_sends_nothing_exit_5(tmp_path, keys, capsys):
    card = card_running(self_test_passes=None)
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, "--confirm-timeout", "0.3", key=keys["deploy"][1]) == cli_flash.EXIT_NOT_CONFIRMED
    capsys.readouterr()
    before = card.counters.chunk_frames
    assert flash(card, path, "--confirm-timeout", "0.3", key=keys["deploy"][1]) == cli_flash.EXIT_NOT_CONFIRMED
    assert "the card still runs 1.1.0 on trial after 0.3 s: nothing was sent" in capsys.readouterr().err
    assert card.counters.chunk_frames == before


def test_no_card_answering_is_exit_3(tmp_path, keys, capsys):
    card = card_running()
    card.unplugged = True
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_LINK
    assert "no line card answered on socket://127.0.0.1:7000 within 2 s" in capsys.readouterr().err
    assert info(card, "--wait", "1") == cli_flash.EXIT_LINK


def test_a_daemon_without_a_control_socket_is_a_usage_error_and_the_port_is_left_alone(tmp_path, keys, capsys):
    cfg = tmp_path / "branch.toml"
    cfg.write_text(GOOD, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "status.json").write_text(json.dumps(
        {"updated": time.time(), "pid": os.getpid(), "card": {"url": URL}}))
    card = card_running()
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1], config=str(cfg)) == cli_flash.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"the node daemon (pid {os.getpid()}) holds the card's port {URL} but has no control socket" in err
    assert card.counters.chunk_frames == 0


def test_no_key_and_unreadable_image_are_usage_errors(tmp_path, keys, capsys, monkeypatch):
    monkeypatch.setenv(cli_flash.KEYS_ENV, "")
    monkeypatch.setattr(cli_flash, "DEFAULT_KEY_DIR", tmp_path / "none")
    assert main(["-c", "/nonexistent", "flash", str(tmp_path / "fw.img"), "--card", URL]) == cli_flash.EXIT_USAGE
    assert "no public key to check" in capsys.readouterr().err
    assert main(["-c", "/nonexistent", "flash", str(tmp_path / "nope.img"), "--card", URL,
                 "--key", keys["deploy"][1]]) == cli_flash.EXIT_USAGE
    assert "cannot read the image" in capsys.readouterr().err


def test_progress_bar_on_a_terminal_redraws_one_line_with_bytes_rate_and_time_left():
    s = io.StringIO()
    bar = cli_flash.ProgressBar(s, tty=True, min_redraw_s=0)
    total = 100 * 1024
    for done in range(64, total, 10240):
        bar(done, total)
    bar(total, total)
    bar.close()
    text = s.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 11 and text.endswith("\n") and text.count("\n") == 1
    assert frames[-1].startswith("[" + "#" * 30 + "] 100% 100.0/100.0 KiB")
    assert all("KiB/s" in f and " left" in f for f in frames)
    plain = io.StringIO()
    bar = cli_flash.ProgressBar(plain, tty=False)
    for done in range(0, total + 1, 1024):
        bar(done, total)
    assert len(plain.getvalue().splitlines()) == 11 and "\r" not in plain.getvalue()


# -- through a running node daemon: its control socket, its board's link ------------------------------
class Daemon:
    """What the node daemon does for `nodectl flash` (node_agent/control.py), in a thread with its
    own event loop: a HAL board on the in-process card and the control socket in ``data``. ``busy``:
    the lines the daemon has in a call."""

    def __init__(self, card: UpdaterCard, data) -> None:
        self.card, self.data = card, data
        self.busy: list[int] = []
        self.server: ControlServer | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Daemon:
        self._thread.start()
        assert self._ready.wait(10), "the daemon's board did not come up"
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        board = hal.LineCardBoard(URL, link=lambda url, listener, baud: LineCardLink(
            url, listener, baud=baud, transport=self.card.transport))
        await board.start(5)
        self.board = board
        self.server = ControlServer(socket_path(self.data), board, URL, lambda: list(self.busy))
        serve = asyncio.create_task(self.server.serve())
        while not socket_path(self.data).exists():
            await asyncio.sleep(0.01)  # the socket appears once it is bound and made 0600
        (self.data / "status.json").write_text(json.dumps(
            {"updated": time.time() + 3600, "pid": os.getpid(), "card": {"url": URL}}))
        self._ready.set()
        await self._stop.wait()
        serve.cancel()
        await asyncio.wait([serve])
        await board.close()


@pytest.fixture
def daemon_cfg(tmp_path):
    cfg = tmp_path / "branch.toml"
    cfg.write_text(GOOD, encoding="utf-8")
    (tmp_path / "data").mkdir()
    return str(cfg), tmp_path / "data"


def interrupt_when(cond, timeout: float = 30.0) -> list[float]:
    """One Ctrl-C (SIGINT to this process, as a terminal sends it) once ``cond()`` holds; -> [when]."""
    at: list[float] = []

    def watch():
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                at.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)
    threading.Thread(target=watch, daemon=True).start()
    return at


def test_through_the_daemon_the_card_is_flashed_on_its_link_and_the_reboot_waits_for_its_calls(
        tmp_path, keys, capsys, daemon_cfg):
    cfg, data = daemon_cfg
    card = card_running()
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    with Daemon(card, data) as d:
        assert stat.S_IMODE(os.stat(socket_path(data)).st_mode) == 0o600
        d.busy = [2]  # line 2 in a call (its runner is not idle) until a moment after the image is pending
        ended = []
        card.on_pending = lambda: asyncio.get_running_loop().call_later(
            0.4, lambda: (ended.append(time.monotonic()), d.busy.clear()))
        # the command is given a transport that fails: every byte must go over the daemon's link
        assert flash(card, path, key=keys["deploy"][1], config=cfg, transport=refuse) == cli_flash.EXIT_OK
        out, err = capsys.readouterr()
        assert f"the node daemon holds the card's port {URL}: it flashes the card while its lines carry calls" in out
        assert "card BNLC-8FX runs 1.0.0 from slot 0; sending 1.1.0" in out
        assert "waiting for line(s) 2 to be free before rebooting the card (--now to reboot at once)" in out
        assert "card runs 1.1.0 from slot 1, confirmed (its self-test passed); slot 0 keeps 1.0.0" in out
        plain = [ln for ln in err.splitlines() if ln.startswith("flash: ")]
        assert [int(ln.split()[1].rstrip("%")) // 10 for ln in plain] == list(range(11)), err
        assert ended and card.counters.resets == [0] and card.slot_bytes(1, len(NEW.signed_part)) == NEW.signed_part
        # the daemon's board reconnected to the card's new boot, and card info asks the daemon
        assert d.board.identity.firmware == "1.1.0"
        assert info(card, "--json", config=cfg, transport=refuse) == 0
        data_ = json.loads(capsys.readouterr().out)
        assert [(s["state"], s["version"]) for s in data_["slots"]] == [("confirmed", "1.0.0"), ("confirmed", "1.1.0")]
        assert data_["running_slot"] == 1 and data_["firmware"] == "1.1.0"


def test_ctrl_c_through_the_daemon_stops_its_transfer_resumably(tmp_path, keys, capsys, daemon_cfg, sigint):
    cfg, data = daemon_cfg
    card = card_running()
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    with Daemon(card, data) as d:
        at = interrupt_when(lambda: card.updater is not None and card.updater.next_offset >= 10000)
        assert flash(card, path, key=keys["deploy"][1], config=cfg, transport=refuse) == cli_flash.EXIT_INTERRUPTED
        took = time.monotonic() - at[0]
        assert "nodectl: flash interrupted: what the card received is kept; run the same command again to resume" in \
            capsys.readouterr().err
        assert took < 1.0, took
        def settled() -> bool:  # the daemon stopped, and the card has taken every frame already on the wire
            port = card._port
            return (not d.server._flashing.locked() and not card.image_rx.waiting()
                    and (port is None or d.loop.time() > port.down_free + 0.005))
        end = time.monotonic() + 5
        while not settled() and time.monotonic() < end:
            time.sleep(0.01)
        assert not d.server._flashing.locked() and d.server.cancelled == 1
        kept, frames = card.updater.next_offset, card.counters.chunk_frames
        assert 10000 <= kept < len(NEW.signed_part) and card.counters.resets == []
        assert flash(card, path, key=keys["deploy"][1], config=cfg, transport=refuse) == cli_flash.EXIT_OK
        out, err = capsys.readouterr()
        assert f"resuming at byte {kept} of {len(NEW.signed_part)}" in err, err  # nothing came after the stop
        assert card.counters.chunk_frames - frames <= (len(NEW.signed_part) - kept) // wire.IMAGE_DATA_MAX + 9
        assert card.slot_bytes(1, len(NEW.signed_part)) == NEW.signed_part


def refuse(url, *a, **kw):
    raise AssertionError(f"nodectl opened the card's port {url} itself while the daemon holds it")


def dark_for(card: UpdaterCard, how: str, seconds: float):
    """A condition: the card has been dark (``how``) for ``seconds``."""
    since: list[float] = []

    def cond() -> bool:
        dark = card.unplugged if how == "cable" else bool(card.counters.resets) and not card.powered
        if dark and not since:
            since.append(time.monotonic())
        return dark and time.monotonic() - since[0] >= seconds
    return cond


@pytest.fixture(params=["SIGINT default", "SIGINT ignored"])
def sigint(request):
    """Ctrl-C as nodectl may find it: Python's default handler, or ignored, as a program started in
    the background by a shell without job control (a script, a service runner) inherits it; there
    ``asyncio.run`` takes no Ctrl-C at all, and a flash ran on to its end or its timeout."""
    before = signal.getsignal(signal.SIGINT)
    if request.param == "SIGINT ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield request.param
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("how", ["cable", "reboot"])
def test_one_ctrl_c_while_the_card_is_dark_ends_the_command_at_once(tmp_path, keys, capsys, how, sigint):
    """Cable pulled mid-transfer, or the card rebooting into the new image: one Ctrl-C, exit 130 at once."""
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    for attempt in range(4):  # at several moments of the dark time: a lost Ctrl-C is a matter of timing
        card = card_running(boot_s=30 if how == "reboot" else 0.05)
        if how == "cable":
            card.unplug_at_byte(8000 + 1000 * attempt, 30)
        at = interrupt_when(dark_for(card, how, 0.05 + 0.07 * attempt))
        assert flash(card, path, "--now", key=keys["deploy"][1]) == cli_flash.EXIT_INTERRUPTED, attempt
        took = time.monotonic() - at[0]
        assert took < 1.0, (attempt, took)
        assert capsys.readouterr().err.rstrip().endswith(
            "nodectl: flash interrupted: what the card received is kept; run the same command again to resume")
        assert signal.getsignal(signal.SIGINT) == (signal.SIG_IGN if sigint == "SIGINT ignored"
                                                   else signal.default_int_handler)  # left as it was
