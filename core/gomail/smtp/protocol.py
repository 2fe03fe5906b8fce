"""Our subclass of aiosmtpd's SMTP protocol: the parts aiosmtpd's handler API cannot reach.

- a ``connect`` stage before the greeting;
- enhanced status codes on every reply (ENHANCEDSTATUSCODES is advertised);
- PIPELINING, ENHANCEDSTATUSCODES and CHUNKING in EHLO, and BDAT;
- AUTH PLAIN/LOGIN checked asynchronously (argon2 off the event loop), with the ``auth`` stage;
- AUTH hidden and refused on listeners that do not offer it, and allowed on implicit TLS
  (aiosmtpd only knows about STARTTLS, upstream #281);
- per-connection state (:class:`gomail.context.Session`) kept across STARTTLS;
- what one client may cost: the connection limits at connect, Postfix's soft and hard error
  limits and junk-command limit on every reply, commands with control characters refused,
  STARTTLS only once, and AUTH responses read within the line limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import logging
import re
import ssl
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, _AuthMechAttr, login_always_fail, syntax

from gomail.printable import COMMAND_CONTROL, printable
from gomail.smtp.replies import with_enhanced
from gomail.spool import Spool, spool_directory

if TYPE_CHECKING:
    from gomail.smtp.handler import Handler

log = logging.getLogger("gomail.smtp")

# A BDAT chunk that cannot be taken is read and dropped up to max(SIZE, this); a larger one is
# refused with 552 and the connection closed.
BDAT_MAX_DISCARD = 64 * 1024 * 1024
# What a message body is read (and, when refused, dropped) in: the most the StreamReader holds.
DATA_PIECE = 64 * 1024
UNLIMITED_SIZE = 1 << 31  # the size limit when none is set (max_message_size 0)
TOO_BIG = "552 5.3.4 Error: message size exceeds fixed maximum message size"
# The common path "<local@domain> PARAMS" with a plain dot-atom local part; anything else
# (quotes, routes, comments) goes through aiosmtpd's full RFC 5322 parser.
_SIMPLE_PATH = re.compile(r"\s*<([^\s<>\"@(),:;\\\[\]]+@[^\s<>\"@(),:;\\]+)>(.*)\Z", re.S)
# Postfix's junk commands: past limits.smtp_junk_command_limit each one counts as an error.
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "EXPN", "HELP"})
# The error delay grows by limits.smtp_error_delay per error past the soft limit, this far.
MAX_DELAY_STEPS = 10
TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing connection"


@functools.lru_cache(maxsize=8)
def _line_limit_pattern(limit: int) -> re.Pattern[bytes]:
    # A line's length counts its CRLF, as aiosmtpd's line_length_limit does. The leading LF
    # makes the search linear: only line starts are tried, not every octet.
    return re.compile(rb"\n[^\n]{%d}" % limit)


class GomailSMTP(SMTP):
    """One SMTP connection."""

    handler: Handler
    received: Spool | None = None  # a complete message, while the handler has it

    def __init__(self, handler: Handler, *, line_length_limit: int, **kwargs: Any) -> None:
        # aiosmtpd sizes its StreamReader from this attribute inside __init__.
        self.line_length_limit = line_length_limit
        self.ctx = None  # gomail.context.Session, made at connection
        self.txn = None  # gomail.context.Transaction while one is open
        self.implicit_tls = handler.listener.tls == "implicit"
        self._in_ehlo = False
        self._bdat: Spool | None = None  # the message of a BDAT transaction under way
        self._bdat_failed: str | None = None
        self.busy = False
        self.errors = 0  # 4xx/5xx replies (and junk commands) since the last message taken
        self._junk = 0
        self._last_reply = ""
        self._hang_up = False  # close the connection once the current reply is sent
        self._admitted: str | None = None  # the address counted by the listener's limiter
        self._line_too_long = _line_limit_pattern(line_length_limit)
        self._init_aiosmtpd(handler, **kwargs)
        self.handler = handler

    def _init_aiosmtpd(
        self,
        handler: Handler,
        *,
        data_size_limit: int | None,
        enable_SMTPUTF8: bool,
        hostname: str,
        ident: str,
        tls_context: ssl.SSLContext | None,
        require_starttls: bool,
        auth_require_tls: bool,
        timeout: float,
    ) -> None:
        """What ``SMTP.__init__`` (aiosmtpd 1.4.x) sets up, without its introspection.

        aiosmtpd walks ``inspect.getmembers`` of protocol and handler and inspects the EHLO
        hook's signature for every connection: 130 µs, a tenth of a connection's cost at our
        accept rate. The hook tables depend only on the class and the handler, so they are
        built once. tests/core/test_smtp_init.py checks this stays in step with aiosmtpd.
        """
        loop = asyncio.get_event_loop()
        self.__ident__ = ident
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = False
        # An instance copy: aiosmtpd adds to the class-wide table on every EHLO, which any
        # client could then grow for all connections by repeating EHLO.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._auth_required = False
        self._auth_methods = {
            "LOGIN": _AuthMechAttr(self.auth_LOGIN, True),
            "PLAIN": _AuthMechAttr(self.auth_PLAIN, True),
        }
        self._handle_hooks = handler.hooks
        self._ehlo_hook_ver = "new"
        self._smtp_methods = {
            name: self._guarded(name, getattr(self, attr)) for name, attr in _SMTP_COMMANDS
        }
        self._enforce_call_limit = False

    # --- connection --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        if first:
            # Counted in before anything else is done for it (no greeting, no connect stage).
            refusal = self.handler.admit(self, transport)
            if refusal is not None:
                transport.write(refusal.encode() + b"\r\n")
                transport.close()
                return
        super().connection_made(transport)
        if first:
            self.handler.connection_opened(self, transport)
        else:  # after STARTTLS: RFC 3207 says forget what the client said before
            self.handler.tls_started(self)

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted is not None:
            self.handler.release(self._admitted)
            self._admitted = None
        if self.session is None:
            return  # refused at connect: aiosmtpd never saw this connection
        if self.transport is not None:
            self.handler.connection_closed(self)
        if self._bdat is not None:
            self._bdat.close()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        verdict = await self.handler.on_connect(self)
        if verdict is not None:
            await self.push(verdict)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd's timer, armed at connect and at each command: shorter while the listener
        is under stress, so that idle and slow-drip clients give their slots back."""
        if duration is None and self.handler.stressed:
            duration = self.handler.limits.smtp_stress_timeout
        super()._reset_timeout(duration)

    @property
    def in_transaction(self) -> bool:
        return self.busy or self.txn is not None

    @property
    def tls_active(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()
        if getattr(self, "_bdat", None) is not None:
            self._bdat.close()
        self._bdat = None
        self._bdat_failed = None
        if getattr(self, "handler", None) is not None:
            self.handler.transaction_ended(self)

    def close_after_reply(self) -> None:
        """Hang up as soon as the reply being made has been sent."""
        self._hang_up = True

    async def push(self, status: Any) -> None:
        """Send one reply (or one line of EHLO's): client text in it made printable, an
        enhanced status code added, the error limits applied."""
        if self._param_error is not None:
            # aiosmtpd answers the None from _getparams with its syntax error: say why.
            if isinstance(status, str) and status.startswith("501 Syntax: "):
                status = self._param_error
            self._param_error = None
        if isinstance(status, str):
            lines = [printable(line) for line in status.split("\r\n")]
            if not self._in_ehlo or not status.startswith("250"):  # EHLO's 250 has none
                lines = [with_enhanced(line) for line in lines]
            status = "\r\n".join(lines)
            last = lines[-1]
        else:
            last = status.rpartition(b"\r\n")[2].decode("ascii", "replace")
        if last[3:4] == "-":  # an EHLO line before the last: the reply is not complete
            await self._send(status)
            return
        self._last_reply = last
        limits = self.handler.limits
        if last[:1] in ("4", "5") and not last.startswith("421"):
            self.errors += 1
        excess = self.errors - limits.smtp_soft_error_limit
        if excess > 0:
            # Postfix's "sleep on anything": every reply to a client past the soft limit waits.
            await asyncio.sleep(min(excess, MAX_DELAY_STEPS) * limits.smtp_error_delay)
        await self._send(status)
        if self.errors >= limits.smtp_hard_error_limit and not self._hang_up:
            log.info(
                "too many errors",
                extra={"fields": {"session": self.ctx.id if self.ctx else None,
                                  "peer": self.ctx.peer_ip if self.ctx else None,
                                  "errors": self.errors}},
            )  # fmt: skip
            self._hang_up = True
            await self._send(TOO_MANY_ERRORS)
        if self._hang_up and self.transport is not None:
            self.transport.close()

    async def _send(self, status: Any) -> None:
        try:
            await super().push(status)
        except AttributeError:
            # aiosmtpd closes the transport again for every pipelined command past its
            # bogus-command limit; asyncio's SSL transport, closed twice, fails writes
            # with AttributeError where after one close it drops them. Drop them too.
            if self.transport is None or self.transport.is_closing():
                return
            raise

    def _guarded(self, name: str, method: Any) -> Any:
        """``method`` (an ``smtp_*`` command) as the command loop calls it: through
        :meth:`_run_command`, with the attributes aiosmtpd's HELP reads."""

        async def run(arg: str | None) -> None:
            await self._run_command(name, method, arg)

        run.__dict__.update(method.__func__.__dict__)  # __smtp_syntax__ for HELP
        run.__wrapped__ = method  # type: ignore[attr-defined]
        return run

    async def _run_command(self, name: str, method: Any, arg: str | None) -> None:
        if arg and COMMAND_CONTROL.search(arg):
            # RFC 5321 allows no control character in a command; a bare CR or NUL in HELO or
            # an address is an attempt to inject into a header or a log: refuse, not repair.
            await self.push("501 5.5.2 Control characters are not allowed in commands")
            return
        if name in JUNK_COMMANDS:
            self._junk += 1
            if self._junk > self.handler.limits.smtp_junk_command_limit:
                self.errors += 1
        if name in ("DATA", "BDAT"):
            # The timer is not re-armed while message content is read: give it all the time.
            self._reset_timeout(self._timeout_duration)
        await method(arg)
        message_end = name == "DATA" or (name == "BDAT" and (arg or "").upper().endswith("LAST"))
        if message_end and self._last_reply.startswith("250"):
            self.errors = self._junk = 0  # Postfix: the counts restart once mail is taken

    async def handle_exception(self, error: Exception) -> str:
        log.exception("session %s: unexpected error", self.ctx.id if self.ctx else "?")
        return "451 4.3.0 Local error in processing"

    _param_error: str | None = None  # the reply for the parameters _getparams refused

    def _getparams(self, params: Any) -> dict[str, str | bool] | None:
        """MAIL and RCPT parameters (upper-cased by aiosmtpd); None, and 501 5.5.4, when one
        is given twice (``BODY=8BITMIME BODY=7BIT``): each may appear once (RFC 5321), and
        taking the last one would let a client say two things about one message."""
        seen: set[str] = set()
        for param in params:
            name = param.partition("=")[0]
            if name in seen:
                self._param_error = f"501 5.5.4 Error: the {name} parameter given twice"
                return None
            seen.add(name)
        return super()._getparams(params)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd builds a typing.Protocol class on every call and runs the email package's
        # header parser: a tenth of the accept path's time for MAIL and RCPT.
        m = _SIMPLE_PATH.match(arg)
        if m is not None:
            return m.group(1), m.group(2)
        if arg.lstrip().startswith("<") and ">" not in arg:
            return None, None  # the email parser forgives a missing ">"; SMTP does not
        try:
            return super()._getaddr(arg)
        except (IndexError, AttributeError, ValueError):
            # the email package's parser fails this way on some input ("alice@", "a@[")
            return None, None

    # --- EHLO and AUTH -----------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits.clear()  # aiosmtpd adds to MAIL's limit on every EHLO
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.tls_active:
            # RFC 3207 4.2: no second handshake inside TLS (nor on implicit TLS).
            await self.push("503 5.5.1 TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    def offers_auth(self) -> bool:
        return self.handler.listener.auth != "none" and (
            self.tls_active or self.handler.listener.starttls == "none"
        )

    async def smtp_AUTH(self, arg: str) -> None:
        if self.handler.listener.auth == "none":
            await self.push("503 5.5.1 AUTH not available on this port")
            return
        if not self.offers_auth():
            await self.push("530 5.7.0 Must issue a STARTTLS command first")
            return
        await super().smtp_AUTH(arg)

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response: bool = False
    ) -> Any:
        """aiosmtpd's, but a response longer than the line limit is refused (500 5.5.6)
        rather than raising inside ``readline`` (a traceback per attempt in the log)."""
        if isinstance(challenge, str):
            challenge = challenge.encode()
        if encode_to_b64:
            challenge = base64.b64encode(challenge)
        await self.push(b"334 " + challenge)
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return MISSING  # the client went away
        except asyncio.LimitOverrunError as exc:
            await self._skip_line(exc.consumed)
            await self.push("500 5.5.6 Authentication exchange line is too long")
            return MISSING
        blob = line.strip()
        if blob == b"*":
            await self.push("501 5.7.0 Auth aborted")
            return MISSING
        try:
            return base64.b64decode(blob, validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Can't decode base64")
            return MISSING

    async def _skip_line(self, consumed: int) -> None:
        """Drop the rest of an over-long line, ``consumed`` bytes of which are buffered."""
        await self._reader.read(consumed)
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.read(exc.consumed)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            if args[1] == "=":
                blob = b""
            else:
                try:
                    blob = base64.b64decode(args[1], validate=True)
                except (binascii.Error, ValueError):
                    await self.push("501 5.5.2 Cannot decode base64")
                    return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot split AUTH PLAIN response")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            await self.push("535 5.7.8 Authorization identity differs from login")
            return AuthResult(success=False, handled=True)
        return await self.handler.authenticate(self, "PLAIN", login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if not isinstance(login, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self.handler.authenticate(self, "LOGIN", login, password)

    # --- DATA and BDAT -----------------------------------------------------------------
    #
    # A message is received into a Spool (memory, then a file past limits.spool_threshold);
    # what cannot be taken (over SIZE, a line too long, a BDAT chunk outside a transaction) is
    # read and dropped as it streams, in pieces of DATA_PIECE bytes, never held.

    def _new_spool(self) -> Spool:
        config = self.handler.app.config
        return Spool(spool_directory(config.data_dir), config.limits.spool_threshold)

    @property
    def _size_limit(self) -> int:
        return self.data_size_limit or UNLIMITED_SIZE

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if self._bdat is not None:
            await self.push("503 5.5.1 DATA not allowed after BDAT")
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.busy = True
        spool = self._new_spool()
        try:
            refusal = await self._read_data(spool)
            await self._finish_message(refusal or spool)
        finally:
            spool.close()
            self.busy = False

    async def _finish_message(self, content: Spool | str) -> None:
        """Hand a complete message (DATA or the last BDAT) to the handler and reply; a
        string is the refusal decided while reading it. The handler finds the message in
        ``self.received`` (and loads it when it is ready to); it is closed here after."""
        if isinstance(content, str):
            self._set_post_data_state()
            await self.push(content)
            return
        self.received = content
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            self.received = None
            content.close()
            self._set_post_data_state()  # even when the handler failed: a fresh transaction
        await self.push(status)

    async def _read_data(self, spool: Spool) -> str | None:
        """Read DATA up to CRLF.CRLF into spool, undoing dot-stuffing; a reply string when
        the message is refused (it is then read to its end and dropped).

        aiosmtpd reads DATA one line at a time in Python (about 14 MiB/s here) and holds all
        of it. We let the StreamReader look for ".\r\n" in C, in pieces of at most
        DATA_PIECE bytes, and check only the two bytes before each hit, which ends the
        message only after a real CRLF (a bare LF never ends it: no SMTP smuggling).
        """
        reader = self._reader
        size_limit = self._size_limit
        line_limit = self.line_length_limit
        saved_limit = reader._limit
        reader._limit = DATA_PIECE
        refusal = None
        before = b"\r\n"  # as if a CRLF came first: a lone "." line is an empty message
        line = 0  # length of the line in progress (its bytes so far, without LF)
        received = 0  # octets of the message as sent (dot-stuffed)
        try:
            while True:
                try:
                    piece = await reader.readuntil(b".\r\n")
                    ends = (before + piece[:-3])[-2:] == b"\r\n"
                except asyncio.LimitOverrunError as exc:
                    piece = await reader.read(exc.consumed)
                    ends = False
                content = piece[:-3] if ends else piece
                received += len(content)
                if received > size_limit and refusal is not TOO_BIG:
                    refusal = TOO_BIG  # what a client must hear first, whatever else is wrong
                    spool.close()
                elif refusal is None:
                    line = _line_after(line, content, line_limit, self._line_too_long)
                    if line < 0:
                        refusal = "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)"
                        spool.close()
                    else:
                        refusal = _spool_write(spool, _unstuff(before, content))
                if ends:
                    return refusal
                before = (before + piece)[-2:]
        finally:
            reader._limit = saved_limit

    @syntax("BDAT <size> [LAST]")
    async def smtp_BDAT(self, arg: str | None) -> None:
        """RFC 3030 CHUNKING: no dot-stuffing or line limits. A chunk is streamed into the
        message's spool, or, when it cannot be taken, read and dropped: the reply then says
        why, and the connection stays in step. A chunk that cannot be taken and is larger
        than max(SIZE, BDAT_MAX_DISCARD) is not read at all: 552, and the connection is
        closed (reading it would only be bandwidth, but it could be endless)."""
        parts = (arg or "").split()
        if not parts or len(parts) > 2 or not (parts[0].isascii() and parts[0].isdigit()):
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        last = len(parts) == 2
        if last and parts[1].upper() != "LAST":
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        size = int(parts[0])
        refusal = self._bdat_refusal(size)
        if refusal is not None and size > max(self._size_limit, BDAT_MAX_DISCARD):
            await self.push("552 5.3.4 Chunk too large, closing connection")
            self.transport.close()
            return
        if self._bdat is None:
            self._bdat = self._new_spool()
            if refusal is not None:
                self._bdat.close()
        self.busy = True
        try:
            failure = await self._read_chunk(size, None if refusal else self._bdat)
        except asyncio.IncompleteReadError:
            return  # the client went away mid-chunk; nothing is stored
        finally:
            self.busy = False
        if failure is not None:
            self._bdat_failed = failure
            self._bdat.close()
        if not last:
            await self.push(self._bdat_failed or f"250 2.0.0 {size} octets received")
            return
        self.busy = True
        try:
            await self._finish_message(self._bdat_failed or self._bdat)
        finally:
            self.busy = False

    def _bdat_refusal(self, size: int) -> str | None:
        """Why a chunk of this size cannot be taken (and the transaction has failed)."""
        if self._bdat_failed is None:
            received = self._bdat.size if self._bdat is not None else 0
            if not self.session.host_name:
                self._bdat_failed = "503 5.5.1 Error: send HELO first"
            elif self._auth_required and not self.session.authenticated:
                self._bdat_failed = "530 5.7.0 Authentication required"
            elif not self.envelope.rcpt_tos:
                self._bdat_failed = "503 5.5.1 Error: need RCPT command"
            elif received + size > self._size_limit:
                self._bdat_failed = "552 5.3.4 Message size exceeds fixed maximum message size"
            if self._bdat_failed is not None and self._bdat is not None:
                self._bdat.close()
        return self._bdat_failed

    async def _read_chunk(self, size: int, spool: Spool | None) -> str | None:
        """Read size octets into spool, or drop them (spool None); a refusal when the spool
        could not take them (they are then dropped too)."""
        reader = self._reader
        saved_limit = reader._limit
        reader._limit = DATA_PIECE
        refusal = None
        left = size
        try:
            while left:
                piece = await reader.read(min(left, DATA_PIECE))
                if not piece:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(piece)
                if spool is not None and refusal is None:
                    refusal = _spool_write(spool, piece)
        finally:
            reader._limit = saved_limit
        return refusal


def _spool_write(spool: Spool, data: bytes) -> str | None:
    """Write to the spool; the reply when the disk cannot take it."""
    try:
        spool.write(data)
    except OSError as exc:
        log.error("cannot spool a message being received: %s", exc)
        spool.close()
        return "452 4.3.1 Insufficient system storage"
    return None


def _unstuff(before: bytes, content: bytes) -> bytes:
    """content with the dot that starts a line removed (RFC 5321 4.5.2); before is the two
    octets received just before content (a line starts after CRLF)."""
    if b"\r\n." not in before + content[:2] and b"\r\n." not in content:
        return content
    return (before + content).replace(b"\r\n.", b"\r\n")[len(before) :]


def _line_after(line: int, data: bytes, limit: int, too_long: re.Pattern[bytes]) -> int:
    """The length of the line in progress after data, given its length before; -1 when a
    line reached the limit (which counts the line's CRLF, as aiosmtpd's does)."""
    first = data.find(b"\n")
    if first < 0:
        line += len(data)
        return line if line < limit else -1
    if line + first >= limit or too_long.search(data, first):
        return -1
    return len(data) - data.rfind(b"\n") - 1


# (command, method name) of every smtp_* method, ours and aiosmtpd's.
_SMTP_COMMANDS = tuple(
    (attr.removeprefix("smtp_"), attr) for attr in dir(GomailSMTP) if attr.startswith("smtp_")
)
