"""`nodectl flash` and `nodectl card info` against an in-process card running the real updater on
the simulator's flash model (bench/flash_card.py), over a link paced at 921,600 baud: a whole
update, every refusal with the card byte-identical, resume after a chunk that kept failing and
after a cut link, skip when already running, waiting for a call to end, progress, exit codes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time

import pytest

from bench.flash_card import UpdaterCard, new_flash, program
from drivers.linecard.flasher import CHUNK_TRIES
from firmware.card import wire
from firmware.image import container, sign
from node_agent import cli_flash
from node_agent.cli import build_parser, main
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


def flash(card: UpdaterCard, *argv: str, key: str | None = None, config: str = "/nonexistent/branch.toml") -> int:
    args = build_parser().parse_args(["-c", config, "flash", *argv, "--card", URL, "--wait", "2",
                                      *(["--key", key] if key else [])])
    return cli_flash.run_flash(args, transport=card.transport)


def info(card: UpdaterCard, *argv: str) -> int:
    args = build_parser().parse_args(["-c", "/nonexistent/branch.toml", "card", "info", "--card", URL, *argv])
    return cli_flash.run_card(args, transport=card.transport)


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
    assert "0     confirmed  1.0.0    1" in text and "1     confirmed  1.1.0    1         running, active" in text
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
    assert 0 < resent <= 8 * wire.IMAGE_DATA_MAX  # only the chunks in flight when the cable went
    assert card.slot_bytes(1, len(NEW.signed_part)) == NEW.signed_part and card.counters.boots == 2


def test_a_power_cut_mid_transfer_resumes_from_the_cards_journal(tmp_path, keys, capsys):
    card = card_running()
    card.cut_power_at_byte(15000)
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    out = capsys.readouterr().out
    resent = int(out.split("(")[1].split(" sent again")[0])
    # the card resumes at its last complete flash block: at most that block and the window again
    assert card.counters.power_cuts == 1 and 0 < resent <= card.flash.block_size + 8 * wire.IMAGE_DATA_MAX
    assert card.slot_bytes(1, len(NEW.signed_part)) == NEW.signed_part
    assert card.slot_bytes(0, len(OLD.signed_part)) == OLD.signed_part


def test_a_card_already_running_the_image_is_skipped_unless_forced(tmp_path, keys, capsys):
    card = card_running(make(1, 24000))
    path = write(tmp_path, "fw.img", make(1, 24000), keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_OK
    assert "already runs 1.1.0 (security counter 1): nothing to do (--force to flash it again)" in capsys.readouterr().out
    assert card.counters.chunk_frames == 0 and card.counters.resets == []
    assert flash(card, path, "--force", key=keys["deploy"][1]) == cli_flash.EXIT_OK
    assert card.counters.chunk_frames > 0 and card.counters.resets == [0]


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
    assert "1     trial      1.1.0    1         running, 2 boot(s) left to confirm" in capsys.readouterr().out


def test_no_card_answering_is_exit_3(tmp_path, keys, capsys):
    card = card_running()
    card.unplugged = True
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1]) == cli_flash.EXIT_LINK
    assert "no line card answered on socket://127.0.0.1:7000 within 2 s" in capsys.readouterr().err
    assert info(card, "--wait", "1") == cli_flash.EXIT_LINK


def test_refused_while_the_node_daemon_holds_the_port(tmp_path, keys, capsys):
    cfg = tmp_path / "branch.toml"
    cfg.write_text(GOOD, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "status.json").write_text(json.dumps(
        {"updated": time.time(), "pid": os.getpid(), "card": {"url": URL}}))
    card = card_running()
    path = write(tmp_path, "fw.img", NEW, keys["deploy"][0])
    assert flash(card, path, key=keys["deploy"][1], config=str(cfg)) == cli_flash.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"the node daemon (pid {os.getpid()}) holds the card's port {URL}: stop it first" in err
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
