"""What one IMAP client, logged in or not, may cost a real `gomail run` (issue 10, findings 3,
5 and 9, and the same family): literals before login, connections per listener and per
address, logged-in sessions per user and address, pipelined commands, a client that never
reads, and a COMPRESS=DEFLATE bomb.

Every attack runs against one server with small limits (``LIMITS``) and checks the server's
memory (VmRSS of its process, sampled while the attack runs) and that another client is still
answered. Clients come from several loopback addresses (127.0.x.y), each its own client
address to the server, so that the per-address limits can be told from the global one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from pathlib import Path

import pytest

from .test_imap_interop import ALICE, BOB, Raw

LIMITS = {"connections": 40, "connections_per_ip": 8, "imap_sessions_per_user_ip": 3}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, gomail_template):
    from conftest import module_server

    with module_server(tmp_path_factory, gomail_template, "imaplimits", {"limits": LIMITS}) as g:
        yield g


@pytest.fixture
def g(server):
    return server.ensure_running()


class From(Raw):
    """A Raw IMAP client connecting from a loopback address of its own."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 15.0):
        super().__init__(port, timeout=timeout, source=source)

    def closed(self, timeout: float = 10.0) -> bool:
        """True when the server closes the connection (what it still sends is dropped)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        return True


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRSS:
    """The highest VmRSS of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int):
        self.pid = pid
        self.base = rss(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.base

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def watched(g, source: str = "127.0.0.1"):
    """A logged-in client of another user, made before the attack (a login hashes with
    64 MiB of memory, which would blur the measure): ``check()`` asserts that it and a new
    connection are answered at once."""
    with From(g.ports["imap"], source, timeout=5) as w:
        w.login(BOB)

        def check() -> None:
            started = time.monotonic()
            _, status = w.cmd("NOOP")
            assert status.startswith(b"OK"), status
            with From(g.ports["imap"], source, timeout=5) as c:
                _, status = c.cmd("CAPABILITY")
                assert status.startswith(b"OK"), status
            assert time.monotonic() - started < 3

        yield check


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def send_quietly(sock: socket.socket, data: bytes) -> int:
    """Send as much of data as the server takes before it closes (or 2 s pass)."""
    sock.settimeout(2)
    sent = 0
    with contextlib.suppress(OSError):
        while sent < len(data):
            sent += sock.send(data[sent : sent + 256 * 1024])
    return sent


# --- finding 3: literals before login ------------------------------------------------------


def test_preauth_sync_literal_gets_no_continuation(g):
    with From(g.ports["imap"]) as c:
        c.send(b"a APPEND INBOX {52428800}\r\n")
        assert c.line() == b"a BAD Log in first"  # no "+": the client does not send it
        c.send(b"b LOGIN {52428800}\r\n")
        assert c.line().startswith(b"b BAD Literal too big")
        c.send(b"c ID {9000}\r\n")
        assert c.line().startswith(b"c BAD")
        # LOGIN and AUTHENTICATE with literals still work.
        _, status = c.cmd("LOGIN ", ALICE.encode(), " ", b"secret-pw")
        assert status.startswith(b"OK"), status
        _, status = c.cmd("NOOP")
        assert status.startswith(b"OK"), status


def test_preauth_large_nonsync_literal_closes(g):
    with From(g.ports["imap"]) as c:
        c.send(b"a APPEND INBOX {52428800+}\r\n")
        assert c.line() == b"a BAD Log in first"
        assert c.line() == b"* BYE Literal too large"
        assert c.closed()
    # A small one is skipped with the rest of its command, and the connection goes on.
    with From(g.ports["imap"]) as c:
        c.send(b"a XFOO {5+}\r\nhello {3+}\r\nabc\r\n")
        assert c.line() == b"a BAD Log in first"
        _, status = c.cmd("NOOP")
        assert status.startswith(b"OK"), status


def test_preauth_literal_flood_costs_no_memory(g):
    """The reported attack: many clients announce 50 MB literals before login and send. The
    server used to read them all (60 clients: 2.9 GB); now it reads none."""
    attackers = [From(g.ports["imap"], f"127.0.1.{i}") for i in range(1, 26)]
    payload = b"x" * (4 * MB)
    with watched(g) as alive, PeakRSS(g.proc.pid) as mem:
        threads = []
        for i, c in enumerate(attackers):
            literal = b"{52428800+}" if i % 2 else b"{52428800}"
            c.send(b"a APPEND INBOX " + literal + b"\r\n")
            threads.append(threading.Thread(target=send_quietly, args=(c.sock, payload)))
        for t in threads:
            t.start()
        alive()
        for t in threads:
            t.join(10)
    for c in attackers:
        c.close()
    # 25 x 4 MB sent; read in full it would be 100 MB.
    assert mem.growth < 20 * MB, mem.growth


# --- finding 5: connections per listener ---------------------------------------------------


def test_connections_per_ip_and_in_all(g):
    port = g.ports["imap"]
    held = [From(port, "127.0.2.1") for _ in range(LIMITS["connections_per_ip"])]
    try:
        assert _refused(port, "127.0.2.1") == (
            b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
        )
        with From(port, "127.0.2.2") as other:  # another address is let in
            other.login(BOB)
        # Up to the listener's total, from many addresses.
        for i in range(LIMITS["connections"] - len(held)):
            held.append(From(port, f"127.0.3.{i + 1}"))
        assert _refused(port, "127.0.4.1") == (
            b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
        )
        for _ in range(20):  # a flood of refusals writes one log line, not one each
            _refused(port, "127.0.4.1")
        # The other listener counts its own connections.
        with Raw(g.ports["imaps"], tls=True) as c:
            assert c.greeting.startswith(b"* OK"), c.greeting
    finally:
        for c in held:
            c.close()
    assert wait_until(lambda: _greets(port))
    refusals = [line for line in g.log.splitlines() if "connections refused" in line]
    assert len(refusals) == 1 and "imap" in refusals[0], g.log[-3000:]


def _refused(port: int, source: str) -> bytes:
    """All a connection gets before the server closes it."""
    with socket.create_connection(("127.0.0.1", port), 5, (source, 0)) as sock:
        sock.settimeout(5)
        out = b""
        while chunk := sock.recv(1000):
            out += chunk
        return out


def _greets(port: int) -> bool:
    with From(port, "127.0.2.1") as c:
        return c.greeting.startswith(b"* OK")


# --- finding 9: logged-in sessions per user and address ------------------------------------


def test_sessions_per_user_and_ip(g):
    port = g.ports["imap"]
    n = LIMITS["imap_sessions_per_user_ip"]
    sessions = []
    try:
        for _ in range(n):
            c = From(port, "127.0.5.1")
            c.login(ALICE)
            sessions.append(c)
        with From(port, "127.0.5.1") as late:
            _, status = late.cmd(f'LOGIN "{ALICE}" "secret-pw"')
            assert status == (
                b"NO [LIMIT] Maximum number of connections from user+IP exceeded (%d)" % n
            )
            _, status = late.cmd("SELECT INBOX")  # still not logged in
            assert status == b"BAD Log in first"
            # Another user from the same address, and the same user from another address.
            with From(port, "127.0.5.1") as other:
                other.login(BOB)
            with From(port, "127.0.5.2") as other:
                other.login(ALICE)
            # A session ending frees its place: the same connection logs in now.
            sessions.pop().close()

            def logs_in() -> bool:
                _, status = late.cmd(f'LOGIN "{ALICE}" "secret-pw"')
                return status.startswith(b"OK")

            assert wait_until(logs_in)
            _, status = late.cmd("SELECT INBOX")
            assert status.startswith(b"OK"), status
    finally:
        for c in sessions:
            c.close()


# --- the same family: pipelining, clients that do not read, COMPRESS -------------------------


def test_pipelined_commands_unread_answers_bounded(g):
    """A client pipelines megabytes of commands and reads no answer: the server stops
    reading it instead of buffering either side."""
    with From(g.ports["imap"], "127.0.6.1") as c:
        c.login(ALICE)
        with watched(g) as alive, PeakRSS(g.proc.pid) as mem:
            sent = send_quietly(c.sock, b"a CAPABILITY\r\n" * (30 * MB // 14))
            alive()
        assert sent < 30 * MB  # the server stopped reading
    assert mem.growth < 20 * MB, mem.growth


def test_fetch_to_a_client_that_does_not_read(g):
    folder = "bigbox"
    with From(g.ports["imap"], "127.0.6.2") as c:
        c.login(ALICE)
        c.cmd(f"CREATE {folder}")
        body = b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 6000  # ~480 KB
        for _ in range(40):
            _, status = c.cmd(f"APPEND {folder} ", body)
            assert status.startswith(b"OK"), status
    with From(g.ports["imap"], "127.0.6.3") as c:
        c.login(ALICE)
        c.cmd(f"SELECT {folder}")
        with watched(g) as alive, PeakRSS(g.proc.pid) as mem:
            c.send(b"f FETCH 1:* BODY.PEEK[]\r\n")  # ~19 MB of answer, never read
            time.sleep(1.5)
            alive()
    # A 4 MiB batch, 256 KiB of unsent answer and the allocator's slack; not the ~19 MB of
    # answers a server that does not wait for its client would hold.
    assert mem.growth < 14 * MB, mem.growth


def _compressed(c: From) -> None:
    _, status = c.cmd("COMPRESS DEFLATE")
    assert status.startswith(b"OK"), status
    c.inflate = zlib.decompressobj(-15)
    c.deflate = zlib.compressobj(9, zlib.DEFLATED, -15)


def _bomb(deflate, unit: bytes, total: int) -> bytes:
    block = unit * (MB // len(unit))
    out = b"".join(deflate.compress(block) for _ in range(total // MB))
    return out + deflate.flush(zlib.Z_SYNC_FLUSH)


def test_compress_bomb_pipelined_commands(g):
    """~50 KB of deflate that inflates to 50 MB of NOOPs: the server inflates only as fast
    as it runs them."""
    with From(g.ports["imap"], "127.0.7.1") as c:
        c.login(ALICE)
        _compressed(c)
        bomb = _bomb(c.deflate, b"a NOOP\r\n", 50 * MB)
        assert len(bomb) < 100 * 1024
        with watched(g) as alive, PeakRSS(g.proc.pid) as mem:
            send_quietly(c.sock, bomb)
            time.sleep(1)
            alive()
    assert mem.growth < 20 * MB, mem.growth


def test_compress_bomb_one_endless_line(g):
    """A line that inflates to 200 MB: answered BYE once it passes 1 MiB."""
    with From(g.ports["imap"], "127.0.7.2") as c:
        c.login(ALICE)
        _compressed(c)
        bomb = _bomb(c.deflate, b"x", 200 * MB)
        with watched(g) as alive, PeakRSS(g.proc.pid) as mem:
            send_quietly(c.sock, bomb)
            assert c.line() == b"* BYE Line too long"
            alive()
    assert mem.growth < 20 * MB, mem.growth
