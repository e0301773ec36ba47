"""The deployment's certificates for the mutual-TLS link, made with ``cryptography``.

One folder holds them (``nodectl certs`` writes it; docs/central-link.md):

``ca.crt`` / ``ca.key``   the deployment's CA: it signs the hub's and every node's certificate
``ca.crl``                the revocation list the hub reads (re-signed on every revocation)
``hub.crt`` / ``hub.key`` the hub's server certificate (SAN 127.0.0.1 and localhost)
``node-ID.crt`` / ``.key`` a node's client certificate, CN = the node id

Keys are EC P-256, PEM, PKCS#8 unencrypted, written with mode 0600 atomically (a reader never sees
half a key) and never replace an existing file unless ``force``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .protocol import NODE_ID_RE

CA_DAYS, LEAF_DAYS, CRL_DAYS = 3650, 825, 3650  # a development CA; a real one renews its CRL far sooner
HUB_NAMES = ("localhost", "127.0.0.1")


class CertError(RuntimeError):
    """A certificate task that cannot be done; the message says which file and what to do."""


@dataclass(frozen=True)
class Paths:
    folder: Path

    @property
    def ca(self) -> tuple[Path, Path]:
        return self.folder / "ca.crt", self.folder / "ca.key"

    @property
    def crl(self) -> Path:
        return self.folder / "ca.crl"

    @property
    def hub(self) -> tuple[Path, Path]:
        return self.folder / "hub.crt", self.folder / "hub.key"

    def node(self, node_id: str) -> tuple[Path, Path]:
        return self.folder / f"node-{node_id}.crt", self.folder / f"node-{node_id}.key"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "branchnode"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(paths: Paths, name: str = "branchnode development CA", force: bool = False) -> Path:
    """A new CA (certificate, key) and its empty revocation list."""
    crt, key_path = paths.ca
    _may_write(force, crt, key_path, paths.crl)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key, force)
    _write_public(crt, cert.public_bytes(serialization.Encoding.PEM), force)
    _write_crl(paths, cert, key, [])
    return crt


def make_hub(paths: Paths, names: tuple[str, ...] = HUB_NAMES, force: bool = False) -> Path:
    """The hub's server certificate, for these DNS names / IP addresses."""
    alt = [x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in names]
    return _leaf(paths, *paths.hub, names[0], ExtendedKeyUsageOID.SERVER_AUTH, alt, force)


def make_node(paths: Paths, node_id: str, force: bool = False) -> Path:
    """A node's client certificate: CN = node id (the hub takes the node's identity from it)."""
    if not NODE_ID_RE.fullmatch(node_id):
        raise CertError(f"node id {node_id!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                        "letter or digit (it names the certificate and its files)")
    return _leaf(paths, *paths.node(node_id), node_id, ExtendedKeyUsageOID.CLIENT_AUTH, [], force)


def revoke(paths: Paths, node_id: str) -> int:
    """Add the node's certificate to the revocation list; returns how many certificates it lists."""
    crt, _ = paths.node(node_id)
    cert = _load_cert(crt, f"node {node_id}'s certificate", f"nodectl certs node {node_id}")
    ca_cert, ca_key = load_ca(paths)
    revoked = [r for r in load_crl(paths) if r.serial_number != cert.serial_number]
    entry = (x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(_now())
             .build())
    _write_crl(paths, ca_cert, ca_key, [*revoked, entry])
    return len(revoked) + 1


def load_ca(paths: Paths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt, key_path = paths.ca
    cert = _load_cert(crt, "the CA certificate", "nodectl certs ca")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise CertError(f"{key_path}: no CA key: make the CA first (`nodectl certs ca`)") from None
    except ValueError:
        raise CertError(f"{key_path}: not an unencrypted PEM private key: give the key `nodectl certs ca` "
                        "wrote") from None
    return cert, key


def load_crl(paths: Paths) -> list[x509.RevokedCertificate]:
    try:
        return list(x509.load_pem_x509_crl(paths.crl.read_bytes()))
    except FileNotFoundError:
        return []
    except ValueError:
        raise CertError(f"{paths.crl}: not a PEM revocation list: move it aside and run "
                        "`nodectl certs ca --force` only if you mean to start a new CA") from None


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _leaf(paths: Paths, crt: Path, key_path: Path, cn: str, usage, alt: list, force: bool) -> Path:
    ca_cert, ca_key = load_ca(paths)
    _may_write(force, crt, key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if alt:
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key, force)
    _write_public(crt, cert.public_bytes(serialization.Encoding.PEM), force)
    return crt


def _write_crl(paths: Paths, ca_cert: x509.Certificate, ca_key, revoked: list) -> None:
    now = _now()
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject).last_update(now)
         .next_update(now + dt.timedelta(days=CRL_DAYS)))
    for r in revoked:
        b = b.add_revoked_certificate(r)
    _write(paths.crl, b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), 0o644, True)


def _load_cert(path: Path, what: str, how: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise CertError(f"{path}: {what} is not there: make it with `{how}` (or give --dir)") from None
    except ValueError:
        raise CertError(f"{path}: {what} is not a PEM certificate") from None


def _may_write(force: bool, *files: Path) -> None:
    for p in files:
        if not p.parent.is_dir():
            raise CertError(f"{p.parent}: no such folder: create it first (`mkdir -m 700 {p.parent}`)")
        if p.exists() and not force:
            raise CertError(f"{p} exists: certificates and keys are not replaced by accident; choose another "
                            "folder, or give --force to replace them")


def _write_key(path: Path, key, force: bool) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write(path, pem, 0o600, force)


def _write_public(path: Path, data: bytes, force: bool) -> None:
    _write(path, data, 0o644, force)


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    # mkstemp makes the file 0600 beside the target: nobody can read a key in the making, and the
    # name appears whole (link refuses an existing name; replace is atomic)
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
                raise CertError(f"{path} appeared while it was being made: nothing was replaced; try again") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
