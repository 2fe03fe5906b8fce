"""The aiosmtpd handler that turns SMTP session events into pipeline stages.

One Handler serves one listener; per-connection state lives on the protocol object
(:class:`gomail.smtp.protocol.GomailSMTP`: ``ctx`` is the Session, ``txn`` the open
Transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import AuthResult

from gomail import events, logins
from gomail.address import NeedsSmtpUtf8, parse_path, plus_base
from gomail.clients import client_key
from gomail.context import Recipient, Session, Transaction, new_id
from gomail.imap.meta import message_meta_async
from gomail.limits import ConnectionLimiter, RefusalLog
from gomail.message import Message
from gomail.pipeline import Listener, Pipeline, run_stage
from gomail.printable import printable
from gomail.store import Delivery, StoreError
from gomail.verdict import Action, Verdict

if TYPE_CHECKING:
    from gomail.app import App
    from gomail.smtp.protocol import GomailSMTP
    from gomail.spool import Spool

log = logging.getLogger("gomail.smtp")
txlog = logging.getLogger("gomail.smtp.transaction")

UNKNOWN_USER = "5.1.1"  # the enhanced code of a RCPT refused because no such user exists
STRESS_SHARE = 0.75  # of limits.connections open: the listener is under stress


def _reply(v: Verdict) -> str:
    return v.smtp_reply()


class Handler:
    """aiosmtpd handler for one listener: every hook runs the listener's pipeline."""

    def __init__(self, app: App, listener: Listener, pipeline: Pipeline) -> None:
        self.app = app
        self.listener = listener
        self.pipeline = pipeline
        self.connections: set[GomailSMTP] = set()
        self.limits = app.config.limits
        self.limiter = ConnectionLimiter(self.limits.connections, self.limits.connections_per_ip)
        self.refusals = RefusalLog(log, listener.name)
        # aiosmtpd's table of handler hooks, built once for every connection to share.
        self.hooks = {
            attr.removeprefix("handle_"): getattr(self, attr)
            for attr in dir(self)
            if attr.startswith("handle_")
        }

    # --- connection lifecycle (called by the protocol) ---------------------------------

    def admit(self, server: GomailSMTP, transport: asyncio.BaseTransport) -> str | None:
        """Count a new connection in, or the reply that refuses it (the connection limits)."""
        peer = transport.get_extra_info("peername") or ("", 0)
        ip = str(peer[0])
        reason = self.limiter.admit(ip)
        if reason is None:
            server._admitted = ip
            return None
        self.refusals.note(ip, reason, self.limiter)
        return f"421 4.7.0 {self.app.config.hostname} Error: {reason}"

    def release(self, ip: str) -> None:
        self.limiter.release(ip)

    @property
    def stressed(self) -> bool:
        """Most connection slots are taken: commands get limits.smtp_stress_timeout."""
        return self.limiter.open >= STRESS_SHARE * self.limits.connections

    def connection_opened(self, server: GomailSMTP, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("", 0)
        sock = transport.get_extra_info("sockname") or ("", 0)
        server.ctx = Session(
            id=new_id(),
            listener=self.listener.name,
            pipeline=self.pipeline.name,
            peer_ip=str(peer[0]),
            peer_port=int(peer[1]),
            local_ip=str(sock[0]),
            local_port=int(sock[1]),
            tls=server.implicit_tls,
        )
        server.ctx.state["auth_failures"] = 0
        self.connections.add(server)

    def tls_started(self, server: GomailSMTP) -> None:
        server.ctx.tls = True
        server.ctx.helo = None
        server.txn = None

    def connection_closed(self, server: GomailSMTP) -> None:
        self.transaction_ended(server)
        self.connections.discard(server)

    def transaction_ended(self, server: GomailSMTP, outcome: str = "aborted") -> None:
        txn = server.txn
        if txn is not None:
            server.txn = None
            if txn.recipients or txn.state.get("rejections"):
                self._log_transaction(server, txn, outcome, None, 0)

    async def on_connect(self, server: GomailSMTP) -> str | None:
        """Run the connect stage; a reply string means refuse and close."""
        if self.app.stopping:
            return "421 4.3.2 Server shutting down, try again later"
        v = await self._stage("connect", server)
        if v.is_failure:
            log.info(
                "connection refused",
                extra={"fields": {"session": server.ctx.id, "peer": server.ctx.peer_ip,
                                  "plugin": v.plugin, "reply": _reply(v)}},
            )  # fmt: skip
            if v.action is Action.TEMPFAIL:
                return f"421 {v.enhanced} {v.text}"
            return f"554 {v.enhanced} {v.text}"
        return None

    async def _stage(self, stage: str, server: GomailSMTP, **args: Any) -> Verdict:
        args["session"] = server.ctx
        args["app"] = self.app
        return await run_stage(self.pipeline.uses(stage), args, server.ctx.id)

    # --- HELO / EHLO -------------------------------------------------------------------

    async def handle_HELO(self, server: GomailSMTP, session: Any, envelope: Any, hostname: str):
        server.ctx.helo = hostname
        v = await self._stage("helo", server, hostname=hostname)
        if v.is_failure:
            return _reply(v)
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_EHLO(
        self, server: GomailSMTP, session: Any, envelope: Any, hostname: str, responses: list
    ):
        server.ctx.helo = hostname
        v = await self._stage("helo", server, hostname=hostname)
        if v.is_failure:
            session.host_name = None
            return [_reply(v)]
        session.host_name = hostname
        lines = [r for r in responses if r[4:] != "HELP"]
        if not server.offers_auth():
            lines = [r for r in lines if not r[4:].startswith("AUTH")]
        lines += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-CHUNKING"]
        lines[-1] = "250 " + lines[-1][4:]
        return lines

    # --- AUTH --------------------------------------------------------------------------

    async def authenticate(
        self, server: GomailSMTP, mechanism: str, login: bytes, password: bytes
    ) -> AuthResult:
        ctx = server.ctx
        failures = ctx.state["auth_failures"]
        result = await logins.login(
            self.app,
            protocol="smtp",
            listener=self.listener.name,
            peer=ctx.peer_ip,
            login=login.decode("utf-8", "replace"),
            secret=password.decode("utf-8", "replace"),
            mechanism=mechanism,
            failures=failures,
            session=ctx.id,
        )
        if result.locked:
            return AuthResult(
                success=False,
                handled=False,
                message="454 4.7.0 Too many failed logins from your address, try again later",
            )
        username = result.user
        if username is None:
            ctx.state["auth_failures"] = failures = failures + 1
            if failures >= logins.FAILURES_BEFORE_DISCONNECT:
                await server.push("421 4.7.0 Too many failed authentications, goodbye")
                server.transport.close()
                return AuthResult(success=False, handled=True)
            return AuthResult(
                success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
            )
        v = await self._stage("auth", server, username=username, mechanism=mechanism)
        if v.is_failure:
            return AuthResult(success=False, handled=False, message=_reply(v))
        ctx.user = username
        return AuthResult(success=True, auth_data=username)

    # --- MAIL / RCPT -------------------------------------------------------------------

    async def handle_MAIL(
        self, server: GomailSMTP, session: Any, envelope: Any, address: str, options: list
    ):
        ctx = server.ctx
        if self.app.stopping:
            server.close_after_reply()  # closing first would drop the reply unsent
            return "421 4.3.2 Server shutting down, try again later"
        if self.listener.auth == "required" and not ctx.authenticated:
            return "530 5.7.0 Authentication required"
        smtputf8 = "SMTPUTF8" in options
        if address == "<>":
            sender = ""
        else:
            try:
                sender = parse_path(address, smtputf8).address
            except NeedsSmtpUtf8:
                return "553 5.6.7 Non-ASCII address requires SMTPUTF8"
            except ValueError as exc:
                return f"553 5.1.7 Bad sender address syntax: {exc}"
        if ctx.authenticated and not await self.may_send_as(ctx.user, sender):
            return f"553 5.7.1 <{sender}>: Sender address not owned by user {ctx.user}"
        txn = Transaction(id=new_id(), sender=sender, mail_options=list(options))
        v = await self._stage("mail", server, transaction=txn)
        if v.is_failure:
            self._log_transaction(server, txn, "rejected", v, 0)
            return _reply(v)
        server.txn = txn
        envelope.mail_from = sender or "<>"
        envelope.mail_options.extend(options)
        envelope.smtp_utf8 = smtputf8
        return "250 2.1.0 OK"

    async def may_send_as(self, user: str, sender: str) -> bool:
        """An authenticated user may send as their own address, plus-tagged or not, or as an
        alias (or catch-all) that delivers to them."""
        if not sender:
            return False
        if sender == user:
            return True
        local, _, domain = sender.rpartition("@")
        base = plus_base(local)
        if base and f"{base}@{domain}" == user:
            return True
        store = self.app.store
        for source in (sender, f"{base}@{domain}" if base else None, f"@{domain}"):
            if source is None:
                continue
            alias = await store.get_alias(source)
            if alias is not None and user in alias.targets:
                return True
        return False

    async def handle_RCPT(
        self, server: GomailSMTP, session: Any, envelope: Any, address: str, options: list
    ):
        txn = server.txn
        if txn is None:
            return "503 5.5.1 Error: need MAIL command"
        if len(txn.recipients) >= self.app.config.max_recipients:
            return "452 4.5.3 Too many recipients"
        if self._harvesting(server):
            server.close_after_reply()
            return "421 4.7.0 Too many unknown recipients, try again later"
        if address.lower() == "postmaster":
            # RFC 5321 4.5.1: "RCPT TO:<Postmaster>" without a domain must be accepted.
            address = await self._postmaster()
        try:
            parse_path(address, bool(envelope.smtp_utf8))
        except NeedsSmtpUtf8:
            return "553 5.6.7 Non-ASCII address requires SMTPUTF8"
        except ValueError as exc:
            return f"501 5.1.3 Bad recipient address syntax: {exc}"
        rcpt = Recipient(address=address, options=list(options))
        v = await self._stage("rcpt", server, transaction=txn, recipient=rcpt)
        if v.is_failure:
            txn.state.setdefault("rejections", []).append((address, v))
            if v.enhanced == UNKNOWN_USER:
                server.ctx.state["unknown_recipients"] = (
                    server.ctx.state.get("unknown_recipients", 0) + 1
                )
                self.app.unknown_recipients.add(client_key(server.ctx.peer_ip))
            return _reply(v)
        if v.action is not Action.ACCEPT and rcpt.route is None:
            v = Verdict.reject(554, "5.7.1", f"<{address}>: Relay access denied").by("core")
            txn.state.setdefault("rejections", []).append((address, v))
            return _reply(v)
        txn.recipients.append(rcpt)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def _harvesting(self, server: GomailSMTP) -> bool:
        """The client had too many RCPTs refused as unknown users, in this session or from
        its address within limits.unknown_recipients_window: every further RCPT is refused,
        the valid too (or the answers would still tell which addresses exist)."""
        limits = self.limits
        in_session = server.ctx.state.get("unknown_recipients", 0)
        from_ip = self.app.unknown_recipients.count(client_key(server.ctx.peer_ip))
        if (
            in_session < limits.unknown_recipients_per_session
            and from_ip < limits.unknown_recipients_per_ip
        ):
            return False
        log.warning(
            "too many unknown recipients",
            extra={"fields": {"session": server.ctx.id, "peer": server.ctx.peer_ip,
                              "in_session": in_session, "from_address": from_ip}},
        )  # fmt: skip
        return True

    async def _postmaster(self) -> str:
        """postmaster@ our domain: the server's host name's own domain (or its parent) when we
        serve it, else the first domain we serve."""
        store = self.app.store
        hostname = self.app.config.hostname.lower().rstrip(".")
        for candidate in (hostname, hostname.partition(".")[2]):
            if candidate and await store.has_domain(candidate):
                return f"postmaster@{candidate}"
        domains = await store.list_domains()
        return f"postmaster@{domains[0]}" if domains else "postmaster"

    async def handle_RSET(self, server: GomailSMTP, session: Any, envelope: Any):
        return "250 2.0.0 OK"

    # --- DATA --------------------------------------------------------------------------

    async def handle_DATA(self, server: GomailSMTP, session: Any, envelope: Any) -> str:
        txn = server.txn
        if txn is None:
            return "503 5.5.1 Error: need MAIL command"
        spool = server.received
        size = spool.size
        server.txn = None  # this transaction ends here, whatever happens
        try:
            async with self._memory_for(size):
                reply, v = await self._process(server, txn, spool)
        except Exception:
            log.exception("session %s: error processing message %s", server.ctx.id, txn.id)
            reply, v = "451 4.3.0 Local error in processing", None
        outcome = "accepted" if reply.startswith("250") else "rejected"
        self._log_transaction(server, txn, outcome, v, size)
        return reply

    def _memory_for(self, size: int) -> contextlib.AbstractAsyncContextManager:
        """Processing holds a message in memory (twice, briefly): a large one (past
        limits.spool_threshold) waits its turn among app.large_messages, so that many of
        them arriving at once cost disk while they wait. Small ones never wait."""
        if size > self.app.config.limits.spool_threshold:
            return self.app.large_messages
        return contextlib.nullcontext()

    async def _process(
        self, server: GomailSMTP, txn: Transaction, spool: Spool
    ) -> tuple[str, Verdict | None]:
        ctx = server.ctx
        raw = await spool.load()
        if b"\x00" in raw:
            v = Verdict.reject(554, "5.6.0", "Message contains NUL characters").by("core")
            return _reply(v), v
        message = Message(raw)
        v = await self._stage("data", server, transaction=txn, message=message)
        if v.is_failure:
            self.app.emit(events.EMAIL_REJECTED, **self._event_data(server, txn, v))
            return _reply(v), v
        if v.action is Action.DISCARD:
            return f"250 2.0.0 OK: discarded as {txn.id}", v
        if v.action is Action.QUARANTINE:
            txn.quarantined = True
        await self._apply_envelope_edits(server, txn, message)
        final = self._trace_headers(ctx, txn) + message.edited()
        del raw, message  # from here on, final is the one copy held
        final_size = len(final)
        dv = await self._stage("deliver", server, transaction=txn, message=Message(final))
        if dv.is_failure:
            return _reply(dv), dv
        if dv.action is Action.DISCARD:
            return f"250 2.0.0 OK: discarded as {txn.id}", dv
        plan = txn.plan
        if plan.empty:
            log.error(
                "message %s: no deliver plugin took it (pipeline %s)", txn.id, self.pipeline.name
            )
            fail = Verdict.tempfail(451, "4.3.0", "No delivery configured, try again later")
            return _reply(fail), fail.by("core")
        stored = final
        meta = None
        if plan.local:
            stored = f"Return-Path: <{txn.sender}>\r\n".encode() + final
            del final
            # IMAP's view (envelope, structure, search text) is made once, here.
            meta = await message_meta_async(stored)
        delivery = Delivery(
            queue_id=txn.id,
            sender=txn.sender,
            raw=stored,
            local=tuple(plan.local),
            outbound=tuple(plan.outbound),
            meta=meta,
            outbound_senders=dict(plan.outbound_senders),
        )
        try:
            await self.app.store.deliver(delivery)
        except StoreError as exc:
            log.error("message %s: store refused delivery: %s", txn.id, exc)
            fail = Verdict.tempfail(451, "4.3.0", "Could not store message, try again later")
            return _reply(fail), fail.by("core")
        self.app.emit(events.EMAIL_RECEIVED, **self._event_data(server, txn, v, final_size))
        if plan.local:
            self.app.emit(
                events.EMAIL_DELIVERED, queue_id=txn.id, sender=txn.sender,
                mailboxes=[(d.user, d.folder) for d in plan.local], size=len(stored),
            )  # fmt: skip
        if plan.outbound:
            if self.app.queue_runner is not None:
                self.app.queue_runner.wake()  # out now, not at the next poll
            # One event per envelope sender the copies go out with (SRS for forwarded mail).
            by_sender: dict[str, list[str]] = {}
            for address in plan.outbound:
                by_sender.setdefault(delivery.sender_for(address), []).append(address)
            for sender, recipients in by_sender.items():
                self.app.emit(
                    events.EMAIL_QUEUED, queue_id=txn.id, sender=sender,
                    recipients=recipients, size=final_size,
                )  # fmt: skip
        return f"250 2.0.0 OK: queued as {txn.id}", (v if v.plugin else dv)

    async def _apply_envelope_edits(
        self, server: GomailSMTP, txn: Transaction, message: Message
    ) -> None:
        for edit in message.envelope_edits:
            if edit.kind == "change_sender":
                txn.sender = edit.value
            elif edit.kind == "remove_recipient":
                txn.recipients = [r for r in txn.recipients if r.address != edit.value]
            elif edit.kind == "add_recipient":
                rcpt = Recipient(address=edit.value)
                v = await self._stage("rcpt", server, transaction=txn, recipient=rcpt)
                if v.is_failure or (v.action is not Action.ACCEPT and rcpt.route is None):
                    log.warning(
                        "message %s: recipient %s added by plugin %s was refused: %s",
                        txn.id, edit.value, edit.plugin, _reply(v),
                    )  # fmt: skip
                else:
                    txn.recipients.append(rcpt)

    def _trace_headers(self, ctx: Session, txn: Transaction) -> bytes:
        """Authentication-Results (when plugins gave results) and Received (RFC 5321 4.4)."""
        hostname = self.app.config.hostname
        out = []
        # Everything a client or a plugin said goes through printable(): no header injection.
        if txn.auth_results:
            results = ";\r\n\t".join(printable(r) for r in txn.auth_results)
            out.append(f"Authentication-Results: {hostname};\r\n\t{results}")
        protocol = "ESMTP" + ("S" if ctx.tls else "") + ("A" if ctx.authenticated else "")
        peer = f"[{ctx.peer_ip}]" if ":" not in ctx.peer_ip else f"[IPv6:{ctx.peer_ip}]"
        helo = printable(ctx.helo or "unknown")
        received = (
            f"Received: from {helo} ({peer})\r\n\tby {hostname} (gomail)"
            f" with {protocol} id {txn.id}"
        )
        if len(txn.recipients) == 1:
            received += f"\r\n\tfor <{printable(txn.recipients[0].address)}>"
        received += "; " + email.utils.format_datetime(email.utils.localtime())
        out.append(received)
        return ("\r\n".join(out) + "\r\n").encode("utf-8", "surrogateescape")

    # --- logging and events ------------------------------------------------------------

    def _event_data(self, server: GomailSMTP, txn: Transaction, v: Verdict | None, size: int = 0):
        return {
            "queue_id": txn.id,
            "session": server.ctx.id,
            "listener": self.listener.name,
            "peer": server.ctx.peer_ip,
            "sender": txn.sender,
            "recipients": [r.address for r in txn.recipients],
            "user": server.ctx.user,
            "size": size,
            "verdict": v.action.value if v else None,
            "plugin": v.plugin if v else None,
        }

    def _log_transaction(
        self, server: GomailSMTP, txn: Transaction, outcome: str, v: Verdict | None, size: int
    ) -> None:
        fields = {
            "queue_id": txn.id,
            "session": server.ctx.id,
            "listener": self.listener.name,
            "peer": server.ctx.peer_ip,
            "user": server.ctx.user,
            "sender": txn.sender,
            "recipients": [r.address for r in txn.recipients],
            "rejected": [a for a, _ in txn.state.get("rejections", [])],
            "verdict": outcome if v is None or v.action is Action.CONTINUE else v.action.value,
            "reply": v.smtp_reply() if v is not None and v.is_failure else None,
            "plugin": v.plugin if v is not None else None,
            "size": size,
            "duration_ms": round((time.monotonic() - txn.started) * 1000, 1),
        }
        txlog.info(outcome, extra={"fields": {k: val for k, val in fields.items() if val}})
