"""What an image holds and whether it may be flashed: for a person (``format``) and for code (``require_valid``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import payload
from .build import MANIFEST_ENTRY
from .container import Image, read
from .errors import ImageError
from .sign import PublicKey, verify


@dataclass
class Check:
    name: str  # "image", "signature", "board"
    ok: bool | None  # None: not checked (nothing to check it against)
    detail: str


@dataclass
class Report:
    where: str
    size: int
    image: Image | None = None
    entries: list[payload.Entry] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Whole, and every check that could be made passed."""
        return self.image is not None and all(c.ok is not False for c in self.checks)

    @property
    def verdict(self) -> str:
        failed = [c.detail for c in self.checks if c.ok is False]
        if failed:
            return "NOT VALID: " + "; ".join(failed)
        unchecked = [c.name for c in self.checks if c.ok is None]
        if unchecked:
            return f"valid as far as checked; not checked: {', '.join(unchecked)} (see above)"
        return "VALID: " + "; ".join(c.detail for c in self.checks)


def check_board(image: Image, board: str, where: str = "image") -> None:
    if image.header.board_id != board:
        raise ImageError(f"{where}: built for board {image.header.board_id}, not {board}: use the image built "
                         f"for {board}")


def require_valid(data: bytes, keys: list[PublicKey], board: str, where: str = "image") -> Image:
    """The image in ``data`` if it is whole, signed by one of ``keys`` and for ``board``; else ImageError."""
    image = read(data, where)
    verify(image, keys, where)
    check_board(image, board, where)
    return image


def inspect(data: bytes, where: str = "image", keys: list[PublicKey] | None = None,
            board: str | None = None) -> Report:
    rep = Report(where, len(data))
    try:
        rep.image = read(data, where)
        rep.entries = payload.parse(rep.image.payload)
    except ImageError as exc:
        rep.image = None
        rep.checks.append(Check("image", False, str(exc)))
        return rep
    rep.checks.append(Check("image", True, "whole, payload digest matches"))
    man = next((e for e in rep.entries if e.name == MANIFEST_ENTRY), None)
    if man is not None:
        try:
            rep.manifest = json.loads(man.data)
        except ValueError:
            rep.checks.append(Check("manifest", False, f"{MANIFEST_ENTRY} is not JSON: the image is damaged"))
    if keys:
        try:
            k = verify(rep.image, keys, where)
            rep.checks.append(Check("signature", True, f"signed by key {k.fingerprint} ({k.source})"))
        except ImageError as exc:
            rep.checks.append(Check("signature", False, str(exc)))
    else:
        state = "unsigned" if rep.image.signature is None else "signed"
        rep.checks.append(Check("signature", None, f"{state}; give --key PUBLIC_KEY to check it"))
    if board is not None:
        try:
            check_board(rep.image, board, where)
            rep.checks.append(Check("board", True, f"for board {board}"))
        except ImageError as exc:
            rep.checks.append(Check("board", False, str(exc)))
    else:
        rep.checks.append(Check("board", None, "give --board ID to check it"))
    return rep


def render(rep: Report) -> str:
    out = [f"image      {rep.where} ({rep.size} bytes)"]
    img = rep.image
    if img is not None:
        h = img.header
        out += [f"board      {h.board_id}", f"version    {h.version_text}", f"security   {h.security_counter}",
                f"payload    {h.payload_len} bytes, sha256 {h.sha256.hex()}", f"flags      0x{h.flags:08x}",
                "signature  " + ("none (unsigned)" if img.signature is None else f"Ed25519, {len(img.signature)} bytes"),
                f"files      {len(rep.entries)}"]
        origin = {f"lib/{m.removesuffix('.py')}.mpy": p["name"] for p in rep.manifest.get("micropython_lib", [])
                  for m in p.get("modules", [])}
        out += [f"  {e.name:<28} {len(e.data):>7}  {origin.get(e.name, '')}".rstrip() for e in rep.entries]
        libs = rep.manifest.get("micropython_lib", [])
        out.append("micropython-lib " + (", ".join(f"{p['name']} {p['version']}" for p in libs) or "none"))
        if rep.manifest.get("mpy_cross"):
            out.append(f"built with {rep.manifest['mpy_cross']}")
    for c in rep.checks:
        mark = {True: "ok", False: "FAIL", None: "--"}[c.ok]
        out.append(f"check {c.name:<10} {mark:<4} {c.detail}")
    out.append(f"verdict    {rep.verdict}")
    return "\n".join(out)


def as_json(rep: Report) -> dict:
    img = rep.image
    return {"image": rep.where, "size": rep.size, "valid": rep.valid, "verdict": rep.verdict,
            "header": None if img is None else {
                "board": img.header.board_id, "version": img.header.version_text,
                "security_counter": img.header.security_counter, "payload_len": img.header.payload_len,
                "sha256": img.header.sha256.hex(), "flags": img.header.flags, "signed": img.signature is not None},
            "files": [{"name": e.name, "size": len(e.data)} for e in rep.entries],
            "micropython_lib": [{"name": p["name"], "version": p["version"]}
                                for p in rep.manifest.get("micropython_lib", [])],
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in rep.checks]}
