"""TLSA matching of the dane plugin on its own: records against certificate chains, no daemons.

Certificates come from trustme: a root, an intermediate that issues the MX host's leaf (the
server sends leaf + intermediate, as trustme's server side does), and unrelated ones.
"""

from __future__ import annotations

import datetime
import hashlib

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gomail_dane import TLSARecord, association, check_chain, matches, usable


def der_chain(leaf: trustme.LeafCert) -> list[bytes]:
    """The chain a server configured with leaf sends: leaf first, then intermediates."""
    return [
        x509.load_pem_x509_certificate(b.bytes()).public_bytes(Encoding.DER)
        for b in leaf.cert_chain_pems
    ]


def cert_of(blob: trustme.Blob) -> x509.Certificate:
    return x509.load_pem_x509_certificate(blob.bytes())


@pytest.fixture(scope="module")
def pki():
    root = trustme.CA()
    inter = root.create_child_ca()
    leaf = inter.issue_cert("mx1.dest.test")
    other = trustme.CA().issue_cert("mx1.dest.test")  # same name, another CA and key
    return root, inter, leaf, other


def test_usable_keeps_only_dane_ta_and_ee_with_known_parameters():
    d32, d64 = b"\x01" * 32, b"\x02" * 64
    records = [
        TLSARecord(3, 1, 1, d32),  # usable
        TLSARecord(2, 0, 2, d64),  # usable
        TLSARecord(3, 0, 0, b"\x30\x03"),  # usable: full certificate
        TLSARecord(0, 0, 1, d32),  # PKIX-TA: not for SMTP (RFC 7672 3.1.3)
        TLSARecord(1, 1, 1, d32),  # PKIX-EE: not for SMTP
        TLSARecord(3, 2, 1, d32),  # unknown selector
        TLSARecord(3, 1, 3, d32),  # unknown matching type
        TLSARecord(3, 1, 1, d64),  # SHA-256 of the wrong size
        TLSARecord(3, 1, 2, d32),  # SHA-512 of the wrong size
        TLSARecord(3, 1, 0, b""),  # nothing to compare
    ]
    assert usable(records) == records[:3]


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_every_selector_and_matching_type(pki, selector, mtype):
    _root, _inter, leaf, other = pki
    cert = cert_of(leaf.cert_chain_pems[0])
    record = TLSARecord(3, selector, mtype, association(cert, selector, mtype))
    assert matches(record, cert)
    assert matches(record, der_chain(leaf)[0])  # DER bytes too
    assert not matches(record, cert_of(other.cert_chain_pems[0]))
    assert check_chain([record], der_chain(leaf), ["mx1.dest.test"]) is None
    problem = check_chain([record], der_chain(other), ["mx1.dest.test"])
    assert problem and "no TLSA record matches" in problem


def test_association_data_is_what_openssl_publishes(pki):
    _root, _inter, leaf, _other = pki
    cert = cert_of(leaf.cert_chain_pems[0])
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert association(cert, 1, 1) == hashlib.sha256(spki).digest()
    assert association(cert, 0, 2) == hashlib.sha512(cert.public_bytes(Encoding.DER)).digest()
    assert association(cert, 1, 0) == spki
    with pytest.raises(ValueError):
        association(cert, 7, 1)


def test_dane_ee_ignores_name_and_expiry():
    ca = trustme.CA()
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    expired = ca.issue_cert(
        "somewhere.else.test", not_before=past, not_after=past + datetime.timedelta(days=1)
    )
    cert = cert_of(expired.cert_chain_pems[0])
    record = TLSARecord(3, 1, 1, association(cert, 1, 1))
    assert check_chain([record], der_chain(expired), ["mx1.dest.test"]) is None
    # the same certificate as DANE-TA's leaf would fail: there the chain and name count
    ta = TLSARecord(2, 0, 1, association(cert_of(ca.cert_pem), 0, 1))
    assert check_chain([ta], der_chain(expired), ["mx1.dest.test"]) is not None


