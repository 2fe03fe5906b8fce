"""Checking a server's certificate chain after the handshake, for outbound TLS policies.

The queue runner's handshake never verifies (opportunistic TLS takes any certificate); a policy
plugin that must know whether the chain is trustworthy calls :func:`verify_chain` on the chain
the server sent (:attr:`gomail.delivery.policy.PeerTLS.chain`) with the roots it trusts: the
system's (MTA-STS, RFC 8461 4.2) or a certificate that DNS vouched for (DANE-TA, RFC 7672 3.1.1).
It is cryptography's RFC 5280 path builder and name check; the CA/Browser Forum's extension
rules apply to CAs, while the server's own certificate may carry any extensions (mail servers'
certificates are often made by hand: a critical subjectAltName, no extended key usage), as
OpenSSL's verification, which Postfix and Dovecot use, accepts them.
"""

from __future__ import annotations

import datetime
import ssl
import warnings
from collections.abc import Iterable
from functools import lru_cache

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

# any extension, but a subjectAltName (critical or not) the name is checked against
_EE_POLICY = ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)


def load_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


@lru_cache(maxsize=8)
def system_roots(cafile: str | None = None) -> tuple[x509.Certificate, ...]:
    """The certificates the system trusts (OpenSSL's default paths), plus those in cafile."""
    ctx = ssl.create_default_context()
    if cafile:
        ctx.load_verify_locations(cafile)
    ders = ctx.get_ca_certs(binary_form=True)
    if len(ders) <= (1 if cafile else 0):
        # a CA directory (capath) is only read lazily by OpenSSL: read the bundle file
        paths = ssl.get_default_verify_paths()
        for path in (paths.cafile, paths.openssl_cafile):
            if path:
                try:
                    bundle = ssl.create_default_context(cafile=path)
                except (OSError, ssl.SSLError):
                    continue
                ders = [*ders, *bundle.get_ca_certs(binary_form=True)]
                break
    return tuple(_load_roots(ders))


def _load_roots(ders: list[bytes]) -> list[x509.Certificate]:
    roots = []
    for der in ders:
        # a few roots in the wild break RFC 5280 (a negative serial number): cryptography
        # warns now and will refuse them later; such a root is left out, not fatal
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                roots.append(x509.load_der_x509_certificate(der))
            except ValueError:
                continue
    return roots


def verify_chain(
    chain: Iterable[bytes],
    name: str,
    roots: Iterable[x509.Certificate],
    now: datetime.datetime | None = None,
) -> str | None:
    """None when chain (DER, leaf first) leads from a certificate valid for DNS name ``name``
    to one of roots; else why not, in words for a log line."""
    certs = [load_der(c) for c in chain]
    if not certs:
        return "no certificate"
    roots = list(roots)
    if not roots:
        return "no trusted roots"
    builder = (
        PolicyBuilder()
        .store(Store(roots))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_EE_POLICY)
    )
    if now is not None:
        builder = builder.time(now)
    try:
        verifier = builder.build_server_verifier(x509.DNSName(name.rstrip(".").lower()))
        verifier.verify(certs[0], certs[1:])
    except VerificationError as exc:
        reason = str(exc).split(" (encountered processing", 1)[0]
        return f"certificate chain not valid for {name}: {reason}"
    except ValueError as exc:
        return f"certificate not usable for {name}: {exc}"
    return None
