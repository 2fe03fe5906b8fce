"""The queue runner: due entries -> MX look-up -> one SMTP transaction per (message, domain).

Nothing lost, nothing twice: every recipient's outcome is stored as soon as the far side has
answered (a 250 after DATA removes the entry before QUIT is even sent), a failure before that
leaves the entry due again, and a permanent failure removes the entry in the same commit that
stores the bounce (:meth:`gomail.store.Store.queue_bounce`). Retries follow
``delivery.retry`` (5m, 10m, 30m, 1h, 2h, 4h, then every 4h) until ``delivery.max_age``
(5 days), when the message bounces. The first deferral at or after ``delivery.delay_notice``
(4 hours) sends the sender one ``Action: delayed`` DSN per transaction, stored in the same
commit as the deferral and the entries' ``delay_notified`` flag, so it is never sent twice.

A connection is kept a few seconds after its transaction for the next message to the same
destination (:mod:`.pool`), as Postfix's connection cache does.

A destination domain with a smarthost (``delivery.smarthosts``, else ``delivery.smarthost``)
skips the MX look-up: its mail goes to that host (its name resolved through app.dns, an IP
literal as is) with TLS as configured and AUTH; the same defer/bounce rules apply, and a
refused AUTH (535) defers, since it is our configuration that is wrong, not the address.

SMTPUTF8 and BODY=8BITMIME are sent when needed and offered (:func:`.client.mail_parameters`);
without 8BITMIME an 8-bit body is converted to quoted-printable or base64
(:mod:`.downgrade`), and what cannot be converted (8-bit headers) bounces (5.6.3), as do
non-ASCII addresses for a server without SMTPUTF8 (5.6.7).

The pipeline file's ``outbound:`` stages run for each attempt (:mod:`.policy`,
:mod:`gomail.hookspecs`): ``throttle`` may postpone it, ``route`` may choose the hosts or a
smarthost, ``tls_policy`` (per MX host) may require TLS and judge the certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Callable

from gomail import srs
from gomail.config import Smarthost
from gomail.context import LocalDelivery, new_id
from gomail.delivery.client import (
    AuthFailed,
    Relay,
    Reply,
    Timeouts,
    TLSFailed,
    TryNext,
    close,
    connect,
    opportunistic_context,
    relay_context,
    transact,
)
from gomail.delivery.dsn import Failure, build_dsn
from gomail.delivery.policy import Attempt, TLSPolicy
from gomail.delivery.pool import ConnectionPool
from gomail.dns import DNSError, NoSuchDomain, NullMX, PermanentDNSError
from gomail.events import EMAIL_BOUNCED, EMAIL_DEFERRED, EMAIL_FAILED, EMAIL_SENT
from gomail.pipeline import Pipeline, run_stage
from gomail.store import Delivery, NoSuchMessage, QueueEntry
from gomail.verdict import CONTINUE, Action, Verdict

log = logging.getLogger("gomail.delivery")


_NO_PIPELINE = Pipeline("outbound")
BATCH = 1000  # entries read from the queue per pass
MAX_INFLIGHT = 5000  # entries being sent (or waiting for a connection slot) at once
# After a pass that left due entries behind, the next one starts when deliveries finish, but
# not sooner than this: one read of the queue serves many finished deliveries.
PASS_GAP = 0.05

_RETURN_PATH = re.compile(rb"\AReturn-Path:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*", re.IGNORECASE)


def strip_return_path(raw: bytes) -> bytes:
    """The message without the Return-Path header that local delivery put first (RFC 5321
    4.4: a relay removes it); other headers untouched."""
    return _RETURN_PATH.sub(b"", raw, count=1)


def _null_sender(sender: str) -> bool:
    """A DSN's sender (null, or MAILER-DAEMON): never sent a DSN."""
    return not sender or sender.lower().startswith("mailer-daemon@")


def _policy_key(policy: TLSPolicy | None) -> tuple:
    """What a TLS policy asked of a connection: one made under it serves only the same."""
    if policy is None:
        return ()
    return (policy.required, tuple(by for by, _c in policy.checks), policy.authenticated_by)


def _text(v: Verdict) -> str:
    return f"{v.code} {v.enhanced} {v.text}" + (f" ({v.plugin})" if v.plugin else "")


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


