"""SMTP client sessions to one address of one MX host, with every reply recorded:
:func:`connect` opens one and gets it ready, :func:`transact` sends a message on it (again
and again while it stays usable: the queue runner keeps idle ones in :mod:`.pool`),
:func:`quit_and_close` ends it.

aiosmtplib drives the protocol; we connect to the IP itself (``hostname=IP, start_tls=False``),
take STARTTLS when offered with a context that does not verify (opportunistic TLS: a bad
certificate is still better than plaintext; DANE and MTA-STS are for plugins to enforce), and
call ``mail``/``rcpt``/``data`` ourselves so that each recipient's answer is known.

An outbound TLS policy (:class:`~gomail.delivery.policy.TLSPolicy`, set by the tls_policy
stage's plugins) can make TLS mandatory for a host (no STARTTLS, or a failed handshake, then
skips the host instead of falling back to plaintext) and judge the certificate chain after the
handshake; a failed check ends the session before MAIL FROM.

Through a smarthost (:class:`Relay`) TLS is not opportunistic but as configured: STARTTLS
required (no fallback to plaintext), implicit TLS, or none; the certificate is verified against
the smarthost's name unless ``tls_verify: false``; then AUTH with the configured user.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiosmtplib

from gomail.delivery.downgrade import to_seven_bit
from gomail.delivery.policy import TLSPolicy, peer_tls

Reply = tuple[int, str]  # (code, "5.1.1 text ...")


class TryNext(Exception):
    """Nothing was decided for any recipient (connection refused, greeting or EHLO refused,
    MAIL FROM answered 4xx, time-out before MAIL): the next address or MX may do better.
    ``enhanced`` is the status code a deferral for this reason carries."""

    enhanced = "4.4.1"


class PolicyFailed(TryNext):
    """The TLS policy was not met (TLS required but missing or failed, or a certificate check
    failed): the next host may do better; never plaintext to this one."""

    enhanced = "4.7.5"


class TLSFailed(TryNext):
    """STARTTLS was offered but the handshake failed: try the same address without TLS."""


class AuthFailed(TryNext):
    """The smarthost refused our AUTH (535 ...): our configuration, not the recipient's."""


@dataclass(frozen=True, slots=True)
class Relay:
    """How to talk to a smarthost: tls is "starttls" (required), "implicit" or "none"."""

    tls: str
    context: ssl.SSLContext | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def relay_context(verify: bool) -> ssl.SSLContext:
    if not verify:
        return opportunistic_context()
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 30.0
    command: float = 300.0
    data: float = 600.0


def opportunistic_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def reply_text(code: int, message: str) -> str:
    return f"{code} " + " ".join(message.split())


_BROKEN = (aiosmtplib.SMTPException, OSError, TimeoutError)


@dataclass(slots=True)
class Connection:
    """An open SMTP session with one server, greeted, with TLS and AUTH as required: ready
    for a transaction (:func:`transact`), and for another after it when it stays usable."""

    client: aiosmtplib.SMTP
    where: str
    sock: socket.socket | None = None
    transactions: int = 0
    usable: bool = True  # False once a transaction left it in an unknown state


async def connect(
    *,
    ip: str,
    host: str,
    port: int,
    helo: str,
    timeouts: Timeouts,
    tls: ssl.SSLContext | None,
    relay: Relay | None = None,
    policy: TLSPolicy | None = None,
) -> Connection:
    """Connect to one server and get it ready: EHLO, STARTTLS when offered (opportunistic)
    or required (policy, relay), the policy's certificate checks, AUTH for a relay. Raises
    TryNext (TLSFailed: STARTTLS failed, try without; PolicyFailed: the TLS policy was not
    met, never without; AuthFailed: the relay refused our AUTH)."""
    where = f"{host}[{ip}]"
    implicit = relay is not None and relay.tls == "implicit"
    sock = None
    if implicit:
        # our own TCP connection to the IP, so that TLS checks the certificate against host
        try:
            sock = await _tcp(ip, port, timeouts.connect)
        except _BROKEN as exc:
            raise TryNext(f"connect to {where}: {exc or type(exc).__name__}") from None
        client = aiosmtplib.SMTP(
            hostname=host, sock=sock, use_tls=True, tls_context=relay.context,
            local_hostname=helo, timeout=timeouts.command, start_tls=False,
        )  # fmt: skip
    else:
        client = aiosmtplib.SMTP(
            hostname=ip,
            port=port,
            local_hostname=helo,
            timeout=timeouts.command,
            start_tls=False,
            validate_certs=False,
        )
    conn = Connection(client, where, sock)
    try:
        try:
            await client.connect(timeout=timeouts.connect)
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise TryNext(f"{where} greeted with {reply_text(exc.code, exc.message)}") from None
        except _BROKEN as exc:
            raise TryNext(f"connect to {where}: {exc or type(exc).__name__}") from None
        try:
            await _prepare(client, ip, host, where, timeouts, tls, relay, policy)
        except TryNext:
            raise
        except aiosmtplib.SMTPResponseException as exc:
            raise TryNext(f"{where} said {reply_text(exc.code, exc.message)}") from None
        except _BROKEN as exc:
            raise TryNext(f"{where}: {exc or type(exc).__name__}") from None
    except BaseException:
        close(conn)
        raise
    return conn


