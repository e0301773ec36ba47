"""The node's secret key, and the keyed hash that stands in for digits a caller keyed that name no account.

A caller may key a PIN at the account prompt, or run account and PIN together without ``#``:
such digits must never be kept readable. They are kept as an HMAC-SHA-256 tag under a secret
only this node (later the deployment) holds, so that failures against one unknown id can still be
counted and correlated while the digits cannot be read back, nor found by hashing every possible
account number (that would need the key).

The key is 32 random bytes in ``DATA/account-id.key``, mode 0600, made on first start: written
whole to a temporary file and linked into place, so a crash or a second process starting at the
same moment never leaves a partial key, and never replaces one already there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .store import StoreError

KEY_FILE = "account-id.key"
KEY_BYTES = 32
TAG_HEX = 32  # 128 of HMAC-SHA-256's 256 bits: plenty to tell ids apart, short enough to read
PREFIX = "unknown:"  # a stored account reference that is a tag, never digits (account ids are digits only)


class SecretError(StoreError):
    """The node's key cannot be used; the message names the file and says what to do."""


def load_or_create_key(data_dir: Path) -> bytes:
    """This node's key, made on first use (atomically, mode 0600)."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists() and not path.is_symlink():
        _create(path)
    return _read(path)


def _create(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # unlike rename, fails if another process made the key first: theirs stays
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name survives a power cut
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise SecretError(f"cannot create the node's key {path}: {exc}. The data directory must be writable "
                          "by the node's user") from exc


def _read(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise SecretError(f"the node's key {path} is not a regular file: move it aside (a new key is made "
                              "on the next start; failure counts of unknown accounts start again)")
        key = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"cannot read the node's key {path}: {exc}. It must be readable by the node's user "
                          "(and no one else: chmod 600)") from exc
    if mode & 0o077:
        raise SecretError(f"the node's key {path} can be read by others (mode {stat.S_IMODE(mode):o}): "
                          f"chmod 600 {path}")
    if len(key) != KEY_BYTES:
        raise SecretError(f"the node's key {path} is damaged ({len(key)} bytes, not {KEY_BYTES}): restore it "
                          "from a backup, or move it aside (a new key is made on the next start; failure counts "
                          "of unknown accounts start again)")
    return key


@dataclass(frozen=True)
class KeyedHash:
    """HMAC-SHA-256 of keyed digits under the node's key, as a printable reference."""

    key: bytes = field(repr=False)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> KeyedHash:
        return cls(load_or_create_key(data_dir))

    def ref(self, digits: str) -> str:
        """``unknown:<hex>``: the same for the same digits, unreadable without the key."""
        tag = hmac.new(self.key, digits.encode(), hashlib.sha256).hexdigest()[:TAG_HEX]
        return PREFIX + tag


def is_ref(account: str) -> bool:
    """True for a reference made by :meth:`KeyedHash.ref` (not an account id)."""
    return account.startswith(PREFIX)
