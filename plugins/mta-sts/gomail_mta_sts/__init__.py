"""MTA-STS for outbound mail (RFC 8461): the ``mta-sts`` plugin of the outbound ``tls_policy``
stage.

A domain that publishes MTA-STS says, over DNS and HTTPS, which MX hosts may receive its mail
and that they must be reached over TLS with a certificate that a public CA vouches for. Before
the queue runner connects to an MX host of a destination domain, this plugin

1. asks ``_mta-sts.<domain>`` for its TXT record (``v=STSv1; id=...;``) through ``app.dns``;
2. when the id differs from the cached policy's (or nothing is cached), fetches
   ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (no redirects, status 200,
   ``text/plain``, at most 64 KiB, the certificate valid for ``mta-sts.<domain>``; the name
   resolved through ``app.dns`` too) and keeps it in the store (namespace ``mta-sts``) until
   its ``max_age`` runs out, and in memory;
3. applies the policy's mode:

   - ``enforce``: an MX host that no ``mx:`` pattern of the policy matches is skipped (451
     4.7.5; the next host is tried and the mail deferred when none is left). A matching host
     must offer STARTTLS (no plaintext fallback) with a certificate chain valid for its name
     and leading to a trusted root, else the session ends before MAIL FROM and the next host
     is tried;
   - ``testing``: the same judgements, but only logged as warnings; mail is never held back;
   - ``none``: nothing (the domain withdrew its policy).

A policy that cannot be fetched (blocked, wrong certificate, bad file) leaves the cached one in
force until it expires (RFC 8461 3.3, 5.1): an attacker who blocks the fetch does not remove
the protection; a policy in use is fetched again once a day (or after half its ``max_age``)
even when its id did not change, so that it does not lapse. Without a cached policy, delivery
is opportunistic as usual. A failed fetch is not repeated for the same id within
:data:`FETCH_RETRY` seconds.

Turn it on in the pipeline file::

    outbound:
      tls_policy: [mta-sts]
      # or, with options:
      tls_policy: [{mta-sts: {ca_file: /etc/gomail/extra-roots.pem, fetch_timeout: 10}}]

``ca_file`` adds trusted roots (PEM) to the system's, for the policy fetch and the MX hosts'
certificates; ``https_port`` is the policy server's port (443; tests use another).
TLS reporting (TLS-RPT, RFC 8460) is not done here.

With DANE too, name ``dane`` first (``tls_policy: [dane, mta-sts]``): a host that DANE
authenticates (usable TLSA records, :attr:`TLSPolicy.authenticated_by`) is left to it, since
MTA-STS must not override DANE (RFC 8461 2) and a DANE-EE certificate need not come from a
public CA.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from functools import lru_cache

from gomail.delivery.certs import system_roots, verify_chain
from gomail.delivery.policy import Attempt, PeerTLS, TLSPolicy
from gomail.dns import DNSError, MXHost, NoSuchDomain
from gomail.options import Option
from gomail.verdict import Verdict

from gomail_mta_sts.fetch import FetchError, fetch_policy
from gomail_mta_sts.policy import Policy, PolicyError, mx_matches, parse_policy, txt_id

__all__ = [
    "NAMESPACE",
    "Policies",
    "Policy",
    "PolicyError",
    "mx_matches",
    "parse_policy",
    "policies_of",
    "txt_id",
]

log = logging.getLogger("gomail.mta-sts")

NAME = "mta-sts"  # the plugin's name in pipelines, in TLSPolicy.required_by and checks
NAMESPACE = "mta-sts"  # the store's plugin_data namespace; key: the domain
# seconds after which a policy still announced under the same id is fetched again (at most
# half its max_age), so that it does not run out while in use; a failure keeps the cached one
REFRESH = 86400.0
FETCH_RETRY = 300.0  # seconds before a failed fetch of the same policy id is tried again
MEMORY_SIZE = 10_000  # domains whose policy (or its absence) is kept in memory

_MISSING = object()


class Policies:
    """The MTA-STS policies one server knows: in the store (the truth across restarts) and,
    for speed, in memory. One look-up per domain at a time: attempts that ask while one is
    running wait for its answer instead of fetching again."""

    def __init__(self, app, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.clock = clock
        self._memory: dict[str, Policy | None] = {}
        self._running: dict[str, asyncio.Future[Policy | None]] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # domain -> (policy id, when)

    async def get(self, domain: str, options: dict) -> Policy | None:
        """The policy in force for domain now (any mode), or None when it has none."""
        domain = _ace(domain)
        running = self._running.get(domain)
        if running is None:
            running = asyncio.ensure_future(self._lookup(domain, options))
            self._running[domain] = running

            def done(fut: asyncio.Future, domain: str = domain) -> None:
                if self._running.get(domain) is fut:
                    del self._running[domain]
                if not fut.cancelled():
                    fut.exception()  # retrieved: no "never retrieved" warning

            running.add_done_callback(done)
        # shielded: a caller that times out does not cancel the look-up the others wait for
        return await asyncio.shield(running)

    async def cached(self, domain: str, now: float | None = None) -> Policy | None:
        """The unexpired policy in memory or, failing that, in the store."""
        now = self.clock() if now is None else now
        policy = self._memory.get(domain, _MISSING)
        if policy is _MISSING:
            policy = None
            text = await self.app.store.plugin_get(NAMESPACE, domain, now)
            if text is not None:
                try:
                    policy = Policy.from_json(text)
                except PolicyError as exc:
                    log.warning("mta-sts: %s: %s; forgotten", domain, exc)
                    await self.app.store.plugin_delete(NAMESPACE, domain)
            self._remember(domain, policy)
        if policy is not None and policy.expires <= now:
            self._memory.pop(domain, None)
            return None
        return policy  # type: ignore[return-value]

    def _remember(self, domain: str, policy: Policy | None) -> None:
        if len(self._memory) >= MEMORY_SIZE:
            self._memory.clear()  # read again from the store as needed
        self._memory[domain] = policy

    async def save(self, domain: str, policy: Policy) -> None:
        await self.app.store.plugin_put(NAMESPACE, domain, policy.to_json(), policy.expires)
        self._remember(domain, policy)

    async def _lookup(self, domain: str, options: dict) -> Policy | None:
        now = self.clock()
        cached = await self.cached(domain, now)
        try:
            records = await self.app.dns.txt(f"_mta-sts.{domain}")
        except NoSuchDomain:
            records = []
        except DNSError as exc:
            log.info("mta-sts: %s: TXT look-up failed (%s); using what is cached", domain, exc)
            return cached
        policy_id = txt_id(records)
        if policy_id is None:
            # no (valid) announcement: a cached policy stays in force until it expires
            return cached
        if (
            cached is not None
            and cached.id == policy_id
            and now - cached.fetched < min(REFRESH, cached.max_age / 2)
        ):
            return cached
        failed = self._failed.get(domain)
        if failed is not None and failed[0] == policy_id and now - failed[1] < FETCH_RETRY:
            return cached
        try:
            policy = await fetch_policy(
                self.app.dns,
                domain,
                policy_id,
                now,
                port=int(options.get("https_port") or 443),
                limit=float(options.get("fetch_timeout") or 10.0),
                ca_file=options.get("ca_file") or None,
            )
        except FetchError as exc:
            if len(self._failed) >= MEMORY_SIZE:
                self._failed.clear()
            self._failed[domain] = (policy_id, now)
            kept = f"; the cached policy (id {cached.id}, {cached.mode}) stays" if cached else ""
            log.warning("mta-sts: %s announces policy %s, not fetched: %s%s",
                        domain, policy_id, exc, kept)  # fmt: skip
            return cached
        self._failed.pop(domain, None)
        await self.save(domain, policy)
        log.info("mta-sts: %s: policy %s fetched (mode %s, mx %s, max_age %d)",
                 domain, policy.id, policy.mode, " ".join(policy.mx), policy.max_age)  # fmt: skip
        return policy


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def policies_of(app) -> Policies:
    """The :class:`Policies` of a running server (one per ``App``)."""
    state = _STATES.get(app)
    if state is None:
        state = _STATES[app] = Policies(app)
    return state


def _ace(domain: str) -> str:
    domain = domain.rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return domain


@lru_cache(maxsize=8)
def trusted_roots(ca_file: str | None) -> tuple:
    """The system's roots and those in ca_file, for the MX hosts' certificates."""
    roots = list(system_roots(None))
    if ca_file:
        roots += system_roots(ca_file)
    return tuple(dict.fromkeys(roots))


def certificate_problem(peer: PeerTLS, host: str, roots) -> str | None:
    """Why the peer's chain does not prove it is host (RFC 8461 4.2), or None."""
    try:
        return verify_chain(peer.chain, host, roots)
    except Exception as exc:  # an unreadable certificate
        return f"certificate not readable: {exc}"


