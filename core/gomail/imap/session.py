"""One IMAP connection: the command loop, states, login, folders and SELECT.

``ImapListener`` creates ``ImapSession(app, listener, reader, writer)`` per connection and
awaits :meth:`ImapSession.run`. Commands are read with :class:`gomail.imap.parser.CommandBuffer`
and run one at a time; every response is tagged with the command's tag (``* BAD`` only when
the tag itself could not be read), and a BAD leaves the connection usable.

The selected folder's view lives in :mod:`gomail.imap.selected`; FETCH, STORE, COPY, MOVE and
APPEND in :mod:`gomail.imap.fetch`; SEARCH in :mod:`gomail.imap.search`; SORT and THREAD in
:mod:`gomail.imap.threading`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl

from gomail import __version__, logins
from gomail.clients import client_key
from gomail.imap import parser as p
from gomail.imap import wire
from gomail.imap.compress import start_deflate
from gomail.imap.listing import list_mailboxes
from gomail.imap.selected import SelectedFolder
from gomail.spool import Spool, spool_directory
from gomail.store import (
    HIERARCHY_DELIMITER,
    Folder,
    FolderCountLimit,
    FolderExists,
    FolderLimit,
    NoSuchFolder,
    StoreError,
)

log = logging.getLogger("gomail.imap")

LOGIN_TIMEOUT = 60.0  # seconds from connect to a successful login
IDLE_TIMEOUT = 30 * 60.0  # autologout of an authenticated client that sends nothing
APPENDLIMIT = 50 * 1024 * 1024
MAX_DISCARD = 2 * APPENDLIMIT  # bytes of a refused non-synchronizing literal we skip
WRITE_HIGH_WATER = 256 * 1024
READ_PIECE = 64 * 1024  # bytes read at a time into a spooled literal
# All the literals of one command together: MULTIAPPEND is held in memory until it is parsed,
# so many messages each under APPENDLIMIT must not add up to gigabytes.
MAX_COMMAND_LITERALS = APPENDLIMIT
# A line over the limit is answered BAD and skipped; one this long ends the connection (with
# COMPRESS a few KB of input inflate to that, so skipping it would be work for nothing).
MAX_SKIP = 1024 * 1024

LIMITS = p.Limits(max_append=APPENDLIMIT)
# Before login a client has not shown who it is: LOGIN and AUTHENTICATE need a few short
# strings, so lines, literals and whole commands are small (Dovecot's imap-login alike).
# A larger synchronizing literal gets BAD and no "+"; a larger non-synchronizing one is
# answered BAD and BYE, the connection closed.
PREAUTH_LITERAL = 8 * 1024  # a line, a literal and a whole command
PREAUTH_LIMITS = p.Limits(
    max_line=PREAUTH_LITERAL,
    max_literal=PREAUTH_LITERAL,
    max_append=PREAUTH_LITERAL,
    max_command=PREAUTH_LITERAL,
)

# Capabilities, advertised only for what works.
_BASE_CAPS = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")
_AUTH_CAPS = (
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "SORT",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "SEARCHRES",
    "WITHIN",
    f"APPENDLIMIT={APPENDLIMIT}",
    "MULTIAPPEND",
    "BINARY",
    "UTF8=ACCEPT",
    "STATUS=SIZE",
    "COMPRESS=DEFLATE",
)
ENABLEABLE = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"}

ANY_STATE = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
NOT_AUTH = frozenset({"STARTTLS", "LOGIN", "AUTHENTICATE"})
AUTH = frozenset(
    {
        "ENABLE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE",
        "UNSUBSCRIBE", "LIST", "LSUB", "STATUS", "APPEND", "NAMESPACE", "IDLE", "GETQUOTA",
        "GETQUOTAROOT", "SETQUOTA",
    }
)  # fmt: skip
SELECTED = frozenset(
    {
        "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE",
        "SORT", "THREAD",
    }
)  # fmt: skip
# RFC 3501 7.4.1: no EXPUNGE while answering these (their UID forms may).
NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})


class Closed(Exception):
    """The connection is over (EOF, LOGOUT, timeout, too many failures)."""


class Respond(Exception):
    """End a command early with ``status [code] text``."""

    def __init__(self, status: str, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code

    def line(self) -> str:
        return f"{self.status} {'[' + self.code + '] ' if self.code else ''}{self.text}"


def No(text: str, code: str | None = None) -> Respond:  # noqa: N802
    return Respond("NO", text, code)


def Bad(text: str, code: str | None = None) -> Respond:  # noqa: N802
    return Respond("BAD", text, code)


class _LongLine(bytes):
    """A line that was cut off at the limit (the rest was skipped)."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


