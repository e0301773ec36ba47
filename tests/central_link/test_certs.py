"""`nodectl certs`: a CA, a hub certificate for 127.0.0.1/localhost, node certificates with CN =
node id, a revocation list; keys mode 0600, never replaced without --force."""

from __future__ import annotations

import stat

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from central_link import certs
from node_agent.cli import main


def nodectl(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_dev_makes_a_ca_a_hub_and_nodes_with_private_keys_0600(capsys, tmp_path):
    folder = tmp_path / "certs"
    rc, out, err = nodectl(capsys, "certs", "dev", "sz-01", "sz-02", "--dir", str(folder))
    assert rc == 0, err
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    paths = certs.Paths(folder)
    for key in (paths.ca[1], paths.hub[1], paths.node("sz-01")[1], paths.node("sz-02")[1]):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert not list(folder.glob(".*.tmp"))  # nothing half-written left beside them
    ca, hub, node = _cert(paths.ca[0]), _cert(paths.hub[0]), _cert(paths.node("sz-01")[0])
    assert certs.common_name(node) == "sz-01" and node.issuer == ca.subject
    node.verify_directly_issued_by(ca)
    hub.verify_directly_issued_by(ca)
    alt = hub.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in alt.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert certs.load_crl(paths) == []
    # again: what exists is kept
    before = paths.ca[1].read_bytes()
    rc, out, _ = nodectl(capsys, "certs", "dev", "sz-01", "--dir", str(folder))
    assert rc == 0 and "made nothing" in out and paths.ca[1].read_bytes() == before


def test_a_key_is_never_replaced_without_force(capsys, tmp_path):
    folder = str(tmp_path)
    assert nodectl(capsys, "certs", "ca", "--dir", folder)[0] == 0
    assert nodectl(capsys, "certs", "node", "sz-01", "--dir", folder)[0] == 0
    key = certs.Paths(tmp_path).node("sz-01")[1]
    first = key.read_bytes()
    rc, _, err = nodectl(capsys, "certs", "node", "sz-01", "--dir", folder)
    assert rc == 2 and f"nodectl: {key.with_suffix('.crt')} exists" in err and "--force" in err
    assert key.read_bytes() == first
    assert nodectl(capsys, "certs", "node", "sz-01", "--dir", folder, "--force")[0] == 0
    assert key.read_bytes() != first and stat.S_IMODE(key.stat().st_mode) == 0o600


def test_revoke_lists_the_nodes_serial_in_the_crl_and_keeps_earlier_ones(capsys, tmp_path):
    folder = str(tmp_path)
    assert nodectl(capsys, "certs", "dev", "a", "b", "c", "--dir", folder)[0] == 0
    paths = certs.Paths(tmp_path)
    for n, node in enumerate(("a", "b"), start=1):
        rc, out, _ = nodectl(capsys, "certs", "revoke", node, "--dir", folder)
        assert rc == 0 and f"lists {n} certificate(s)" in out
    crl = x509.load_pem_x509_crl(paths.crl.read_bytes())
    ca = _cert(paths.ca[0])
    assert crl.is_signature_valid(ca.public_key())
    serials = {r.serial_number for r in crl}
    assert serials == {_cert(paths.node(n)[0]).serial_number for n in ("a", "b")}


def test_bad_requests_are_named(capsys, tmp_path):
    rc, _, err = nodectl(capsys, "certs", "node", "x", "--dir", str(tmp_path))
    assert rc == 2 and f"{tmp_path / 'ca.crt'}: the CA certificate is not there: make it with `nodectl certs ca`" in err
    nodectl(capsys, "certs", "ca", "--dir", str(tmp_path))
    rc, _, err = nodectl(capsys, "certs", "node", "../evil", "--dir", str(tmp_path))
    assert rc == 2 and "node id '../evil'" in err
    assert not (tmp_path.parent / "evil.key").exists()
    rc, _, err = nodectl(capsys, "certs", "revoke", "nobody", "--dir", str(tmp_path))
    assert rc == 2 and "node-nobody.crt" in err