class QueueRunner:
    """``await start()`` / ``await stop()``; ``wake()`` to look at the queue now;
    ``await run_once(now)`` runs one pass to its end (tests and ``queue flush``)."""

    def __init__(self, app, clock: Callable[[], float] = time.time) -> None:
        cfg = app.config
        self.app = app
        self.clock = clock
        self.timeouts = Timeouts(
            cfg.delivery_connect_timeout, cfg.delivery_command_timeout, cfg.delivery_data_timeout
        )
        self._global = asyncio.Semaphore(cfg.delivery_concurrency)
        self._domains: dict[str, tuple[asyncio.Semaphore, int]] = {}  # and its users
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._backlog = False  # the last pass left due entries for later
        self._main: asyncio.Task | None = None
        self._tls = opportunistic_context()
        self._relays: dict[Smarthost, Relay] = {}
        self._pool = ConnectionPool(self.timeouts)

    def smarthost_for(self, domain: str) -> Smarthost | None:
        """The smarthost for mail to domain: its own (delivery.smarthosts), else the global."""
        cfg = self.app.config
        return cfg.delivery_smarthosts.get(domain.lower()) or cfg.delivery_smarthost

    def _relay(self, smarthost: Smarthost) -> Relay:
        relay = self._relays.get(smarthost)
        if relay is None:
            ctx = None if smarthost.tls == "none" else relay_context(smarthost.tls_verify)
            relay = Relay(smarthost.tls, ctx, smarthost.username, smarthost.password)
            self._relays[smarthost] = relay
        return relay

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._main is None:
            self._main = asyncio.create_task(self._loop(), name="gomail-queue-runner")

    async def stop(self) -> None:
        """Stop at once: sessions in flight are cut; what they had not recorded stays queued."""
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        self._main = None
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._inflight.clear()
        await self._pool.close_all()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self, now: float | None = None) -> None:
        tasks = await self._pass(self.clock() if now is None else now)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        interval = self.app.config.delivery_poll_interval
        while True:
            # cleared before the pass, so that a wake() during the pass is not lost
            self._wake.clear()
            try:
                await self._pass(self.clock())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue runner: pass failed")
            if self._backlog:
                await asyncio.sleep(PASS_GAP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def _pass(self, now: float) -> list[asyncio.Task]:
        """Start a delivery task for every due (message, domain) not already being sent, the
        longest due first, as many as MAX_INFLIGHT allows."""
        room = min(BATCH, MAX_INFLIGHT - len(self._inflight))
        if room <= 0:
            self._backlog = True
            return []
        # in-flight entries are left out, so that a destination whose deliveries hang cannot
        # fill every pass with entries that are already being sent
        entries = await self.app.store.due_queue(now, room, exclude=self._inflight)
        self._backlog = len(entries) >= room
        # one SMTP transaction per message, destination domain and envelope sender (copies of
        # one message may go out with different senders: SRS for forwarded ones)
        groups: dict[tuple[str, str, str], list[QueueEntry]] = {}
        for e in entries:
            if e.id not in self._inflight:
                groups.setdefault((e.queue_id, domain_of(e.recipient), e.sender), []).append(e)
        started = []
        for (_qid, domain, _sender), group in groups.items():
            self._inflight.update(e.id for e in group)
            task = asyncio.create_task(self._deliver(domain, group, now))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
            started.append(task)
        return started

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if self._backlog:
            self._wake.set()  # a slot is free and due entries wait: look again

    # --- one group ------------------------------------------------------------------------

    async def _deliver(self, domain: str, group: list[QueueEntry], now: float) -> None:
        sem, users = self._domains.get(domain) or (
            asyncio.Semaphore(self.app.config.delivery_per_domain),
            0,
        )
        self._domains[domain] = (sem, users + 1)
        try:
            async with sem, self._global:
                await self._attempt(domain, group, now)
        except asyncio.CancelledError:
            raise
        except NoSuchMessage:
            pass  # deleted meanwhile (gomail queue delete)
        except Exception as exc:
            log.exception("queue: delivery of %s to %s failed", group[0].queue_id, domain)
            with contextlib.suppress(Exception):
                await self._defer(group, f"451 4.3.0 internal error: {exc}", now)
        finally:
            self._inflight.difference_update(e.id for e in group)
            sem, users = self._domains[domain]
            if users <= 1:
                del self._domains[domain]
            else:
                self._domains[domain] = (sem, users - 1)

    async def _attempt(self, domain: str, group: list[QueueEntry], now: float) -> None:
        first = group[0]
        attempt = Attempt(
            queue_id=first.queue_id,
            sender=first.sender,
            domain=domain,
            recipients=[e.recipient for e in group],
            size=first.size,
            attempts=min(e.attempts for e in group),
            created=first.created,
            smarthost=self.smarthost_for(domain),
        )
        outbound = self._outbound()
        if outbound.stages:
            v = await self._stage("throttle", attempt)
            if v.action is Action.TEMPFAIL:
                await self._postpone(group, now + attempt.retry_in, _text(v))
                return
            if v.action is Action.REJECT:
                await self._fail(group, _text(v), await self._message(first))
                return
            v = await self._stage("route", attempt)
            if v.is_failure:
                if v.action is Action.REJECT:
                    await self._fail(group, _text(v), await self._message(first))
                else:
                    await self._defer(group, _text(v), now)
                return
        message = await self._message(first)
        if attempt.smarthost is not None:
            await self._via_smarthost(attempt.smarthost, group, message, now)
            return
        dns = self.app.dns
        mxs = attempt.mx
        if mxs is None:
            try:
                mxs = await dns.mx(domain)
            except NullMX:
                reply = "556 5.1.10 Recipient domain has a null MX (RFC 7505)"
                await self._fail(group, reply, message)
                return
            except NoSuchDomain:
                await self._fail(group, f"550 5.1.2 Domain {domain} does not exist", message)
                return
            except PermanentDNSError as exc:
                await self._fail(group, f"550 5.1.2 {exc}", message)
                return
            except DNSError as exc:
                await self._defer(group, f"451 4.4.3 DNS look-up of {domain} failed: {exc}", now)
                return
        last = f"451 4.4.1 No mail exchanger of {domain} could be reached"
        for mx in mxs:
            policy = TLSPolicy(domain, mx.host)
            if outbound.uses("tls_policy"):
                v = await self._stage("tls_policy", attempt, mx=mx, policy=policy)
                if v.is_failure:
                    by = f" ({v.plugin})" if v.plugin else ""
                    last = f"451 {v.enhanced.replace('5.', '4.', 1)} {mx.host}: {v.text}{by}"
                    log.info("queue %s: %s skipped: %s", first.queue_id, mx.host, _text(v))
                    continue
            try:
                addresses = await dns.addresses(mx.host)
            except DNSError as exc:
                last = f"451 4.4.3 {mx.host}: {exc}"
                continue
            for ip in addresses:
                try:
                    await self._session(ip, mx.host, group, message, now, policy=policy)
                    return
                except TryNext as exc:
                    last = f"451 {exc.enhanced} {exc}"
                    log.info("queue %s: %s", first.queue_id, exc)
        await self._defer(group, last, now)

    def _outbound(self) -> Pipeline:
        pipes = self.app.pipelines  # None for an App made without pipelines (tools, tests)
        return pipes.outbound if pipes is not None else _NO_PIPELINE

    async def _stage(self, stage: str, attempt: Attempt, **args) -> Verdict:
        uses = self._outbound().uses(stage)
        if not uses:
            return CONTINUE
        return await run_stage(
            uses, {"attempt": attempt, "app": self.app, **args}, attempt.queue_id
        )

    async def _message(self, entry: QueueEntry) -> bytes:
        """The queued message as it is sent (and quoted in DSNs): no Return-Path, CRLF-ended."""
        message = strip_return_path(await self.app.store.queue_message(entry.id))
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        return message

    async def _via_smarthost(
        self, smarthost: Smarthost, group: list[QueueEntry], message: bytes, now: float
    ) -> None:
        host = smarthost.host
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self.app.dns.addresses(host)
            except DNSError as exc:  # even a permanent one: our configuration, so retry
                await self._defer(group, f"451 4.4.3 smarthost {host}: {exc}", now)
                return
        last = f"451 4.4.1 smarthost {host} could not be reached"
        relay = self._relay(smarthost)
        for ip in addresses:
            try:
                await self._session(ip, host, group, message, now, smarthost.port, relay)
                return
            except AuthFailed as exc:
                last = f"451 4.7.0 {exc}"
                log.error("queue %s: %s (check delivery.smarthost)", group[0].queue_id, exc)
                break  # the other addresses would refuse the same credentials
            except TryNext as exc:
                last = f"451 {exc.enhanced} {exc}"
                log.info("queue %s: %s", group[0].queue_id, exc)
        await self._defer(group, last, now)

    async def _session(
        self,
        ip: str,
        host: str,
        group: list[QueueEntry],
        message: bytes,
        now: float,
        port: int | None = None,
        relay: Relay | None = None,
        policy: TLSPolicy | None = None,
    ) -> None:
        cfg = self.app.config
        by_rcpt = {e.recipient: e for e in group}
        remote = f"{host}[{ip}]"

        async def record(replies: dict[str, Reply]) -> None:
            await self._record(by_rcpt, replies, remote, host, message, now)

        port = cfg.delivery_port if port is None else port
        sender, recipients = group[0].sender, list(by_rcpt)
        key = (domain_of(recipients[0]), ip, port, host, relay, _policy_key(policy))
        conn = self._pool.take(key)
        if conn is not None:
            try:
                await transact(
                    conn, sender=sender, recipients=recipients, message=message,
                    timeouts=self.timeouts, record=record,
                )  # fmt: skip
            except TryNext as exc:  # closed while idle, most likely: a fresh one may do
                close(conn)
                log.debug("queue %s: reused connection failed: %s", group[0].queue_id, exc)
            except BaseException:
                close(conn)
                raise
            else:
                self._pool.put(key, conn)
                return
        opts = dict(ip=ip, host=host, port=port, helo=cfg.hostname, timeouts=self.timeouts)
        if relay is not None:
            conn = await connect(tls=None, relay=relay, **opts)
        else:
            try:
                conn = await connect(tls=self._tls, policy=policy, **opts)
            except TLSFailed as exc:  # never raised when the policy requires TLS
                log.info("queue %s: %s; trying without TLS", group[0].queue_id, exc)
                if policy is not None:
                    policy.plaintext(str(exc))
                conn = await connect(tls=None, **opts)
        try:
            await transact(
                conn, sender=sender, recipients=recipients, message=message,
                timeouts=self.timeouts, record=record,
            )  # fmt: skip
        except BaseException:
            close(conn)
            raise
        self._pool.put(key, conn)

    async def _record(
        self,
        by_rcpt: dict[str, QueueEntry],
        replies: dict[str, Reply],
        remote: str,
        host: str,
        message: bytes,
        now: float,
    ) -> None:
        sent = [r for r, (code, _t) in replies.items() if 200 <= code < 300]
        if sent:
            await self.app.store.queue_sent(by_rcpt[r].id for r in sent)
            qid = by_rcpt[sent[0]].queue_id
            log.info("queue %s: sent to %s via %s", qid, ", ".join(sent), remote)
            self.app.emit(
                EMAIL_SENT, queue_id=qid, recipients=sent, remote=remote,
                reply=replies[sent[0]][1],
            )  # fmt: skip
        by_text: dict[str, list[QueueEntry]] = {}
        failed: list[tuple[QueueEntry, str]] = []
        for rcpt, (code, text) in replies.items():
            if 400 <= code < 500 or code < 200 or 300 <= code < 400:
                by_text.setdefault(text, []).append(by_rcpt[rcpt])
            elif code >= 500:
                failed.append((by_rcpt[rcpt], text))
        for text, entries in by_text.items():
            await self._defer(entries, f"{text} (from {host})", now)
        if failed:
            await self._bounce(failed, message, remote=host)

    # --- outcomes -------------------------------------------------------------------------

    async def _defer(self, entries: list[QueueEntry], error: str, now: float) -> None:
        cfg = self.app.config
        schedule = cfg.delivery_retry
        expired: list[QueueEntry] = []
        by_next: dict[float, list[QueueEntry]] = {}
        for e in entries:
            if now - e.created >= cfg.delivery_max_age:
                expired.append(e)
                continue
            delay = schedule[min(e.attempts, len(schedule) - 1)]
            nxt = min(now + delay, e.created + cfg.delivery_max_age)
            by_next.setdefault(nxt, []).append(e)
        # the delay notice: once per transaction and sender, with the first deferral after it
        late = [
            e
            for group in by_next.values()
            for e in group
            if not e.delay_notified and now - e.created >= cfg.delivery_delay_notice
        ]
        notify = bool(late) and not _null_sender(late[0].sender)
        notice = await self._delay_notice(late, error) if notify else None
        for nxt, group in by_next.items():
            await self.app.store.queue_defer(
                [e.id for e in group], nxt, error, notify=notify, notice=notice
            )
            if notice is not None:
                log.info(
                    "queue %s: sender %s told of the delay", group[0].queue_id, group[0].sender
                )
            notify, notice = False, None
            log.info(
                "queue %s: deferred %s until %s: %s", group[0].queue_id,
                ", ".join(e.recipient for e in group), time.ctime(nxt), error,
            )  # fmt: skip
            self.app.emit(
                EMAIL_DEFERRED, queue_id=group[0].queue_id,
                recipients=[e.recipient for e in group], error=error, next_attempt=nxt,
            )  # fmt: skip
        if expired:
            days = cfg.delivery_max_age / 86400
            text = f"{error} (gave up after {days:g} days)"
            # the message bytes are read again: the caller may not have them (DNS failure)
            message = await self._message(expired[0])
            await self._bounce([(e, text) for e in expired], message, event=EMAIL_FAILED)

    async def _postpone(self, entries: list[QueueEntry], nxt: float, why: str) -> None:
        await self.app.store.queue_postpone([e.id for e in entries], nxt)
        log.info(
            "queue %s: %s postponed until %s: %s", entries[0].queue_id,
            ", ".join(e.recipient for e in entries), time.ctime(nxt), why,
        )  # fmt: skip

    async def _fail(self, entries: list[QueueEntry], reply: str, message: bytes) -> None:
        """We give up on these recipients ourselves (not the far side's 5xx): email.failed."""
        await self._bounce([(e, reply) for e in entries], message, event=EMAIL_FAILED)

    async def _bounce(
        self,
        failed: list[tuple[QueueEntry, str]],
        message: bytes,
        remote: str | None = None,
        event: str = EMAIL_BOUNCED,
    ) -> None:
        first = failed[0][0]
        dsn = await self._dsn(failed, message, remote)
        error = "; ".join(f"{e.recipient}: {text}" for e, text in failed)
        await self.app.store.queue_bounce([e.id for e, _t in failed], error, dsn)
        log.info(
            "queue %s: bounced %s%s", first.queue_id, error,
            "" if dsn else " (null sender: no DSN)",
        )  # fmt: skip
        self.app.emit(
            event, queue_id=first.queue_id, recipients=[e.recipient for e, _t in failed],
            error=error, dsn=dsn is not None,
        )  # fmt: skip

    async def _delay_notice(self, late: list[QueueEntry], error: str) -> Delivery | None:
        """The "delayed" DSN for the sender (RFC 3464 Action: delayed), retried until the
        transaction's expiry."""
        first = late[0]
        return await self._dsn(
            [(e, error) for e in late],
            await self._message(first),
            None,
            will_retry_until=first.created + self.app.config.delivery_max_age,
        )

    async def _dsn(
        self,
        failed: list[tuple[QueueEntry, str]],
        message: bytes,
        remote: str | None,
        will_retry_until: float | None = None,
    ) -> Delivery | None:
        """The bounce (or, with will_retry_until, the delay notice) for the sender: none for a
        null sender (no DSN for a DSN)."""
        first = failed[0][0]
        sender = first.sender
        if _null_sender(sender):
            return None
        cfg = self.app.config
        store = self.app.store
        if sender[:4].upper() in ("SRS0", "SRS1") and await store.has_domain(domain_of(sender)):
            # mail we forwarded with an SRS sender: the bounce goes to the original sender
            try:
                sender = srs.for_config(cfg).reverse(sender)
            except (srs.SRSError, OSError, ValueError) as exc:
                log.warning("queue %s: bounce to %s dropped: %s", first.queue_id, sender, exc)
                return None
        raw = build_dsn(
            hostname=cfg.hostname,
            sender=sender,
            failures=[Failure(e.recipient, text, remote) for e, text in failed],
            original=message,
            queue_id=first.queue_id,
            arrival=first.created,
            now=time.time(),
            will_retry_until=will_retry_until,
        )
        if await store.get_user(sender) is not None:
            from gomail.imap.meta import message_meta

            stored = b"Return-Path: <>\r\n" + raw
            return Delivery(
                queue_id=new_id(),
                sender="",
                raw=stored,
                local=(LocalDelivery(sender, "INBOX"),),
                meta=message_meta(stored),
            )
        if await store.has_domain(domain_of(sender)):
            log.warning("queue %s: no mailbox %s for the bounce; dropped", first.queue_id, sender)
            return None
        return Delivery(queue_id=new_id(), sender="", raw=raw, outbound=(sender,))
