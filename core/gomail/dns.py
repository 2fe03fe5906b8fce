"""The one DNS resolver of gomail: MX, address and TXT look-ups on dnspython's async resolver.

Everything that asks DNS (outbound delivery, SPF, DKIM, DMARC, DANE, MTA-STS) goes through the
:class:`Resolver` the server keeps as ``app.dns``, so that one setting decides where queries go::

    dns:
      nameservers: [127.0.0.1]   # default: the system's /etc/resolv.conf
      port: 53
      timeout: 5                 # seconds for a whole look-up (all servers, all retries)
      cache: true                # keep answers in memory for their TTL (false: ask every time)
      dnssec: false              # true: the nameservers validate DNSSEC, trust their AD bit

``dnssec: true`` is for a validating resolver that you run and reach over a path nobody else
can touch (unbound or knot-resolver on the same machine, ``nameservers: [127.0.0.1]``):
dnspython does not validate signatures itself, so :meth:`Resolver.secure_query` asks with the
DO and AD bits and believes the AD bit of the answer, which a resolver elsewhere on the network
(or anyone on the way to it) could set on anything. Without it every answer counts as
insecure, and DNSSEC-based policies (DANE) never apply.

Failures are exceptions in two families, because a mail server must tell them apart:
:class:`TemporaryDNSError` (SERVFAIL, time-out, no server answering: try again later) and
:class:`PermanentDNSError` (NXDOMAIN, null MX, a host without addresses: give up now).

Answers are cached in memory per (name, type) for their TTL, at most :data:`MAX_TTL`; NXDOMAIN
and NODATA for the SOA minimum, at most :data:`MAX_NEGATIVE_TTL` (RFC 2308). Temporary failures
are never cached: the next look-up asks again.

DNSSEC-aware look-ups (:meth:`Resolver.secure_query`, :meth:`Resolver.tlsa`) return a
:class:`SecureAnswer` that says whether the records (or their absence: NXDOMAIN or NODATA) were
validated. A validating resolver answers SERVFAIL for data whose signatures do not check
(bogus), so a failed look-up is a :class:`TemporaryDNSError` as usual: for DANE that means
"cannot tell", and the caller must not treat it as "no TLSA records" (RFC 7672 2.1.1). They are
cached like the others (the secure flag with them), apart from plain look-ups.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

MAX_TTL = 3600.0  # seconds an answer stays cached at most, whatever its TTL
MAX_NEGATIVE_TTL = 300.0  # NXDOMAIN / NODATA (RFC 2308 suggests 1-3 hours; we stay short)
CACHE_SIZE = 10_000  # entries; the oldest go first


class DNSError(Exception):
    """A look-up that gave no usable answer; its text says which name and why."""


class TemporaryDNSError(DNSError):
    """SERVFAIL, a time-out or no reachable server: the answer may come later."""


class PermanentDNSError(DNSError):
    """The name does not exist or cannot receive mail: asking again will not help."""


class NoSuchDomain(PermanentDNSError):
    """NXDOMAIN."""


class NullMX(PermanentDNSError):
    """The domain publishes a null MX (RFC 7505): it accepts no mail at all."""


class NoAddress(PermanentDNSError):
    """The host name exists but has neither A nor AAAA records."""


@dataclass(frozen=True, slots=True)
class MXHost:
    """One mail exchanger of a domain. implicit: there was no MX record, and the domain's own
    addresses stand in for one (RFC 5321 5.1)."""

    preference: int
    host: str  # without the trailing dot
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class SecureAnswer:
    """The result of a DNSSEC-aware look-up.

    ``records`` are the rdata of the answer's RRset (empty when the name has none of the type,
    or does not exist: ``nxdomain``); ``secure`` is True when the validating resolver vouched
    for the answer, the absence included (AD bit, and ``dns.dnssec`` on); ``canonical`` is the
    name the records belong to after CNAMEs (``name`` without any).
    """

    name: str
    rdtype: str
    records: tuple = ()
    secure: bool = False
    nxdomain: bool = False
    canonical: str = ""


def _authentic(response: dns.message.Message | None) -> bool:
    return response is not None and bool(response.flags & dns.flags.AD)


def _name(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text.rstrip(".") + ".")
    except dns.exception.DNSException as exc:
        raise NoSuchDomain(f"{text!r} is not a valid domain name: {exc}") from None


def _negative_ttl(exc: dns.resolver.NXDOMAIN) -> float:
    """How long an NXDOMAIN may be cached: min(SOA TTL, SOA minimum) of the response; 0 (do not
    cache) when that cannot be told."""
    try:
        return min(r.resolve_chaining().minimum_ttl for r in exc.responses().values())
    except Exception:  # no responses, a malformed one: do not cache
        return 0.0


async def _ask(
    res: dns.asyncresolver.Resolver, qname: dns.name.Name, rdtype: str, name: str
) -> dns.resolver.Answer:
    """res.resolve, its failures turned into ours; NXDOMAIN is left to the caller (a cached
    error for plain look-ups, an answer that may be a signed denial for secure ones)."""
    try:
        return await res.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        raise
    except dns.resolver.YXDOMAIN:
        raise PermanentDNSError(f"{name}: name too long after DNAME substitution") from None
    except dns.resolver.LifetimeTimeout:
        raise TemporaryDNSError(f"{name} {rdtype}: DNS time-out") from None
    except dns.resolver.NoNameservers as exc:
        raise TemporaryDNSError(f"{name} {rdtype}: no DNS server answered ({exc})") from None
    except dns.exception.DNSException as exc:
        raise TemporaryDNSError(f"{name} {rdtype}: DNS error: {exc}") from None


class Resolver:
    """Async look-ups. nameservers empty: the system's /etc/resolv.conf."""

    def __init__(
        self,
        nameservers: list[str] | tuple[str, ...] = (),
        port: int = 53,
        timeout: float = 5.0,
        cache: bool = True,
        cache_size: int = CACHE_SIZE,
        dnssec: bool = False,
    ) -> None:
        if nameservers:
            res = dns.asyncresolver.Resolver(configure=False)
            res.nameservers = list(nameservers)
        else:
            try:
                res = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                res = dns.asyncresolver.Resolver(configure=False)
                res.nameservers = ["127.0.0.1"]
        res.port = port
        res.lifetime = timeout
        res.timeout = min(timeout, 2.0)  # per server try: a dead server does not eat it all
        self._res = res
        # the same servers, asked with DO and AD (RFC 6840 5.7) for the secure look-ups
        sres = dns.asyncresolver.Resolver(configure=False)
        sres.nameservers = list(res.nameservers)
        sres.port, sres.lifetime, sres.timeout = res.port, res.lifetime, res.timeout
        sres.use_edns(0, dns.flags.DO, 1232)
        sres.flags = dns.flags.RD | dns.flags.AD
        self._sres = sres
        self.dnssec = dnssec  # trust the AD bit of the nameservers' answers
        self.timeout = timeout
        self.cache = cache
        self._cache_size = cache_size
        # (name, type) -> (monotonic expiry, Answer | None for NODATA | NoSuchDomain to raise)
        # secure look-ups: (name, "TLSA+AD") -> (expiry, SecureAnswer)
        self._cache: OrderedDict[
            tuple[dns.name.Name, str],
            tuple[float, dns.resolver.Answer | None | NoSuchDomain | SecureAnswer],
        ] = OrderedDict()

    def _remember(self, key, value, ttl: float, cap: float) -> None:
        ttl = min(max(ttl, 0.0), cap)
        if not self.cache or ttl <= 0:
            return
        self._cache.pop(key, None)  # re-inserted at the end: order is insertion time
        self._cache[key] = (time.monotonic() + ttl, value)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def nameservers(self) -> list[str]:
        return [str(ns) for ns in self._res.nameservers]

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        """The answer, or None when the name exists without records of the type (NODATA).
        Cached answers (NXDOMAIN included) are served without asking while their TTL lasts."""
        qname = _name(name)
        key = (qname, rdtype.upper())
        if self.cache and (hit := self._cache.get(key)) is not None:
            expires, value = hit
            if time.monotonic() < expires:
                if isinstance(value, NoSuchDomain):
                    raise NoSuchDomain(*value.args)
                return value
            del self._cache[key]
        try:
            answer = await _ask(self._res, qname, rdtype, name)
        except dns.resolver.NXDOMAIN as exc:
            err = NoSuchDomain(f"{name}: no such domain (NXDOMAIN)")
            self._remember(key, err, _negative_ttl(exc), MAX_NEGATIVE_TTL)
            raise err from None
        ttl = answer.chaining_result.minimum_ttl  # NODATA: the SOA minimum (RFC 2308)
        if answer.rrset is None:
            self._remember(key, None, ttl, MAX_NEGATIVE_TTL)
            return None
        self._remember(key, answer, ttl, MAX_TTL)
        return answer

    async def secure_query(self, name: str, rdtype: str) -> SecureAnswer:
        """The records of type rdtype at name, and whether DNSSEC vouched for them.

        Asks with the DO and AD bits set; ``secure`` is the answer's AD bit when ``dnssec`` is
        on (always False otherwise). NXDOMAIN and NODATA are answers here (no records, maybe
        secure: a signed denial), not exceptions; a name that is not a valid domain name is
        NoSuchDomain. SERVFAIL (which a validating resolver also answers for bogus data), a
        time-out or no server answering: TemporaryDNSError.
        """
        qname = _name(name)
        rdtype = rdtype.upper()
        key = (qname, rdtype + "+AD")
        if self.cache and (hit := self._cache.get(key)) is not None:
            expires, value = hit
            if time.monotonic() < expires and isinstance(value, SecureAnswer):
                return value
            del self._cache[key]
        plain = name.rstrip(".").lower()
        try:
            answer = await _ask(self._sres, qname, rdtype, name)
        except dns.resolver.NXDOMAIN as exc:
            responses = list(exc.responses().values())
            secure = self.dnssec and bool(responses) and all(map(_authentic, responses))
            result = SecureAnswer(plain, rdtype, (), secure, True, plain)
            self._remember(key, result, _negative_ttl(exc), MAX_NEGATIVE_TTL)
            return result
        secure = self.dnssec and _authentic(answer.response)
        canonical = answer.canonical_name.to_text(omit_final_dot=True).lower()
        ttl = answer.chaining_result.minimum_ttl
        if answer.rrset is None:
            result = SecureAnswer(plain, rdtype, (), secure, False, canonical)
            self._remember(key, result, ttl, MAX_NEGATIVE_TTL)
        else:
            result = SecureAnswer(plain, rdtype, tuple(answer.rrset), secure, False, canonical)
            self._remember(key, result, ttl, MAX_TTL)
        return result

    async def tlsa(self, name: str) -> SecureAnswer:
        """The TLSA records at name (``_25._tcp.mx.example.com``): :meth:`secure_query`."""
        return await self.secure_query(name, "TLSA")

    async def mx(self, domain: str) -> list[MXHost]:
        """The domain's mail exchangers, most preferred first (equal preferences shuffled, RFC
        5321 5.1). No MX record: the domain itself (implicit MX) when it has an address.
        NullMX for a null MX, NoSuchDomain, NoAddress or TemporaryDNSError otherwise."""
        answer = await self._query(domain, "MX")
        if answer is None:
            await self.addresses(domain)  # NoAddress when there is nothing to send to
            return [MXHost(0, domain.rstrip(".").lower(), implicit=True)]
        records = [(r.preference, r.exchange) for r in answer]
        if any(ex == dns.name.root for _pref, ex in records):
            raise NullMX(f"{domain} accepts no mail (null MX, RFC 7505)")
        hosts: dict[str, int] = {}
        for pref, ex in records:
            host = ex.to_text(omit_final_dot=True).lower()
            hosts[host] = min(pref, hosts.get(host, pref))
        items = list(hosts.items())
        random.shuffle(items)
        items.sort(key=lambda item: item[1])  # stable: ties stay shuffled
        return [MXHost(pref, host) for host, pref in items]

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of host. NoAddress when it has none, NoSuchDomain for
        NXDOMAIN; TemporaryDNSError only when neither look-up answered."""
        results = await asyncio.gather(
            self._query(host, "A"), self._query(host, "AAAA"), return_exceptions=True
        )
        out: list[str] = []
        errors: list[BaseException] = []
        for res in results:
            if isinstance(res, BaseException):
                if not isinstance(res, DNSError):
                    raise res
                errors.append(res)
            elif res is not None:
                out.extend(r.address for r in res)
        if out:
            return out
        for err in errors:
            if isinstance(err, PermanentDNSError):
                raise err
        if errors:
            raise errors[0]
        raise NoAddress(f"{host} has no A or AAAA record")

    async def txt(self, name: str) -> list[str]:
        """The TXT records of name, each with its strings joined (as SPF/DKIM/DMARC want);
        [] when the name has none. NoSuchDomain for NXDOMAIN."""
        answer = await self._query(name, "TXT")
        if answer is None:
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


def from_config(config) -> Resolver:
    """The resolver the config describes (``dns:`` setting)."""
    return Resolver(
        config.dns_nameservers,
        config.dns_port,
        config.dns_timeout,
        cache=config.dns_cache,
        dnssec=config.dns_dnssec,
    )