async def _prepare(client, ip, host, where, timeouts, tls, relay, policy) -> None:
    try:
        await client.ehlo(timeout=timeouts.command)
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code < 500:
            raise
        await client.helo(timeout=timeouts.command)
    if relay is not None:
        await _relay_setup(client, relay, host, where, timeouts)
    elif tls is not None and client.supports_extension("starttls"):
        try:
            await client.starttls(server_hostname=host, tls_context=tls, timeout=timeouts.command)
        except (aiosmtplib.SMTPResponseException, ssl.SSLError, *_BROKEN) as exc:
            if policy is not None and policy.required:
                raise PolicyFailed(
                    f"STARTTLS with {where} failed ({exc}); TLS is required by "
                    f"{', '.join(policy.required_by)}"
                ) from None
            raise TLSFailed(f"STARTTLS with {where} failed: {exc}") from None
        if policy is not None and policy.checks:
            ssl_object = client.get_transport_info("ssl_object")
            problem = policy.judge(peer_tls(ssl_object, host, ip))
            if problem:
                await _quit(client, timeouts)
                raise PolicyFailed(f"TLS with {where} refused: {problem}")
        await client.ehlo(timeout=timeouts.command)
    elif policy is not None and policy.required:
        raise PolicyFailed(
            f"{where} does not offer STARTTLS; TLS is required by {', '.join(policy.required_by)}"
        )
    elif policy is not None and tls is not None:
        policy.plaintext(f"{where} does not offer STARTTLS")


async def transact(
    conn: Connection,
    *,
    sender: str,
    recipients: list[str],
    message: bytes,
    timeouts: Timeouts,
    record: Callable[[dict[str, Reply]], Awaitable[None]],
) -> None:
    """One mail transaction on an open connection. Once MAIL FROM is answered, every
    recipient gets a reply (the server's, or a made-up 4xx when the connection breaks) and
    record(replies) is awaited exactly once, so that a 250 is stored before anything else
    happens. Before that point, TryNext and record is not called. Afterwards
    ``conn.usable`` says whether another transaction may follow on it."""
    client, where = conn.client, conn.where
    conn.transactions += 1
    try:
        if not message.isascii() and not client.supports_extension("8bitmime"):
            # RFC 6152 3: convert to 7 bits for a server without 8BITMIME, or bounce
            message = await asyncio.to_thread(to_seven_bit, message) or message
        options, refused = mail_parameters(client, sender, recipients, message, where)
        if len(refused) == len(recipients):
            await record(refused)
            return
        await client.mail(
            sender, options=options, encoding=_encoding(options), timeout=timeouts.command
        )
    except aiosmtplib.SMTPSenderRefused as exc:
        if exc.code < 500:
            conn.usable = False
            raise TryNext(f"{where} said {reply_text(exc.code, exc.message)}") from None
        text = reply_text(exc.code, exc.message)
        await record({r: (exc.code, text) for r in recipients})
        return
    except aiosmtplib.SMTPResponseException as exc:
        conn.usable = False
        raise TryNext(f"{where} said {reply_text(exc.code, exc.message)}") from None
    except _BROKEN as exc:
        conn.usable = False
        raise TryNext(f"{where}: {exc or type(exc).__name__}") from None
    except BaseException:
        conn.usable = False
        raise
    replies: dict[str, Reply] = dict(refused)
    accepted: list[str] = []
    try:
        for rcpt in recipients:
            if rcpt in refused:
                continue
            try:
                resp = await client.rcpt(
                    rcpt, encoding=_encoding(options), timeout=timeouts.command
                )
            except aiosmtplib.SMTPRecipientRefused as exc:
                replies[rcpt] = (exc.code, reply_text(exc.code, exc.message))
            else:
                accepted.append(rcpt)
                replies[rcpt] = (resp.code, reply_text(resp.code, resp.message))
        if accepted:
            try:
                resp = await client.data(message, timeout=timeouts.data)
                final = (resp.code, reply_text(resp.code, resp.message))
            except aiosmtplib.SMTPDataError as exc:
                final = (exc.code, reply_text(exc.code, exc.message))
            for rcpt in accepted:
                replies[rcpt] = final
        else:
            # MAIL was taken but no recipient: end the transaction before the next one
            await client.rset(timeout=timeouts.command)
    except _BROKEN as exc:
        conn.usable = False
        broken = (451, f"451 4.4.2 connection with {where} broken: {exc or type(exc).__name__}")
        for rcpt in recipients:
            if rcpt not in replies or rcpt in accepted:
                replies[rcpt] = broken
    except BaseException:
        conn.usable = False
        raise
    await record(replies)


