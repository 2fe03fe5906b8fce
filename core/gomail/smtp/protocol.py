"""Our subclass of aiosmtpd's SMTP protocol: the parts aiosmtpd's handler API cannot reach.

- a ``connect`` stage before the greeting;
- enhanced status codes on every reply (ENHANCEDSTATUSCODES is advertised);
- PIPELINING, ENHANCEDSTATUSCODES and CHUNKING in EHLO, and BDAT;
- AUTH PLAIN/LOGIN checked asynchronously (argon2 off the event loop), with the ``auth`` stage;
- AUTH hidden and refused on listeners that do not offer it, and allowed on implicit TLS
  (aiosmtpd only knows about STARTTLS, upstream #281);
- per-connection state (:class:`gomail.context.Session`) kept across STARTTLS.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import re
import ssl
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, AuthResult, _AuthMechAttr, login_always_fail, syntax

from gomail.smtp.replies import printable, with_enhanced

if TYPE_CHECKING:
    from gomail.smtp.handler import Handler

log = logging.getLogger("gomail.smtp")

BDAT_MAX_CHUNK = 64 * 1024 * 1024
# The common path "<local@domain> PARAMS" with a plain dot-atom local part; anything else
# (quotes, routes, comments) goes through aiosmtpd's full RFC 5322 parser.
_SIMPLE_PATH = re.compile(r"\s*<([^\s<>\"@(),:;\\\[\]]+@[^\s<>\"@(),:;\\]+)>(.*)\Z", re.S)


@functools.lru_cache(maxsize=8)
def _line_limit_pattern(limit: int) -> re.Pattern[bytes]:
    # A line's length counts its CRLF, as aiosmtpd's line_length_limit does.
    return re.compile(rb"[^\n]{%d}" % limit)


class GomailSMTP(SMTP):
    """One SMTP connection."""

    handler: Handler

    def __init__(self, handler: Handler, *, line_length_limit: int, **kwargs: Any) -> None:
        # aiosmtpd sizes its StreamReader from this attribute inside __init__.
        self.line_length_limit = line_length_limit
        self.ctx = None  # gomail.context.Session, made at connection
        self.txn = None  # gomail.context.Transaction while one is open
        self.implicit_tls = handler.listener.tls == "implicit"
        self._in_ehlo = False
        self._bdat: bytearray | None = None
        self._bdat_failed: str | None = None
        self.busy = False
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
        self.command_size_limits.clear()
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
        self._smtp_methods = {name: getattr(self, attr) for name, attr in _SMTP_COMMANDS}
        self._enforce_call_limit = False

    # --- connection --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.handler.connection_opened(self, transport)
        else:  # after STARTTLS: RFC 3207 says forget what the client said before
            self.handler.tls_started(self)

    def connection_lost(self, error: Exception | None) -> None:
        if self.session is not None and self.transport is not None:
            self.handler.connection_closed(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        verdict = await self.handler.on_connect(self)
        if verdict is not None:
            await self.push(verdict)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    @property
    def in_transaction(self) -> bool:
        return self.busy or self.txn is not None

    @property
    def tls_active(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()
        self._bdat = None
        self._bdat_failed = None
        if getattr(self, "handler", None) is not None:
            self.handler.transaction_ended(self)

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            lines = [printable(line) for line in status.split("\r\n")]
            if not self._in_ehlo or not status.startswith("250"):  # EHLO's 250 has none
                lines = [with_enhanced(line) for line in lines]
            status = "\r\n".join(lines)
        try:
            await super().push(status)
        except AttributeError:
            # aiosmtpd closes the transport again for every pipelined command past its
            # bogus-command limit; asyncio's SSL transport, closed twice, fails writes
            # with AttributeError where after one close it drops them. Drop them too.
            if self.transport is None or self.transport.is_closing():
                return
            raise

    async def handle_exception(self, error: Exception) -> str:
        log.exception("session %s: unexpected error", self.ctx.id if self.ctx else "?")
        return "451 4.3.0 Local error in processing"

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
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

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
        try:
            await self._finish_message(await self._read_data())
        finally:
            self.busy = False

    async def _finish_message(self, content: bytes | str) -> None:
        """Hand a complete message (DATA or the last BDAT) to the handler and reply; a
        string is the refusal decided while reading it."""
        if isinstance(content, str):
            self._set_post_data_state()
            await self.push(content)
            return
        self.envelope.original_content = content
        self.envelope.content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def _read_data(self) -> bytes | str:
        """Read DATA up to CRLF.CRLF and undo dot-stuffing; a reply string when refused.

        aiosmtpd reads DATA one line at a time in Python (about 14 MiB/s here). We let the
        StreamReader look for ".\r\n" in C and check only the two bytes before each hit,
        which ends the message only after a real CRLF (a bare LF never ends it: no SMTP
        smuggling). A message over the size limit is read to its end and dropped.
        """
        reader = self._reader
        size_limit = self.data_size_limit or (1 << 31)
        saved_limit = reader._limit
        reader._limit = size_limit + 65536
        data = bytearray()
        too_big = False
        before = b"\r\n"  # as if a CRLF came first: a lone "." line is an empty message
        try:
            while True:
                try:
                    piece = await reader.readuntil(b".\r\n")
                except asyncio.LimitOverrunError as exc:
                    piece = await reader.read(exc.consumed)
                    too_big, data = True, bytearray()
                    before = (before + piece)[-2:]
                    continue
                ends = (before + piece[:-3])[-2:] == b"\r\n"
                if not too_big:
                    data += piece
                    if len(data) > size_limit:
                        too_big, data = True, bytearray()
                if ends:
                    break
                before = b"\r\n"
        finally:
            reader._limit = saved_limit
        if too_big:
            return "552 5.3.4 Error: message size exceeds fixed maximum message size"
        del data[-3:]  # the terminating ".\r\n"; the CRLF before it ends the last line
        if self._line_too_long.search(data):
            return "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)"
        if data[:1] == b".":
            del data[:1]
        return bytes(data).replace(b"\r\n.", b"\r\n")

    @syntax("BDAT <size> [LAST]")
    async def smtp_BDAT(self, arg: str | None) -> None:
        """RFC 3030 CHUNKING: the chunk is read in one piece, no dot-stuffing or line limits."""
        parts = (arg or "").split()
        if not parts or len(parts) > 2 or not parts[0].isdigit():
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        last = len(parts) == 2
        if last and parts[1].upper() != "LAST":
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        size = int(parts[0])
        if size > BDAT_MAX_CHUNK:
            # We cannot skip the chunk safely without reading it: close rather than desync.
            await self.push("552 5.3.4 Chunk too large")
            self.transport.close()
            return
        self.busy = True
        try:
            chunk = await self._reader.readexactly(size) if size else b""
        except asyncio.IncompleteReadError:
            self.busy = False
            return  # the client went away mid-chunk; nothing was stored
        try:
            await self._bdat_chunk(chunk, last)
        finally:
            self.busy = False

    async def _bdat_chunk(self, chunk: bytes, last: bool) -> None:
        if self._bdat_failed is None:
            if not self.session.host_name:
                self._bdat_failed = "503 5.5.1 Error: send HELO first"
            elif self._auth_required and not self.session.authenticated:
                self._bdat_failed = "530 5.7.0 Authentication required"
            elif not self.envelope.rcpt_tos:
                self._bdat_failed = "503 5.5.1 Error: need RCPT command"
        if self._bdat is None:
            self._bdat = bytearray()
        if self._bdat_failed is None:
            self._bdat += chunk
            if self.data_size_limit and len(self._bdat) > self.data_size_limit:
                self._bdat_failed = "552 5.3.4 Message size exceeds fixed maximum message size"
                self._bdat = bytearray()
        if not last:
            if self._bdat_failed:
                await self.push(self._bdat_failed)
            else:
                await self.push(f"250 2.0.0 {len(chunk)} octets received")
            return
        await self._finish_message(self._bdat_failed or bytes(self._bdat))


# (command, method name) of every smtp_* method, ours and aiosmtpd's.
_SMTP_COMMANDS = tuple(
    (attr.removeprefix("smtp_"), attr) for attr in dir(GomailSMTP) if attr.startswith("smtp_")
)
