"""gomail.delivery.certs: the chain check that outbound TLS policies use."""

from __future__ import annotations

import datetime

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from gomail.delivery.certs import system_roots, verify_chain


def der_chain(cert: trustme.LeafCert) -> list[bytes]:
    return [
        x509.load_pem_x509_certificate(p.bytes()).public_bytes(Encoding.DER)
        for p in cert.cert_chain_pems
    ]


def root(ca: trustme.CA) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.cert_pem.bytes())


def test_valid_chain_and_name():
    ca = trustme.CA()
    assert (
        verify_chain(der_chain(ca.issue_cert("mx.example.org")), "mx.example.org", [root(ca)])
        is None
    )


def test_chain_through_an_intermediate():
    ca = trustme.CA()
    inter = ca.create_child_ca()
    chain = der_chain(inter.issue_cert("mx.example.org"))
    assert len(chain) == 2
    assert verify_chain(chain, "MX.Example.org.", [root(ca)]) is None
    assert verify_chain(chain[:1], "mx.example.org", [root(ca)]) is not None  # intermediate missing


def test_wrong_name_wrong_root_expired_and_empty():
    ca, other = trustme.CA(), trustme.CA()
    chain = der_chain(ca.issue_cert("mx.example.org"))
    assert "subjectAltName" in verify_chain(chain, "mx.other.org", [root(ca)])
    assert verify_chain(chain, "mx.example.org", [root(other)]) is not None
    now = datetime.datetime.now(datetime.UTC)
    short = der_chain(ca.issue_cert("mx.example.org", not_after=now + datetime.timedelta(days=1)))
    assert verify_chain(short, "mx.example.org", [root(ca)]) is None
    later = now + datetime.timedelta(days=2)
    assert "not valid at validation time" in verify_chain(
        short, "mx.example.org", [root(ca)], now=later
    )
    assert verify_chain([], "mx.example.org", [root(ca)]) == "no certificate"
    assert verify_chain(chain, "mx.example.org", []) == "no trusted roots"


def test_system_roots_include_an_extra_cafile(tmp_path):
    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    roots = system_roots(str(path))
    assert root(ca) in roots
    assert set(system_roots()) < set(roots)  # the system's roots too, not only the file's