def close(conn: Connection) -> None:
    """Drop the connection without a word (after a failure, or QUIT was said)."""
    conn.usable = False
    conn.client.close()
    if conn.sock is not None:
        conn.sock.close()


async def quit_and_close(conn: Connection, timeouts: Timeouts) -> None:
    try:
        if conn.usable and conn.client.is_connected:
            await _quit(conn.client, timeouts)
    finally:
        close(conn)


async def _tcp(ip: str, port: int, limit: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (ip, port)), limit)
    except BaseException:
        sock.close()
        raise
    return sock


async def _relay_setup(
    client: aiosmtplib.SMTP, relay: Relay, host: str, where: str, timeouts: Timeouts
) -> None:
    """STARTTLS when required (no plaintext fallback), then AUTH; TryNext/AuthFailed if not."""
    if relay.tls == "starttls":
        if not client.supports_extension("starttls"):
            raise TryNext(f"smarthost {where} does not offer STARTTLS, which is required")
        try:
            await client.starttls(
                server_hostname=host, tls_context=relay.context, timeout=timeouts.command
            )
        except (aiosmtplib.SMTPResponseException, ssl.SSLError, *_BROKEN) as exc:
            raise TryNext(f"STARTTLS with smarthost {where} failed: {exc}") from None
        await client.ehlo(timeout=timeouts.command)
    if relay.username is None:
        return
    # one mechanism, PLAIN first: a second try with the same wrong password helps nobody
    # (and some servers stall after a failure); login() tries them all
    offered = client.supported_auth_methods if client.supports_extension("auth") else []
    method = next((m for m in ("plain", "login") if m in offered), None)
    try:
        if method is None:
            await client.login(relay.username, relay.password or "", timeout=timeouts.command)
        else:
            await getattr(client, f"auth_{method}")(
                relay.username, relay.password or "", timeout=timeouts.command
            )
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise AuthFailed(
            f"AUTH as {relay.username} at smarthost {where} refused: "
            f"{reply_text(exc.code, exc.message)}"
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise TryNext(
            f"AUTH at smarthost {where} failed: {reply_text(exc.code, exc.message)}"
        ) from None
    except aiosmtplib.SMTPException as exc:
        raise TryNext(f"AUTH at smarthost {where} impossible: {exc}") from None


async def _quit(client: aiosmtplib.SMTP, timeouts: Timeouts) -> None:
    try:
        await client.quit(timeout=min(timeouts.command, 10.0))
    except _BROKEN:
        pass


def _encoding(options: list[str]) -> str:
    return "utf-8" if "SMTPUTF8" in options else "ascii"


def mail_parameters(
    client: aiosmtplib.SMTP, sender: str, recipients: list[str], message: bytes, where: str
) -> tuple[list[str], dict[str, Reply]]:
    """The MAIL FROM parameters this message needs from this server, and the recipients it
    cannot be sent to there (with our own 5xx): an 8-bit message needs 8BITMIME (RFC 6152;
    :func:`transact` first converts what it can with :func:`.downgrade.to_seven_bit`, so what is
    still 8-bit here has 8-bit headers or a structure that cannot be converted safely, and
    bounces with 5.6.3), non-ASCII addresses need
    SMTPUTF8 (RFC 6531 has no downgrade for addresses: 5.6.7 for those recipients, or for all
    of them when the sender's address is the non-ASCII one)."""
    options: list[str] = []
    if not message.isascii():
        if not client.supports_extension("8bitmime"):
            text = (
                f"554 5.6.3 Conversion required but not supported: {where} does not "
                "support 8BITMIME and the message has 8-bit content"
            )
            return options, {r: (554, text) for r in recipients}
        options.append("BODY=8BITMIME")
    wide = recipients if not sender.isascii() else [r for r in recipients if not r.isascii()]
    if wide:
        if not client.supports_extension("smtputf8"):
            text = (
                f"553 5.6.7 The receiving server {where} does not support SMTPUTF8, "
                "needed for a non-ASCII address"
            )
            return options, {r: (553, text) for r in wide}
        options.append("SMTPUTF8")
    return options, {}