class ImapSession:
    def __init__(self, app, listener, reader: asyncio.StreamReader, writer) -> None:
        self.app = app
        self.listener = listener
        self.reader = reader
        self.writer = writer
        self.compressing: asyncio.Task | None = None  # the inflating task after COMPRESS
        peer = writer.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else ""
        self.tls = bool(getattr(listener, "implicit_tls", False))
        self.user: str | None = None
        self.session_key: str | None = None  # counted in app.imap_sessions while logged in
        self.selected: SelectedFolder | None = None
        self.failures = 0
        self.enabled: set[str] = set()
        self.saved: set[int] = set()  # SEARCHRES: the saved result, as UIDs
        self.loop = asyncio.get_running_loop()
        self.login_deadline = self.loop.time() + LOGIN_TIMEOUT
        self.logging_out = False
        # app.large_messages, while a command with spooled literals is read and run
        self.large: asyncio.Semaphore | None = None
        self.stalled = False  # the client stopped reading what we write

    # --- session flags --------------------------------------------------------------------

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled or self.rev2

    @property
    def login_disabled(self) -> bool:
        return not self.tls and not _is_loopback(self.peer)

    def capabilities(self) -> str:
        caps = list(_BASE_CAPS)
        if self.user is None:
            if not self.tls and not getattr(self.listener, "implicit_tls", False):
                caps.append("STARTTLS")
            caps.append("LOGINDISABLED" if self.login_disabled else "AUTH=PLAIN")
        else:
            caps.extend(_AUTH_CAPS)
        return " ".join(caps)

    # --- output -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def untagged(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.writer.write(b"* " + data + b"\r\n")

    async def maybe_drain(self) -> None:
        transport = self.writer.transport
        if transport is not None and transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            await self.drain()

    async def drain(self) -> None:
        """Wait until the client has read enough of what was written; a client that reads
        nothing for as long as a read may wait (login or autologout time) is dropped, so
        that it holds neither memory nor its connection slot for ever."""
        try:
            async with asyncio.timeout(max(self._timeout(), 1.0)):
                await self.writer.drain()
        except TimeoutError:
            self.stalled = True
            raise Closed from None

    def mailbox(self, name: str) -> bytes:
        return wire.mailbox(name, utf8=self.utf8)

    # --- input ------------------------------------------------------------------------------

    def _timeout(self) -> float:
        if self.user is None:
            return max(0.0, self.login_deadline - self.loop.time())
        return IDLE_TIMEOUT

    async def _read(self, coro):
        try:
            async with asyncio.timeout(self._timeout()):
                return await coro
        except TimeoutError:
            self.untagged(b"BYE Autologout; idle for too long")
            raise Closed from None
        except asyncio.IncompleteReadError:
            raise Closed from None

    async def readline(self) -> bytes:
        return await self._read(self._readline())

    async def _readline(self) -> bytes:
        reader = self.reader
        try:
            return await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as e:
            head = await reader.readexactly(e.consumed)
        # Over the limit: keep the start (for the tag), skip to the end of the line.
        skipped = len(head)
        while True:
            try:
                skipped += len(await reader.readuntil(b"\n"))
                break
            except asyncio.LimitOverrunError as e:
                skipped += len(await reader.readexactly(e.consumed))
            if skipped > MAX_SKIP:
                self.untagged(b"BYE Line too long")
                raise Closed
        return _LongLine(head[: LIMITS.max_line + 1])

    def _limits(self) -> p.Limits:
        return LIMITS if self.user is not None else PREAUTH_LIMITS

    def _discard_limit(self) -> int:
        """The largest refused non-synchronizing literal we read and drop; past it, BYE."""
        return MAX_DISCARD if self.user is not None else PREAUTH_LITERAL

    async def _discard(self, size: int) -> None:
        while size > 0:
            chunk = await self._read(self.reader.read(min(size, 1 << 20)))
            if not chunk:
                raise Closed
            size -= len(chunk)

    def _refusal(self, buf: p.CommandBuffer, error: p.ParseError | None) -> p.ParseError | None:
        """Why a literal must not be read (before "+" is sent): the command is not allowed in
        this state (that answer wins over a size error), or the command's literals together
        are too large. None when nothing speaks against it."""
        announced = error.literal if error is not None else buf.expecting
        if announced is None:
            return error
        name = (buf.name or "").removeprefix("UID ")
        err = self.state_error(name) if name else None
        if err is not None:
            return p.ParseError(err, tag=buf.tag, literal=announced)
        if error is not None:
            return error
        total = sum(len(x.data) for x in buf.parts if isinstance(x, p.Literal)) + announced.size
        if total > MAX_COMMAND_LITERALS:
            if name == "APPEND":
                return p.ParseError(
                    f"Messages over {MAX_COMMAND_LITERALS} bytes in all; append fewer at once",
                    tag=buf.tag,
                    code="TOOBIG",
                    status="NO",
                    literal=announced,
                )
            return p.ParseError("Command too long", tag=buf.tag, literal=announced)
        return None

    async def read_command(self) -> p.Command | None:
        """The next command, or None when a BAD/NO was already sent for it."""
        buf = p.CommandBuffer(self._limits())
        line = await self.readline()
        if isinstance(line, _LongLine):
            line = bytes(line)
        elif not line.rstrip(b"\r\n") and not buf.parts:
            return None  # an empty line: ignore it, as other servers do
        try:
            while True:
                try:
                    announced = buf.add_line(line)
                except p.ParseError as e:
                    raise self._refusal(buf, e) from None
                if announced is None:
                    break
                refusal = self._refusal(buf, None)
                if refusal is not None:
                    raise refusal
                if not announced.non_synchronizing:
                    self.write(b"+ Ready for literal data\r\n")
                    await self.drain()
                buf.add_literal(await self._read_literal(announced.size))
                line = await self.readline()
            await self._load_spooled(buf)
            return buf.parse(utf8=self.utf8)
        except p.ParseError as e:
            lit = e.literal
            if lit is not None and lit.non_synchronizing:
                # The client sends the literal anyway: skip it and the rest of the command,
                # unless it is too large to be worth reading.
                if lit.size > self._discard_limit():
                    self._literal_bye(e)
                await self._discard(lit.size)
                await self._skip_rest(e)
            self.write(e.response())
            return None
        finally:
            for part in buf.parts:  # what a refused or broken-off command had spooled
                if isinstance(part, p.Literal) and isinstance(part.data, Spool):
                    part.data.close()

    async def _read_literal(self, size: int) -> bytes | Spool:
        """A literal's bytes, read as they arrive; past ``limits.spool_threshold`` they go to a
        spool file, so that many sessions sending large messages at once cost disk."""
        threshold = self.app.config.limits.spool_threshold
        if size <= threshold:
            return await self._read(self.reader.readexactly(size))
        spool = Spool(spool_directory(self.app.config.data_dir), threshold)
        try:
            while len(spool) < size:
                chunk = await self._read(self.reader.read(min(size - len(spool), READ_PIECE)))
                if not chunk:
                    raise Closed
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        return spool

    async def _load_spooled(self, buf: p.CommandBuffer) -> None:
        """Bring a complete command's spooled literals into memory, once this session holds
        one of ``app.large_messages`` (kept until the command has run: ``_release_large``)."""
        spooled = [
            i
            for i, part in enumerate(buf.parts)
            if isinstance(part, p.Literal) and isinstance(part.data, Spool)
        ]
        if not spooled:
            return
        try:
            if self.large is None:
                await self.app.large_messages.acquire()
                self.large = self.app.large_messages
            for i in spooled:
                part = buf.parts[i]
                buf.parts[i] = p.Literal(await part.data.load(), part.binary)
        finally:
            for i in spooled:
                part = buf.parts[i]
                if isinstance(part.data, Spool):  # not loaded: cancelled or a read failed
                    part.data.close()

    def _release_large(self) -> None:
        if self.large is not None:
            self.large.release()
            self.large = None

    def _literal_bye(self, error: p.ParseError) -> None:
        self.write(error.response())
        self.untagged(b"BYE Literal too large")
        raise Closed

    async def _skip_rest(self, error: p.ParseError) -> None:
        while True:
            line = await self.readline()
            ann = p.literal_announcement(line)
            if ann is None or not ann.non_synchronizing:
                return
            if ann.size > self._discard_limit():
                self._literal_bye(error)
            await self._discard(ann.size)

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.app.stopping:
                self.untagged(b"BYE Server shutting down")
                await self.drain()
                return
            self.untagged(f"OK [CAPABILITY {self.capabilities()}] gomail ready")
            await self.drain()
            while True:
                try:
                    cmd = await self.read_command()
                    if cmd is not None:
                        await self.execute(cmd)
                finally:
                    cmd = None  # an APPEND's message is not kept while the client idles
                    self._release_large()
                if self.logging_out:
                    break
                await self.drain()
                # Pipelined commands already read would run back to back without a pause
                # (nothing above waits while data is buffered): let other clients in between.
                await asyncio.sleep(0)
        except Closed:
            pass
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            try:
                self.untagged(b"BYE Server shutting down")
            except Exception:
                pass
            raise
        finally:
            if self.selected is not None:
                self.selected.close()
                self.selected = None
            if self.stalled:
                # A plain close would wait for the unread answers to go out, for ever.
                self.writer.transport.abort()
            else:
                try:
                    await asyncio.wait_for(self.writer.drain(), 5)
                except Exception:
                    pass
            if self.compressing is not None:
                self.compressing.cancel()
            if self.session_key is not None:
                self.app.imap_sessions.release(self.session_key)
                self.session_key = None

    def state_error(self, name: str) -> str | None:
        if name in ANY_STATE:
            return None
        if name in NOT_AUTH:
            return "Already authenticated" if self.user is not None else None
        if self.user is None:
            return "Log in first"
        if name in SELECTED and self.selected is None:
            return "No mailbox selected"
        return None

    async def execute(self, cmd: p.Command) -> None:
        name = cmd.name
        tag = cmd.tag
        err = self.state_error(name)
        if err is not None:
            self.write(f"{tag} BAD {err}\r\n".encode())
            return
        handler = getattr(self, "cmd_" + name.lower().replace(" ", "_"), None)
        try:
            if handler is None:
                raise Bad(f"{name} is not supported")
            result = await handler(cmd)
        except Respond as r:
            result = r.line()
            if r.status == "NO" and self.selected is not None:
                await self.selected.sync(expunge=cmd.uid or name not in NO_EXPUNGE)
        except StoreError as e:
            log.warning("store refused %s: %s", name, e)
            result = f"NO {e}"
        except (Closed, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            raise
        except Exception:
            # A bug must not cost the client its connection, nor show it a traceback.
            log.exception("IMAP command %s failed", name)
            result = "NO [SERVERBUG] Internal error; the command was not completed"
        else:
            if self.selected is not None and result.startswith("OK"):
                await self.selected.sync(expunge=cmd.uid or name not in NO_EXPUNGE)
        if result is None:
            return  # answered already (STARTTLS)
        self.write(tag.encode() + b" " + result.encode("utf-8") + b"\r\n")

    # --- any state --------------------------------------------------------------------------

    async def cmd_capability(self, cmd: p.Command) -> str:
        self.untagged("CAPABILITY " + self.capabilities())
        return "OK CAPABILITY completed"

    async def cmd_noop(self, cmd: p.Command) -> str:
        if self.selected is not None:
            await self.selected.sync(force=True)
        return "OK NOOP completed"

    async def cmd_check(self, cmd: p.Command) -> str:
        await self.selected.sync(force=True)
        return "OK CHECK completed"

    async def cmd_logout(self, cmd: p.Command) -> str:
        self.untagged(b"BYE gomail logging out")
        self.logging_out = True
        return "OK LOGOUT completed"

    async def cmd_id(self, cmd: p.Command) -> str:
        fields = (("name", "gomail"), ("version", __version__))
        self.untagged(b"ID " + wire.paren_list(wire.quote(x) for kv in fields for x in kv))
        return "OK ID completed"

    # --- not authenticated ------------------------------------------------------------------

    async def cmd_compress(self, cmd: p.Command) -> str:
        if self.compressing is not None:
            raise No("DEFLATE is active already", "COMPRESSIONACTIVE")
        if cmd.args.mechanism.upper() != "DEFLATE":
            raise Bad(f"Unknown compression mechanism {cmd.args.mechanism}")
        if self.reader._buffer:  # RFC 4978: no pipelining past COMPRESS
            raise Bad("Data after COMPRESS")
        self.write(f"{cmd.tag} OK DEFLATE active\r\n".encode())
        await self.drain()
        self.reader, self.writer, self.compressing = start_deflate(self.reader, self.writer)
        return None  # type: ignore[return-value]

    async def cmd_starttls(self, cmd: p.Command) -> str:
        if self.tls or getattr(self.listener, "implicit_tls", False):
            raise Bad("TLS is already active")
        if self.reader._buffer:  # pipelined data after STARTTLS: command injection
            raise Bad("Data after STARTTLS")
        self.write(f"{cmd.tag} OK Begin TLS negotiation now\r\n".encode())
        await self.drain()
        await self.writer.start_tls(self.listener.tls_context)
        self.tls = True
        return None  # type: ignore[return-value]

    async def cmd_login(self, cmd: p.Command) -> str:
        if self.login_disabled:
            raise No("Use STARTTLS first", "PRIVACYREQUIRED")
        args: p.Login = cmd.args
        return await self._login(args.username, args.password, "LOGIN")

    async def cmd_authenticate(self, cmd: p.Command) -> str:
        args: p.Authenticate = cmd.args
        if args.mechanism != "PLAIN":
            raise No("Unsupported authentication mechanism", "CANNOT")
        if self.login_disabled:
            raise No("Use STARTTLS first", "PRIVACYREQUIRED")
        data = args.initial_response
        if data is None:
            self.write(b"+ \r\n")
            await self.drain()
            line = await self.readline()
            if len(line) > PREAUTH_LIMITS.max_line + 2:
                raise Bad("SASL response too long")
            try:
                data = p.sasl_response(line)
            except p.ParseError as e:
                raise Bad(e.message) from None
            if data is None:
                raise Bad("Authentication cancelled")
        parts = data.split(b"\0")
        if len(parts) != 3:
            raise Bad("Malformed PLAIN response")
        authz, authc, password = parts
        try:
            username = authc.decode("utf-8")
            secret = password.decode("utf-8")
            authz_name = authz.decode("utf-8")
        except UnicodeDecodeError:
            raise Bad("PLAIN response is not UTF-8") from None
        if authz_name and authz_name.lower() != username.lower():
            raise No("Acting as another user is not allowed", "AUTHORIZATIONFAILED")
        return await self._login(username, secret, "PLAIN")

    async def _login(self, login: str, secret: str, mechanism: str) -> str:
        result = await logins.login(
            self.app,
            protocol="imap",
            listener=self.listener.name,
            peer=self.peer,
            login=login,
            secret=secret,
            mechanism=mechanism,
            failures=self.failures,
        )
        if result.locked:
            return "NO [UNAVAILABLE] Too many failed logins from your address, try again later"
        if result.user is None:
            self.failures += 1
            if self.failures >= logins.FAILURES_BEFORE_DISCONNECT:
                self.untagged(b"BYE Too many failed authentications")
                self.logging_out = True
            return "NO [AUTHENTICATIONFAILED] Authentication failed"
        # The password was right, so the refusal tells nothing to a guesser, and it is not a
        # failure. A tagged NO (not BYE) keeps the connection: the client may log in again
        # once one of its other sessions has ended, and [LIMIT] (RFC 5530) tells clients that
        # this is not a wrong password to ask the user about again.
        key = f"{result.user}\0{client_key(self.peer)}"
        if not self.app.imap_sessions.acquire(key):
            log.warning(
                "IMAP session limit",
                extra={"fields": {"user": result.user, "peer": self.peer}},
            )
            limit = self.app.imap_sessions.limit
            return f"NO [LIMIT] Maximum number of connections from user+IP exceeded ({limit})"
        self.session_key = key
        self.user = result.user
        return f"OK [CAPABILITY {self.capabilities()}] Logged in"

    # --- authenticated ----------------------------------------------------------------------

    async def cmd_enable(self, cmd: p.Command) -> str:
        if self.selected is not None:
            raise Bad("ENABLE is not allowed while a mailbox is selected")
        done = []
        for cap in cmd.args.capabilities:
            if cap in ENABLEABLE and cap not in self.enabled:
                self.enabled.add(cap)
                done.append("IMAP4rev2" if cap == "IMAP4REV2" else cap)
                if cap == "QRESYNC":
                    self.enabled.add("CONDSTORE")
        self.untagged("ENABLED" + "".join(" " + c for c in done))
        return "OK ENABLE completed"

    async def cmd_namespace(self, cmd: p.Command) -> str:
        self.untagged(f'NAMESPACE (("" "{HIERARCHY_DELIMITER}")) NIL NIL')
        return "OK NAMESPACE completed"

    async def folders(self) -> list[Folder]:
        return await self.app.store.list_folders(self.user)

    async def find_folder(self, name: str) -> Folder | None:
        return await self.app.store.get_folder(self.user, name)

    async def cmd_create(self, cmd: p.Command) -> str:
        args: p.Create = cmd.args
        if len(args.special_use) > 1:
            raise No("Only one special-use attribute per folder", "USEATTR")
        special = args.special_use[0] if args.special_use else None
        name = args.mailbox
        if _canonical(name.rstrip(HIERARCHY_DELIMITER)) == "INBOX":
            raise No("INBOX exists already", "ALREADYEXISTS")
        try:
            await self.app.store.create_folder(self.user, name, special)
        except FolderExists:
            raise No("Mailbox exists already", "ALREADYEXISTS") from None
        except FolderLimit as e:
            raise No(_folder_limit_text(e), "LIMIT") from None
        except StoreError as e:
            if special is not None and "special-use" in str(e):
                raise No(str(e), "USEATTR") from None
            raise No(str(e), "CANNOT") from None
        return "OK CREATE completed"

    async def cmd_delete(self, cmd: p.Command) -> str:
        name = cmd.args.mailbox
        if _canonical(name) == "INBOX":
            raise No("INBOX cannot be deleted", "CANNOT")
        try:
            await self.app.store.delete_folder(self.user, name)
        except NoSuchFolder:
            raise No("No such mailbox", "NONEXISTENT") from None
        except StoreError as e:
            raise No(str(e), "CANNOT") from None
        if self.selected is not None and self.selected.name == _canonical(name):
            self.selected.close()
            self.selected = None
            self.untagged(b"BYE The selected mailbox was deleted")
            self.logging_out = True
        return "OK DELETE completed"

    async def cmd_rename(self, cmd: p.Command) -> str:
        args: p.Rename = cmd.args
        try:
            await self.app.store.rename_folder(self.user, args.old, args.new)
        except NoSuchFolder:
            raise No("No such mailbox", "NONEXISTENT") from None
        except FolderExists:
            raise No("Mailbox exists already", "ALREADYEXISTS") from None
        except FolderLimit as e:
            raise No(_folder_limit_text(e), "LIMIT") from None
        except StoreError as e:
            raise No(str(e), "CANNOT") from None
        return "OK RENAME completed"

    async def cmd_subscribe(self, cmd: p.Command) -> str:
        return await self._subscribe(cmd, True)

    async def cmd_unsubscribe(self, cmd: p.Command) -> str:
        return await self._subscribe(cmd, False)

    async def _subscribe(self, cmd: p.Command, on: bool) -> str:
        try:
            await self.app.store.subscribe(self.user, cmd.args.mailbox, on)
        except NoSuchFolder:
            raise No("No such mailbox", "NONEXISTENT") from None
        return f"OK {cmd.name} completed"

    async def cmd_list(self, cmd: p.Command) -> str:
        return await list_mailboxes(self, cmd.args)

    async def cmd_lsub(self, cmd: p.Command) -> str:
        return await list_mailboxes(self, cmd.args)

    async def _status(
        self, f: Folder, items: tuple[str, ...], deleted: dict[str, int] | None = None
    ) -> None:
        """The STATUS response for a folder; ``deleted``: the account's \\Deleted counts, when
        the caller (LIST-STATUS) read them once for all its folders."""
        out = []
        if "DELETED" in items and deleted is None:
            deleted = await self.app.store.deleted_counts(self.user, f.name)
        for item in items:
            value = {
                "MESSAGES": f.messages,
                "RECENT": f.recent,
                "UIDNEXT": f.uidnext,
                "UIDVALIDITY": f.uidvalidity,
                "UNSEEN": f.unseen,
                "SIZE": f.bytes,
                "HIGHESTMODSEQ": f.highestmodseq,
                "DELETED": deleted.get(f.name, 0) if deleted is not None else None,
                "APPENDLIMIT": APPENDLIMIT,
            }[item]
            out.append(f"{item} {value}")
        if "HIGHESTMODSEQ" in items:
            self.enabled.add("CONDSTORE")
        self.untagged(b"STATUS " + self.mailbox(f.name) + f" ({' '.join(out)})".encode())

    async def cmd_status(self, cmd: p.Command) -> str:
        args: p.Status = cmd.args
        f = await self.find_folder(args.mailbox)
        if f is None:
            raise No("No such mailbox", "NONEXISTENT")
        await self._status(f, args.items)
        return "OK STATUS completed"

    # --- SELECT and friends -----------------------------------------------------------------

    def _unselect(self) -> bool:
        if self.selected is None:
            return False
        self.selected.close()
        self.selected = None
        self.saved = set()
        return True

    async def cmd_select(self, cmd: p.Command) -> str:
        args: p.Select = cmd.args
        if args.qresync is not None and not self.qresync:
            raise Bad("QRESYNC is not enabled")
        if self._unselect():
            self.untagged(b"OK [CLOSED] Previous mailbox closed")
        store = self.app.store
        if args.condstore:
            self.enabled.add("CONDSTORE")
        feed = store.subscribe_changes(self.user)
        try:
            snap = await store.select_folder(
                self.user, args.mailbox, claim_recent=not args.readonly
            )
        except NoSuchFolder:
            feed.close()
            raise No("No such mailbox", "NONEXISTENT") from None
        except BaseException:
            feed.close()
            raise
        sel = SelectedFolder(self, snap, args.readonly, feed)
        self.selected = sel
        self.untagged(b"FLAGS " + sel.flag_list())
        self.untagged(sel.permanent_flags())
        self.untagged(b"%d EXISTS" % sel.exists)
        if not self.rev2:
            self.untagged(b"%d RECENT" % len(sel.recent))
            first_unseen = next(
                (i + 1 for i, fl in enumerate(sel.flags) if "\\Seen" not in fl), None
            )
            if first_unseen is not None:
                self.untagged(b"OK [UNSEEN %d] First unseen" % first_unseen)
        self.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % sel.uidvalidity)
        self.untagged(b"OK [UIDNEXT %d] Predicted next UID" % sel.uidnext)
        self.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % sel.modseq)
        if self.rev2:
            self.untagged(f'LIST () "{HIERARCHY_DELIMITER}" '.encode() + self.mailbox(sel.name))
        if args.qresync is not None and args.qresync.uidvalidity == sel.uidvalidity:
            await self._qresync_select(sel, args.qresync)
        mode = "READ-ONLY" if args.readonly else "READ-WRITE"
        return f"OK [{mode}] {cmd.name} completed"

    async def _qresync_select(self, sel: SelectedFolder, q: p.QResync) -> None:
        changes = await self.app.store.changes_since(self.user, sel.name, q.modseq)
        known = q.known_uids.membership(2**32) if q.known_uids is not None else None
        # Ranges throughout: with the folder's expunge history forgotten beyond q.modseq this
        # is every UID below UIDNEXT not in the folder, perhaps millions of numbers.
        vanished = changes.expunged
        if q.known_uids is not None:
            vanished = vanished.intersect(q.known_uids.resolve(2**32))
        if vanished:
            self.untagged(b"VANISHED (EARLIER) " + str(p.SequenceSet(vanished.ranges)).encode())
        for uid, _flags, _modseq in changes.changed:
            i = sel.index_of(uid)
            if i is not None and (known is None or known(uid)):
                self.untagged(sel.fetch_flags_line(i, True))

    async def cmd_examine(self, cmd: p.Command) -> str:
        return await self.cmd_select(cmd)

    async def cmd_close(self, cmd: p.Command) -> str:
        sel = self.selected
        if not sel.readonly:
            await self.app.store.expunge(self.user, sel.name)
        self._unselect()
        return "OK CLOSE completed"

    async def cmd_unselect(self, cmd: p.Command) -> str:
        self._unselect()
        return "OK UNSELECT completed"

    async def cmd_expunge(self, cmd: p.Command) -> str:
        sel = self.selected
        if sel.readonly:
            raise No("Mailbox is read-only", "READ-ONLY")
        uids = None
        if cmd.uid:
            uids = [sel.uids[i] for i in sel.resolve(cmd.args.sequence_set, True, self.saved)]
            if not uids:
                return "OK UID EXPUNGE completed"
        await sel.sync(force=True)
        removed = await self.app.store.expunge(self.user, sel.name, uids)
        sel.announce_expunged(removed)
        highest = await self._highestmodseq_code()
        return f"OK {highest}{'UID ' if cmd.uid else ''}EXPUNGE completed"

    async def _highestmodseq_code(self) -> str:
        if not self.qresync or self.selected is None:
            return ""
        f = await self.find_folder(self.selected.name)
        return f"[HIGHESTMODSEQ {f.highestmodseq}] " if f else ""

    # --- IDLE ---------------------------------------------------------------------------------

    async def cmd_idle(self, cmd: p.Command) -> str:
        self.write(b"+ idling\r\n")
        sel = self.selected
        if sel is not None:
            await sel.sync(force=True)
        await self.drain()
        read = asyncio.ensure_future(self.readline())
        waiter = None
        try:
            while True:
                if sel is not None and sel is self.selected:
                    waiter = asyncio.ensure_future(sel.feed.__anext__())
                    done, _ = await asyncio.wait(
                        {read, waiter}, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    done, _ = await asyncio.wait({read})
                if waiter is not None and waiter in done:
                    try:
                        change = waiter.result()
                    except StopAsyncIteration:
                        sel = None
                    else:
                        if change.folder == sel.name and change.kind != "folders":
                            await sel.sync(force=True)
                            await self.drain()
                    waiter = None
                if read in done:
                    line = read.result()
                    if p.is_done(line):
                        return "OK IDLE terminated"
                    raise Bad("Expected DONE")
        finally:
            for task in (read, waiter):
                if task is not None and not task.done():
                    task.cancel()
                    try:
                        await task
                    except (asyncio.CancelledError, Exception):
                        pass

    # --- quota --------------------------------------------------------------------------------

    async def _quota_line(self) -> bool:
        used, limit = await self.app.store.quota(self.user)
        if limit is None:
            return False
        self.untagged(f'QUOTA "" (STORAGE {(used + 1023) // 1024} {limit // 1024})')
        return True

    async def cmd_getquota(self, cmd: p.Command) -> str:
        if cmd.args.root != "" or not await self._quota_line():
            raise No("No such quota root", "NONEXISTENT")
        return "OK GETQUOTA completed"

    async def cmd_getquotaroot(self, cmd: p.Command) -> str:
        name = cmd.args.mailbox
        if await self.find_folder(name) is None:
            raise No("No such mailbox", "NONEXISTENT")
        used, limit = await self.app.store.quota(self.user)
        root = b' ""' if limit is not None else b""
        self.untagged(b"QUOTAROOT " + self.mailbox(_canonical(name)) + root)
        if limit is not None:
            await self._quota_line()
        return "OK GETQUOTAROOT completed"

    async def cmd_setquota(self, cmd: p.Command) -> str:
        raise No("Quotas are set by the administrator", "NOPERM")

    # --- delegated ----------------------------------------------------------------------------

    async def cmd_append(self, cmd: p.Command) -> str:
        from gomail.imap import fetch

        return await fetch.append(self, cmd)

    async def cmd_fetch(self, cmd: p.Command) -> str:
        from gomail.imap import fetch

        return await fetch.fetch(self, cmd)

    async def cmd_store(self, cmd: p.Command) -> str:
        from gomail.imap import fetch

        return await fetch.store(self, cmd)

    async def cmd_copy(self, cmd: p.Command) -> str:
        from gomail.imap import fetch

        return await fetch.copy_move(self, cmd, move=False)

    async def cmd_move(self, cmd: p.Command) -> str:
        from gomail.imap import fetch

        return await fetch.copy_move(self, cmd, move=True)

    async def cmd_search(self, cmd: p.Command) -> str:
        from gomail.imap import search

        return await search.search(self, cmd)

    async def cmd_sort(self, cmd: p.Command) -> str:
        from gomail.imap import threading

        return await threading.sort(self, cmd)

    async def cmd_thread(self, cmd: p.Command) -> str:
        from gomail.imap import threading

        return await threading.thread(self, cmd)


def _folder_limit_text(e: FolderLimit) -> str:
    """The text of NO [LIMIT] for a CREATE or RENAME the store refused."""
    return str(e) if isinstance(e, FolderCountLimit) else f"Mailbox name refused: {e}"


def _canonical(name: str) -> str:
    if name[:5].upper() == "INBOX" and name[5:6] in ("", HIERARCHY_DELIMITER):
        return "INBOX" + name[5:]
    return name
