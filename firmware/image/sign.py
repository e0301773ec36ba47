"""Ed25519 keys and signatures for images (``cryptography``).

Keys are PEM files: the private key PKCS#8 (unencrypted, mode 0600, written atomically, never
overwritten without ``force``), the public key SubjectPublicKeyInfo beside it. A key is named by
its fingerprint: the first 8 bytes of the SHA-256 of its raw 32 bytes, in hex.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .container import Image
from .errors import ImageError


@dataclass(frozen=True)
class PublicKey:
    key: Ed25519PublicKey
    source: str  # the file it came from, for messages

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_path_for(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def keygen(private: str | Path, public: str | Path | None = None, force: bool = False) -> tuple[Path, Path, str]:
    """A new key pair -> (private path, public path, fingerprint). Refuses to replace a file unless ``force``."""
    priv = Path(private)
    pub = Path(public) if public is not None else public_path_for(priv)
    for p in (priv, pub):
        if not p.parent.is_dir():
            raise ImageError(f"{p.parent}: no such folder: create it first (`mkdir -m 700 {p.parent}` for keys)")
    if not force:
        for p in (priv, pub):
            if p.exists():
                raise ImageError(f"{p} exists: a key is not replaced by accident (images signed with it would "
                                 "no longer verify); choose another file, or give --force to replace it")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(priv, pem, 0o600, force)
    _write_new(pub, pub_pem, 0o644, force)
    return priv, pub, fingerprint(key.public_key())


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    # mkstemp creates the file 0600 in the same folder: no moment at which others could read it, and
    # the final name appears whole (link refuses an existing name; replace is atomic)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ImageError(f"{path} appeared while the key was made: nothing was replaced; try again") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_private(path: str | Path) -> Ed25519PrivateKey:
    p = Path(path)
    data = _read(p, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        hint = " (this is a public key: give the private key it was made with)" if b"PUBLIC KEY" in data else ""
        raise ImageError(f"{p}: not an unencrypted PEM private key{hint}: give the file `nodectl image keygen` "
                         "wrote") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImageError(f"{p}: a {type(key).__name__}, images are signed with Ed25519: make a key with "
                         "`nodectl image keygen`")
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        raise ImageError(f"{p}: the private key can be read by others (mode {mode:o}): `chmod 600 {p}`, and treat "
                         "the key as exposed if others really had access")
    return key


def load_public(path: str | Path) -> PublicKey:
    p = Path(path)
    data = _read(p, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        hint = " (this is a private key: give its .pub file)" if b"PRIVATE KEY" in data else ""
        raise ImageError(f"{p}: not a PEM public key{hint}: give the .pub file `nodectl image keygen` wrote") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ImageError(f"{p}: a {type(key).__name__}, images are signed with Ed25519")
    return PublicKey(key, str(p))


def _read(p: Path, what: str) -> bytes:
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: cannot read the {what} ({exc.strerror or exc}): check the path") from None


def sign(image: Image, key: Ed25519PrivateKey) -> Image:
    """``image`` signed with ``key`` (a signature it had is replaced)."""
    return image.with_signature(key.sign(image.signed_part))


def verify(image: Image, keys: list[PublicKey], where: str = "image") -> PublicKey:
    """The key among ``keys`` that signed ``image``; raises ImageError if it is unsigned or none did."""
    if image.signature is None:
        raise ImageError(f"{where}: unsigned: sign it with `nodectl image sign {where} --key PRIVATE_KEY` "
                         "before it is flashed")
    for k in keys:
        try:
            k.key.verify(image.signature, image.signed_part)
            return k
        except InvalidSignature:
            continue
    tried = ", ".join(f"{k.fingerprint} ({k.source})" for k in keys) or "none given"
    raise ImageError(f"{where}: the signature does not verify with the public key(s) {tried}: it was signed by "
                     "another key (an unknown one), or the image was changed after signing; use the deployment's "
                     "key, or sign the image again with it")