@pytest.mark.parametrize("selector", [0, 1])
def test_dane_ta_intermediate_with_the_right_name(pki, selector):
    _root, inter, leaf, other = pki
    record = TLSARecord(2, selector, 1, association(cert_of(inter.cert_pem), selector, 1))
    assert check_chain([record], der_chain(leaf), ["mx1.dest.test"]) is None
    # any reference identifier will do: the TLSA base domain, the MX name, the domain
    assert check_chain([record], der_chain(leaf), ["mx9.x.test", "mx1.dest.test"]) is None
    # a chain from another CA: nothing matches
    assert "no TLSA record matches" in check_chain([record], der_chain(other), ["mx1.dest.test"])


def test_dane_ta_wrong_name_fails_with_the_reason(pki):
    _root, inter, leaf, _other = pki
    record = TLSARecord(2, 0, 1, association(cert_of(inter.cert_pem), 0, 1))
    problem = check_chain([record], der_chain(leaf), ["mx2.dest.test", "dest.test"])
    assert problem and "DANE-TA" in problem and "not valid for mx2.dest.test" in problem


def test_dane_ta_must_be_sent_by_the_server(pki):
    root, _inter, leaf, _other = pki
    # the root is not in the chain the server sends (leaf + intermediate): no match
    record = TLSARecord(2, 0, 1, association(cert_of(root.cert_pem), 0, 1))
    assert check_chain([record], der_chain(leaf), ["mx1.dest.test"]) is not None
    # when the server sends it too, the root is a trust anchor like any other
    chain = der_chain(leaf) + [cert_of(root.cert_pem).public_bytes(Encoding.DER)]
    assert check_chain([record], chain, ["mx1.dest.test"]) is None


def test_dane_ta_does_not_accept_the_leaf_itself(pki):
    _root, _inter, leaf, _other = pki
    cert = cert_of(leaf.cert_chain_pems[0])
    record = TLSARecord(2, 1, 1, association(cert, 1, 1))  # a TA record naming the leaf
    assert check_chain([record], der_chain(leaf), ["mx1.dest.test"]) is not None


def test_any_usable_record_is_enough_and_unusable_ones_never_match(pki):
    _root, _inter, leaf, other = pki
    cert = cert_of(leaf.cert_chain_pems[0])
    good = TLSARecord(3, 1, 1, association(cert, 1, 1))
    wrong = TLSARecord(3, 1, 1, association(cert_of(other.cert_chain_pems[0]), 1, 1))
    pkix = TLSARecord(1, 1, 1, association(cert, 1, 1))  # matches, but PKIX-EE is unusable
    assert check_chain([wrong, good], der_chain(leaf), ["mx1.dest.test"]) is None
    assert check_chain([wrong, pkix], der_chain(leaf), ["mx1.dest.test"]) is not None
    assert check_chain([pkix], der_chain(leaf), ["mx1.dest.test"]) == "no usable TLSA record"
    assert check_chain([good], [], ["mx1.dest.test"]) == "the server sent no certificate"
    assert check_chain([good], [b"garbage"], ["mx1.dest.test"]) is not None


def test_dns_dnssec_setting(tmp_path):
    from gomail.config import ConfigError, load_config
    from gomail.dns import from_config

    f = tmp_path / "gomail.yaml"
    f.write_text("dns: {nameservers: [127.0.0.1]}\n")
    assert load_config(f).dns_dnssec is False  # off unless said: the AD bit is not trusted
    assert from_config(load_config(f)).dnssec is False
    f.write_text("dns: {nameservers: [127.0.0.1], dnssec: true}\n")
    assert load_config(f).dns_dnssec is True
    assert from_config(load_config(f)).dnssec is True
    f.write_text("dns: {dnssec: 'yes'}\n")
    with pytest.raises(ConfigError, match="dns.dnssec"):
        load_config(f)
