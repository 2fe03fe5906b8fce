"""DANE for outbound SMTP (RFC 7672): the ``dane`` plugin of the outbound ``tls_policy`` stage.

A destination whose DNS zone is signed can publish, at ``_25._tcp.<MX host>``, TLSA records
that name the certificate (or the CA) its MX host presents. A client that finds them through
DNSSEC knows the host must speak TLS with that certificate, and an attacker on the path can
neither strip STARTTLS nor put in a certificate of his own. Before the queue runner connects to
an MX host, this plugin

1. (``require_secure_mx``, the default) asks for the destination's MX records again with
   DNSSEC: DANE applies only when they are secure and name this host, or when a secure NODATA
   makes the domain its own (implicit) MX host (RFC 7672 2.2.1);
2. asks for the host's A records with DNSSEC: when they are insecure the host's zone is not
   signed and DANE does not apply (2.2.2); a host name reached through a (secure) CNAME has its
   TLSA records looked for at the expanded name first, then at the name itself;
3. asks for ``_25._tcp.<host>`` TLSA. A secure answer with usable records (usage DANE-TA(2) or
   DANE-EE(3); selector 0 or 1; matching type 0, 1 or 2 with a digest of the right length)
   makes TLS mandatory for the host (no plaintext, whatever happens: ``policy.require``) and
   adds a check that passes when ANY usable record matches the chain the server sent:

   - DANE-EE(3): the leaf certificate (selector 0) or its SubjectPublicKeyInfo (1), in full
     (matching type 0) or its SHA-256 (1) or SHA-512 (2). No name, no expiry, no CA: the
     record is the trust (3.1.1);
   - DANE-TA(2): a certificate the server sent above the leaf matches the record, and the chain
     from the leaf up to it verifies (signatures, validity, CA constraints), with the leaf valid
     for one of the reference identifiers of 3.2.2: the TLSA base domain, the MX host name as
     the MX record gave it, or the destination domain (gomail.delivery.certs.verify_chain).
     A trust anchor given only as a public key that the server does not send a certificate for
     is not used (servers must send it, 3.1.2).

   A failed check ends that session before MAIL FROM; the next MX host is tried, and when none
   is left the mail is deferred (451 4.7.5) and retried, never sent in plaintext. A secure
   answer with only unusable records (PKIX-TA(0), PKIX-EE(1), unknown parameters) still means
   the host does TLS: STARTTLS is required, without authentication (RFC 7672 2.2, 3.1.3).
   A secure NXDOMAIN or NODATA: no DANE for that host. An insecure answer: no DANE either.
4. A look-up that fails (SERVFAIL, which is what a validating resolver answers for a forged
   or broken signature, or a time-out) where DANE may apply skips the host with 451 4.7.5: the
   RFC says an attacker who can make the look-up fail must not win a plaintext session by it
   (2.1.1). Where the MX or address records were already insecure nothing is looked up.

Turn it on in the pipeline file, and point gomail's DNS at a validating resolver that you run
(dnspython checks no signatures: gomail believes the resolver's AD bit, see gomail.dns)::

    outbound:
      tls_policy: [dane]
      # or: tls_policy: [dane, mta-sts]  (dane first: a host it authenticates is left to it,
      #     as RFC 8461 2 asks; MTA-STS applies to the hosts without usable TLSA records)
      # or: tls_policy: [{dane: {require_secure_mx: false}}]

    # gomail.yaml
    dns: {nameservers: [127.0.0.1], dnssec: true}   # e.g. unbound on this machine

Without ``dns.dnssec: true`` nothing is ever secure and the plugin does nothing (it says so
in the log once). ``require_secure_mx: false`` also honours TLSA records of MX hosts whose own
zone is signed when the destination's MX records are not: it can only add protection, but an
attacker who can forge the MX records chooses other hosts anyway.

Not done: DANE for a smarthost (its TLS is configured), TLS-RPT reports, digest algorithm
agility (RFC 7671 9: a record with a weaker digest is used too).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gomail.delivery.certs import verify_chain
from gomail.delivery.policy import Attempt, PeerTLS, TLSPolicy
from gomail.dns import DNSError, MXHost, TemporaryDNSError
from gomail.options import Option
from gomail.verdict import Verdict

__all__ = [
    "NAME",
    "TLSARecord",
    "association",
    "check_chain",
    "gomail_plugin_options",
    "gomail_tls_policy",
    "matches",
    "usable",
]

log = logging.getLogger("gomail.dane")

NAME = "dane"  # the plugin's name in pipelines, TLSPolicy.required_by and checks
DANE_TA, DANE_EE = 2, 3
CERT, SPKI = 0, 1  # selectors
FULL, SHA256, SHA512 = 0, 1, 2  # matching types
_DIGEST_SIZE = {SHA256: 32, SHA512: 64}

_warned = False  # the "dns.dnssec is off" warning is given once


@dataclass(frozen=True, slots=True)
class TLSARecord:
    """One TLSA record: certificate usage, selector, matching type, association data."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @classmethod
    def of(cls, rdata) -> TLSARecord:
        """From dnspython's TLSA rdata."""
        return cls(rdata.usage, rdata.selector, rdata.mtype, bytes(rdata.cert))

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()[:16]}…"