# --- hooks --------------------------------------------------------------------------------


def gomail_plugin_options() -> dict[str, Option]:
    return {
        "ca_file": Option(
            str, None, "PEM file of roots trusted besides the system's (policy fetch and MX)"
        ),
        "https_port": Option(int, 443, "port of the policy web servers (mta-sts.<domain>)"),
        "fetch_timeout": Option(float, 10.0, "seconds a policy fetch may take"),
    }


async def gomail_tls_policy(
    attempt: Attempt, mx: MXHost, policy: TLSPolicy, options: dict, app
) -> Verdict | None:
    if policy.authenticated_by:
        # DANE (RFC 8461 2: MTA-STS must not override it) already authenticates this host
        return None
    sts = await policies_of(app).get(attempt.domain, options)
    if sts is None or sts.mode == "none":
        return None
    host = mx.host.rstrip(".").lower()
    domain = attempt.domain
    enforce = sts.mode == "enforce"
    if not sts.allows(host):
        reason = f"{host} is not an MX host the MTA-STS policy of {domain} allows"
        if enforce:
            return Verdict.tempfail(451, "4.7.5", reason)
        log.warning("mta-sts testing: %s: %s: %s (would be skipped)", domain, host, reason)
        return None
    roots = trusted_roots(options.get("ca_file") or None)
    if enforce:
        policy.require(NAME)
        policy.add_check(NAME, lambda peer: certificate_problem(peer, host, roots))
        return None

    def report(peer: PeerTLS) -> None:
        problem = certificate_problem(peer, host, roots)
        if problem:
            log.warning("mta-sts testing: %s: %s: %s (would be refused)", domain, host, problem)
        return None

    def plaintext(reason: str) -> None:
        log.warning("mta-sts testing: %s: %s: %s (would be refused)", domain, host, reason)

    policy.add_check(NAME, report)
    policy.on_plaintext(NAME, plaintext)
    return None
