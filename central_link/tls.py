"""Every SSL context of the link is made here: the node's (client) and the hub's (server), both
TLS 1.3 only, both verifying the other side against the deployment's CA.

The hub's context checks the node's certificate against the CA's revocation list; because an
``SSLContext`` cannot drop a CRL it has loaded, :class:`ServerContexts` makes a new context when
the CRL file changes, so a revocation counts from the next handshake without a restart.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

# OpenSSL's X509_V_ERR_* codes the hub names in its refusals
_V_UNTRUSTED = {2, 18, 19, 20, 21}  # no issuer / self-signed / not our CA
_V_REVOKED, _V_EXPIRED, _V_NOT_YET, _V_NO_CRL = 23, 10, 9, 3


class TlsConfigError(RuntimeError):
    """A certificate, key or CA file that cannot be loaded; the message names it."""


def _load(ctx: ssl.SSLContext, cert: Path, key: Path, ca: Path) -> None:
    for what, p in (("certificate", cert), ("key", key), ("CA certificate", ca)):
        if not Path(p).is_file():
            raise TlsConfigError(f"{p}: the {what} file does not exist (make it with `nodectl certs`)")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise TlsConfigError(f"{cert} / {key}: not a certificate and its private key ({exc})") from None
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise TlsConfigError(f"{ca}: not a PEM CA certificate ({exc})") from None


def client_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The node's side: presents its certificate, trusts only the deployment's CA for the hub."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load(ctx, cert, key, ca)
    return ctx  # check_hostname and CERT_REQUIRED are PROTOCOL_TLS_CLIENT's defaults


def server_context(cert: Path, key: Path, ca: Path, crl: Path | None) -> ssl.SSLContext:
    """The hub's side: a node must present a certificate from the CA, not revoked in ``crl``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load(ctx, cert, key, ca)
    if crl is not None:
        try:
            ctx.load_verify_locations(cafile=str(crl))
        except (ssl.SSLError, FileNotFoundError) as exc:
            raise TlsConfigError(f"{crl}: not a PEM revocation list ({exc}): `nodectl certs ca` writes one") from None
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def console_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The agent console's side: the hub's certificate, and no client certificate asked for (an
    agent's browser has none: agents log in with a password)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_NONE
    for what, p in (("certificate", cert), ("key", key)):
        if not Path(p).is_file():
            raise TlsConfigError(f"{p}: the hub's {what} file does not exist (make it with `nodectl certs hub`)")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise TlsConfigError(f"{cert} / {key}: not a certificate and its private key ({exc})") from None
    return ctx


@dataclass
class ServerContexts:
    """The hub's context, remade when the revocation list changes on disk."""
    cert: Path
    key: Path
    ca: Path
    crl: Path | None
    _ctx: ssl.SSLContext | None = None
    _stamp: tuple = ()

    def get(self) -> ssl.SSLContext:
        stamp = ()
        if self.crl is not None:
            try:
                st = os.stat(self.crl)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                stamp = ("missing",)
        if self._ctx is None or stamp != self._stamp:
            self._ctx = server_context(self.cert, self.key, self.ca, self.crl)
            self._stamp = stamp
        return self._ctx


def refusal_reason(exc: BaseException) -> str:
    """Why a node's handshake failed, in the words the hub logs."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == _V_REVOKED:
            return "certificate revoked (listed in the CA's revocation list)"
        if code in _V_UNTRUSTED:
            return f"certificate not signed by this deployment's CA ({exc.verify_message})"
        if code in (_V_EXPIRED, _V_NOT_YET):
            return f"certificate not valid now ({exc.verify_message})"
        if code == _V_NO_CRL:
            return "no revocation list for the CA: the hub's crl file is missing or from another CA"
        return f"certificate refused: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"):
        return "no client certificate"
    if isinstance(exc, TimeoutError):
        return "TLS handshake timed out"
    return f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}"
