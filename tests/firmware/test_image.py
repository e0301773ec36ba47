"""Firmware images (firmware/image/, docs/firmware-update.md): the payload's golden bytes, a
reproducible build, signatures, every refusal, inspect, keys, and `nodectl image`."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.card import image_header as ih
from firmware.image import ImageError, build, container, mplib, payload, sign
from firmware.image import inspect as image_inspect
from node_agent.cli import main

ROOT = Path(__file__).resolve().parents[2]
BOARD = "BNLC-8FX"

# two entries given out of order: the payload sorts them (count, then per entry: name length u8,
# data length u32, name, data)
GOLDEN_ENTRIES = [payload.Entry("b.py", b"\x01\x02"), payload.Entry("a", b"")]
GOLDEN = bytes.fromhex("0200" "01" "00000000" "61" "04" "02000000" "622e7079" "0102")


def test_payload_golden_bytes():
    assert payload.pack(GOLDEN_ENTRIES) == GOLDEN
    assert payload.parse(GOLDEN) == sorted(GOLDEN_ENTRIES, key=lambda e: e.name)


@pytest.mark.parametrize("data,says", [
    (GOLDEN[:-1], "does not fit"),
    (GOLDEN + b"\0", "after the last"),
    (GOLDEN[:1], "too short"),
    (bytes.fromhex("0200" "04" "02000000" "622e7079" "0102" "01" "00000000" "61"), "is not after"),
])
def test_payload_parse_refuses_damage(data, says):
    with pytest.raises(ImageError, match=says):
        payload.parse(data)


@pytest.mark.parametrize("entries,says", [
    ([payload.Entry("a", b"1"), payload.Entry("a", b"2")], "twice"),
    ([payload.Entry("../x", b"")], "relative path"),
    ([payload.Entry("caf\u00e9", b"")], "not ASCII"),
])
def test_payload_pack_refuses_bad_names(entries, says):
    with pytest.raises(ImageError, match=says):
        payload.pack(entries)


def _copy_card(dst: Path) -> Path:
    shutil.copytree(build.CARD_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """The card code built from two copies in different folders, and from a third with one change."""
    base = tmp_path_factory.mktemp("builds")
    a = build.build(3, card_dir=_copy_card(base / "first" / "card"))
    b = build.build(3, card_dir=_copy_card(base / "elsewhere" / "deeper" / "card"))
    changed = _copy_card(base / "changed" / "card")
    with (changed / "wire.py").open("a") as f:
        f.write("\nEXTRA = 1\n")
    c = build.build(3, card_dir=changed)
    return a, b, c


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    sign.keygen(d / "deploy.key")
    sign.keygen(d / "other.key")
    return d


@pytest.fixture(scope="module")
def signed(builds, keys) -> bytes:
    return bytes(sign.sign(builds[0], sign.load_private(keys / "deploy.key")))


def test_build_is_reproducible(builds):
    a, b, c = builds
    assert bytes(a) == bytes(b)
    assert bytes(c) != bytes(a)  # the comparison can tell: one changed line gives other bytes


def test_build_packs_every_card_module_and_the_pinned_logging(builds):
    img = builds[0]
    names = {e.name: e.data for e in payload.parse(img.payload)}
    want = {f"card/{p.stem}.mpy" for p in build.CARD_DIR.glob("*.py")} | {"lib/logging/__init__.mpy"}
    assert want | {"main.py", "manifest.json"} == set(names)
    assert all(names[n][:2] == b"M\x06" for n in want)  # mpy-cross output: magic M, mpy version 6
    assert str(build.CARD_DIR).encode() not in img.payload  # no paths inside
    board, version = build.card_constants(build.CARD_DIR)
    assert (img.header.board_id, img.header.version, img.header.security_counter) == (board, version, 3)
    man = json.loads(names["manifest.json"])
    pin = mplib.packages()[0]
    assert man["micropython_lib"][0] == {"name": "micropython-logging", "version": pin.version, "file": pin.file,
                                             "sha256": pin.sha256, "modules": ["logging/__init__.py"]}


@pytest.mark.parametrize("version,counter,says", [((1, 256, 0), 1, "major and minor are 0..255"),
                                                  ((1, 0, 0), -1, "security counter -1")])
def test_header_fields_out_of_range_are_refused(version, counter, says):
    with pytest.raises(ImageError, match=says):
        container.make(BOARD, version, counter, b"")


def test_header_is_the_cards_format(builds):
    img = builds[0]
    h = ih.unpack(bytes(img))
    assert h[ih.H_BOARD] == BOARD.encode() and h[ih.H_LENGTH] == len(img.payload)
    assert (h[ih.H_MAJOR], h[ih.H_MINOR], h[ih.H_PATCH], h[ih.H_SECURITY]) == (*img.header.version, 3)


def test_build_refuses_a_pinned_package_no_card_module_imports(tmp_path):
    card = _copy_card(tmp_path / "card")
    (card / "logring.py").unlink()
    with pytest.raises(ImageError, match="micropython-logging is pinned but no card module imports it"):
        build.build(1, card_dir=card)


def test_build_refuses_an_import_the_card_does_not_have(tmp_path):
    card = _copy_card(tmp_path / "card")
    (card / "extra.py").write_text("import socket\n")
    with pytest.raises(ImageError, match="card/extra.mpy .card. imports socket"):
        build.build(1, card_dir=card)


def test_build_refuses_an_archive_that_is_not_the_pinned_one(tmp_path, monkeypatch):
    monkeypatch.setattr(mplib, "_download", lambda p: b"not the published file")
    with pytest.raises(ImageError, match="the pin says"):
        mplib.resolve(cache=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing kept


def test_signed_image_verifies_with_its_key(signed, keys):
    img = container.read(signed)
    k = sign.verify(img, [sign.load_public(keys / "other.key.pub"), sign.load_public(keys / "deploy.key.pub")])
    assert k.source.endswith("deploy.key.pub")
    assert image_inspect.require_valid(signed, [k], BOARD).header.board_id == BOARD


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def refusals(signed: bytes, unsigned: bytes):
    n = len(signed)
    return [
        ("bad signature", _flip(signed, n - 1), "deploy", BOARD, "does not verify"),
        ("unknown key", signed, "other", BOARD, "does not verify"),
        ("other board", signed, "deploy", "BNLC-4FX", "built for board BNLC-8FX, not BNLC-4FX"),
        ("truncated header", signed[:40], "deploy", BOARD, "truncated"),
        ("truncated payload", signed[:ih.HEADER_LEN + 100], "deploy", BOARD, "truncated"),
        ("truncated signature", signed[:-10], "deploy", BOARD, "truncated"),
        ("flipped payload byte", _flip(signed, ih.HEADER_LEN + 500), "deploy", BOARD, "digest mismatch"),
        ("changed header", _flip(signed, 20), "deploy", BOARD, "does not verify"),  # security counter
        ("unsigned", unsigned, "deploy", BOARD, "unsigned"),
        ("bad magic", b"XXXX" + signed[4:], "deploy", BOARD, "bad magic"),
    ]


CASES = [c[0] for c in refusals(b"\0" * 1000, b"")]


@pytest.mark.parametrize("case", CASES)
def test_refused_with_a_clear_message(case, signed, builds, keys):
    _, data, key, board, says = next(c for c in refusals(signed, bytes(builds[0])) if c[0] == case)
    with pytest.raises(ImageError, match=says):
        image_inspect.require_valid(data, [sign.load_public(keys / f"{key}.key.pub")], board)
    rep = image_inspect.inspect(data, "x.img", [sign.load_public(keys / f"{key}.key.pub")], board)
    assert not rep.valid and says in rep.verdict


def test_inspect_shows_everything(signed, keys):
    rep = image_inspect.inspect(signed, "fw.img", [sign.load_public(keys / "deploy.key.pub")], BOARD)
    text = image_inspect.render(rep)
    img = rep.image
    assert rep.valid and "verdict    VALID" in text
    for line in (f"board      {BOARD}", f"version    {img.header.version_text}", "security   3",
                 f"sha256 {img.header.sha256.hex()}", "signature  Ed25519, 64 bytes",
                 "micropython-lib micropython-logging 0.5.2", f"files      {len(rep.entries)}"):
        assert line in text, line
    for e in rep.entries:
        assert f"  {e.name:<28} {len(e.data):>7}" in text
    assert "lib/logging/__init__.mpy" in text and "micropython-logging" in text
    unchecked = image_inspect.render(image_inspect.inspect(signed, "fw.img"))
    assert "not checked: signature, board" in unchecked


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path):
    priv, pub, fp = sign.keygen(tmp_path / "k")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600 and pub == tmp_path / "k.pub"
    assert sign.load_public(pub).fingerprint == fp == sign.fingerprint(sign.load_private(priv).public_key())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "k.pub"]  # no temporary file left


def test_keygen_refuses_to_overwrite_unless_forced(tmp_path):
    priv, pub, fp = sign.keygen(tmp_path / "k")
    before = priv.read_bytes(), pub.read_bytes()
    with pytest.raises(ImageError, match="exists.*--force"):
        sign.keygen(tmp_path / "k")
    assert (priv.read_bytes(), pub.read_bytes()) == before
    _, _, fp2 = sign.keygen(tmp_path / "k", force=True)
    assert fp2 != fp and stat.S_IMODE(priv.stat().st_mode) == 0o600


def test_key_files_mixed_up_or_misplaced_are_refused(tmp_path):
    priv, pub, _ = sign.keygen(tmp_path / "k")
    with pytest.raises(ImageError, match="this is a public key"):
        sign.load_private(pub)
    with pytest.raises(ImageError, match="this is a private key"):
        sign.load_public(priv)
    with pytest.raises(ImageError, match="no such folder"):
        sign.keygen(tmp_path / "missing" / "k")


def test_a_private_key_others_can_read_is_refused(tmp_path):
    priv, _, _ = sign.keygen(tmp_path / "k")
    priv.chmod(0o644)
    with pytest.raises(ImageError, match="chmod 600"):
        sign.load_private(priv)


def test_nodectl_image_commands(tmp_path, capsys):
    key, img = tmp_path / "deploy.key", tmp_path / "fw.img"
    assert main(["image", "keygen", str(key)]) == 0
    assert main(["image", "keygen", str(key)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["image", "build", str(img), "--security-counter", "4"]) == 0
    assert main(["image", "inspect", str(img), "--key", f"{key}.pub", "--board", BOARD]) == 1  # unsigned
    assert "NOT VALID" in capsys.readouterr().out
    assert main(["image", "sign", str(img), "--key", str(key)]) == 0
    capsys.readouterr()
    assert main(["image", "inspect", str(img), "--key", f"{key}.pub", "--board", BOARD, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] and doc["header"]["security_counter"] == 4 and doc["header"]["signed"]
    assert doc["micropython_lib"] == [{"name": "micropython-logging", "version": "0.5.2"}]
    assert main(["image", "inspect", str(img), "--key", f"{key}.pub", "--board", "BNLC-4FX"]) == 1
    assert main(["image", "sign", str(tmp_path / "missing.img"), "--key", str(key)]) == 2
    assert "cannot read the image" in capsys.readouterr().err


def test_nodectl_image_inspect_as_a_process(signed, keys, tmp_path):
    img = tmp_path / "fw.img"
    img.write_bytes(signed)
    res = subprocess.run([sys.executable, "-m", "node_agent.cli", "image", "inspect", str(img), "--key",
                          str(keys / "deploy.key.pub"), "--board", BOARD], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "verdict    VALID" in res.stdout and "micropython-logging 0.5.2" in res.stdout
    img.write_bytes(signed[:-1])
    res = subprocess.run([sys.executable, "-m", "node_agent.cli", "image", "inspect", str(img)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 1 and "truncated" in res.stdout and "Traceback" not in res.stderr