def usable(records: Iterable[TLSARecord]) -> list[TLSARecord]:
    """The records an SMTP client can use (RFC 7672 3.1): DANE-TA or DANE-EE, a known selector
    and matching type, a digest of its size. PKIX-TA(0) and PKIX-EE(1) are not (3.1.3)."""
    out = []
    for r in records:
        if r.usage not in (DANE_TA, DANE_EE) or r.selector not in (CERT, SPKI):
            continue
        if r.mtype == FULL:
            if r.data:
                out.append(r)
        elif r.mtype in _DIGEST_SIZE and len(r.data) == _DIGEST_SIZE[r.mtype]:
            out.append(r)
    return out


def association(cert: x509.Certificate, selector: int, mtype: int) -> bytes:
    """What a TLSA record of this selector and matching type holds for cert."""
    if selector == CERT:
        data = cert.public_bytes(Encoding.DER)
    elif selector == SPKI:
        data = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    else:
        raise ValueError(f"unknown TLSA selector {selector}")
    if mtype == FULL:
        return data
    if mtype == SHA256:
        return hashlib.sha256(data).digest()
    if mtype == SHA512:
        return hashlib.sha512(data).digest()
    raise ValueError(f"unknown TLSA matching type {mtype}")


def matches(record: TLSARecord, cert: x509.Certificate | bytes) -> bool:
    """Whether record's association data is that of cert (DER bytes or a certificate); the
    usage is not looked at."""
    if isinstance(cert, bytes):
        try:
            cert = x509.load_der_x509_certificate(cert)
        except ValueError:
            return False
    try:
        return association(cert, record.selector, record.mtype) == record.data
    except ValueError:
        return False


def check_chain(
    records: Iterable[TLSARecord], chain: Iterable[bytes], names: Iterable[str]
) -> str | None:
    """None when any usable record authenticates chain (DER, leaf first, as the server sent
    it); else why not. ``names`` are the reference identifiers a DANE-TA leaf must match."""
    records = usable(records)
    ders = list(chain)
    if not ders:
        return "the server sent no certificate"
    if not records:
        return "no usable TLSA record"
    certs: list[x509.Certificate | None] = []
    for der in ders:
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError:
            certs.append(None)
    names = list(dict.fromkeys(n.rstrip(".").lower() for n in names))
    problems: list[str] = []
    for r in records:
        if r.usage == DANE_EE:
            if certs[0] is not None and matches(r, certs[0]):
                return None
            continue
        for depth in range(1, len(certs)):
            ta = certs[depth]
            if ta is None or not matches(r, ta):
                continue
            reasons = [verify_chain(ders[:depth], n, [ta]) for n in names]
            if None in reasons:
                return None
            problems.append(f"DANE-TA {r} matched, but {reasons[0]}")
    if problems:
        return "; ".join(problems)
    return f"no TLSA record matches the certificate chain ({', '.join(map(str, records))})"


def gomail_plugin_options() -> dict[str, Option]:
    return {
        "require_secure_mx": Option(
            bool,
            True,
            "apply DANE only when the destination's MX records are DNSSEC-secure (RFC 7672 "
            "2.2.1); false: also for hosts of insecure MX records whose own zone is signed",
        )
    }


async def gomail_tls_policy(
    attempt: Attempt, mx: MXHost, policy: TLSPolicy, options: dict, app
) -> Verdict | None:
    dns = app.dns
    if not getattr(dns, "dnssec", False):
        global _warned
        if not _warned:
            _warned = True
            log.warning("dane: dns.dnssec is off, so no TLSA record is trusted: DANE never applies")
        return None
    host = mx.host.rstrip(".").lower()
    try:
        if options.get("require_secure_mx", True) and not await _secure_mx(dns, attempt, host):
            return None
        found = await _tlsa(dns, host)
    except TemporaryDNSError as exc:
        log.warning("queue %s: %s: DANE look-up failed: %s", attempt.queue_id, host, exc)
        return Verdict.tempfail(451, "4.7.5", f"DANE: DNSSEC look-up failed ({exc})")
    except DNSError:  # permanent: the runner's own look-ups will say so
        return None
    if found is None:
        return None
    base, records = found
    policy.require(NAME)
    good = usable(records)
    if not good:
        log.info("%s: TLSA records but none usable: TLS required, not authenticated", host)
        return None
    names = [base, host, attempt.domain]

    def check(peer: PeerTLS) -> str | None:
        problem = check_chain(good, peer.chain, names)
        if problem:
            log.warning("queue %s: %s[%s]: %s", attempt.queue_id, host, peer.ip, problem)
        return problem

    policy.authenticate(NAME, check)
    return None


async def _secure_mx(dns, attempt: Attempt, host: str) -> bool:
    """Whether host is a mail exchanger of the destination by DNSSEC-secure MX records (or,
    with a secure NODATA for MX, the domain itself)."""
    domain = attempt.domain.rstrip(".").lower()
    answer = await dns.secure_query(domain, "MX")
    if not answer.secure or answer.nxdomain:
        return False
    if not answer.records:
        return host == domain
    return host in {r.exchange.to_text(omit_final_dot=True).lower() for r in answer.records}


async def _tlsa(dns, host: str) -> tuple[str, list[TLSARecord]] | None:
    """(TLSA base domain, records) when host has a secure TLSA RRset; None when DANE does not
    apply to it (insecure addresses or TLSA records, or a secure denial)."""
    addresses = await dns.secure_query(host, "A")
    if not addresses.secure:
        return None
    bases = [addresses.canonical or host]
    if host not in bases:
        bases.append(host)  # RFC 7672 2.2.2: the CNAME-expanded name first, then the original
    for base in bases:
        answer = await dns.tlsa(f"_25._tcp.{base}")
        if not answer.secure:
            return None
        if answer.records:
            return base, [TLSARecord.of(r) for r in answer.records]
    return None
