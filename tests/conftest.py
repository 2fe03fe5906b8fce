"""The test harness: a real `gomail run` on free loopback ports in a temporary directory.

The server is driven from outside, as a user drives it: through the `gomail` command (its
admin CLI), over SMTP (smtplib, swaks, raw sockets), and by reading what it stored with the
store's own read API. Fixtures:

- ``gomail``: a fresh server for one test (for tests that stop, kill or reconfigure it);
- ``shared_gomail``: one server per test module, started once, restarted if a test killed it;
- ``gomail_factory``: builds servers that are not started yet (custom config, pipelines).

Every server starts from a copy of one data directory prepared once per session through the
CLI: the domains example.org, catchall.example and bücher.example (IDN), the users alice, bob,
carol and tiny (4,000-byte quota) at example.org and anna at bücher.example, all with password
``secret-pw``, and a few aliases (see ``ALIASES``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

PASSWORD = "secret-pw"
HOSTNAME = "mx.gomail.test"
MAX_SIZE = 1 << 20  # what the test servers advertise as SIZE
LISTENERS = ("mx", "submission", "smtps", "imap", "imaps")
IDN_DOMAIN = "bücher.example"
IDN_ACE = "xn--bcher-kva.example"

DOMAINS = ("example.org", "catchall.example", IDN_DOMAIN)
USERS = {
    "alice@example.org": None,
    "bob@example.org": None,
    "carol@example.org": None,
    "tiny@example.org": "4000",
    f"anna@{IDN_DOMAIN}": None,
}
ALIASES = (
    ("sales@example.org", ["alice@example.org"]),
    ("team@example.org", ["alice@example.org", "bob@example.org"]),
    ("exact@catchall.example", ["alice@example.org"]),
    ("@catchall.example", ["bob@example.org"]),
)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


# --- small helpers ------------------------------------------------------------------------


def gomail_command() -> list[str]:
    """The installed `gomail` console script of the environment running the tests."""
    candidate = Path(sys.executable).parent / "gomail"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("gomail")
    if found:
        return [found]
    return [sys.executable, "-c", "from gomail.cli import main; main()"]


def _unused_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEAD_DNS_PORT = _unused_udp_port()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stock_pipeline_path() -> Path:
    import gomail

    return Path(gomail.__file__).parent / "pipelines" / "default.yaml"


def make_message(
    sender: str = "someone@sender.example",
    to: str = "alice@example.org",
    subject: str = "hello",
    body: str = "Hello.\r\n",
    msgid: str | None = None,
    extra_headers: str = "",
) -> tuple[str, bytes]:
    """(Message-ID without brackets, the message as CRLF bytes)."""
    msgid = msgid or f"{uuid.uuid4().hex}@sender.example"
    text = (
        f"From: <{sender}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{msgid}>\r\n"
        "Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        f"{extra_headers}"
        "\r\n"
        f"{body}"
    )
    return msgid, text.encode("utf-8")


MSGID_RE = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.IGNORECASE | re.MULTILINE)


def message_ids(raws: list[bytes]) -> list[str]:
    out = []
    for raw in raws:
        head = raw.split(b"\r\n\r\n", 1)[0]
        m = MSGID_RE.search(head)
        out.append(m.group(1).decode("utf-8", "replace") if m else "")
    return out


def header_names(raw: bytes) -> list[str]:
    """Names of the header fields of raw, in order."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") or not line:
            continue
        names.append(line.split(b":", 1)[0].decode("ascii", "replace"))
    return names


def tls_client_context() -> ssl.SSLContext:
    """Accepts the server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def assert_reply(reply, code: int, enhanced: str | tuple[str, ...] | None = None) -> None:
    """reply is (code, text) as smtplib gives it; enhanced the expected status code(s)."""
    got_code, text = reply
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    assert got_code == code, f"expected {code} {enhanced or ''}, got {got_code} {text!r}"
    if enhanced is not None:
        wanted = (enhanced,) if isinstance(enhanced, str) else enhanced
        assert any(text.startswith(e + " ") or text == e for e in wanted), (
            f"expected {code} {' or '.join(wanted)}, got {got_code} {text!r}"
        )


def dot_stuff(message: bytes) -> bytes:
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)


def auth_plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


# --- a raw SMTP client for what smtplib refuses to send -----------------------------------


class RawSMTP:
    """Line-level SMTP over a socket: sends bytes exactly as given, reads whole replies."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = 15.0, tls=False, source=None
    ):
        # source: the local address to connect from (another loopback address is another client)
        source_address = (source, 0) if source else None
        sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=source_address
        )
        if tls:
            sock = tls_client_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; buffered {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> tuple[int, str]:
        """One reply: (code, text of its lines joined by newlines)."""
        lines = []
        while True:
            line = self._line()
            lines.append(line[4:].decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line: bytes | str) -> tuple[int, str]:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply()

    def starttls(self) -> tuple[int, str]:
        r = self.cmd("STARTTLS")
        if r[0] == 220:
            self.sock = tls_client_context().wrap_socket(self.sock, server_hostname="localhost")
        return r

    def data(self, message: bytes) -> tuple[int, str]:
        """DATA: the 354, then the dot-stuffed message; returns the final reply (or the
        refusal of DATA itself)."""
        r = self.cmd("DATA")
        if r[0] != 354:
            return r
        self.send(dot_stuff(message) + b".\r\n")
        return self.reply()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the server under test ----------------------------------------------------------------


class Gomail:
    """One gomail installation in a temporary directory, and its server process.

    The helpers and constants tests need ride along as attributes (``g.make_message``,
    ``g.assert_reply``, ``g.IDN_ACE`` …), so test modules need no import from this file.
    """

    PASSWORD = PASSWORD
    HOSTNAME = HOSTNAME
    MAX_SIZE = MAX_SIZE
    IDN_DOMAIN = IDN_DOMAIN
    IDN_ACE = IDN_ACE
    make_message = staticmethod(make_message)
    assert_reply = staticmethod(assert_reply)
    header_names = staticmethod(header_names)
    parse_message_ids = staticmethod(message_ids)
    auth_plain = staticmethod(auth_plain)
    tls_client_context = staticmethod(tls_client_context)
    stock_pipeline_path = staticmethod(stock_pipeline_path)

    def __init__(self, root: Path, template: Path | None = None):
        self.root = root
        self.data = root / "data"
        self.config_path = root / "gomail.yaml"
        self.log_path = root / "server.log"
        self.ports = {name: free_port() for name in LISTENERS}
        self.extra_config: dict = {}
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        if template is not None and not self.data.exists():
            shutil.copytree(template, self.data)
        self.data.mkdir(parents=True, exist_ok=True)
        self.write_config()

    # configuration
    def config(self) -> dict:
        cfg = {
            "hostname": HOSTNAME,
            "data": str(self.data),
            "max_message_size": MAX_SIZE,
            "listen": {name: f"127.0.0.1:{port}" for name, port in self.ports.items()},
            # Tests never ask a real resolver: a loopback port nobody answers on, so outbound
            # look-ups fail temporarily and queued mail stays queued, on this machine.
            "dns": {"nameservers": ["127.0.0.1"], "port": DEAD_DNS_PORT, "timeout": 1},
        }
        cfg.update(self.extra_config)
        return cfg

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), allow_unicode=True))

    @property
    def db_path(self) -> Path:
        return self.data / "gomail.db"

    # the admin CLI
    def base_command(self) -> list[str]:
        return [*gomail_command(), "--data", str(self.data), "--config", str(self.config_path)]

    def cli(self, *args: str, input: str | None = None, check: bool = True, timeout=60):
        """Run `gomail ARGS…`; returns the CompletedProcess (text). check: exit 0 required."""
        proc = subprocess.run(
            [*self.base_command(), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if check:
            assert proc.returncode == 0, (
                f"gomail {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    # the server
    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def listen_args(self) -> list[str]:
        args = []
        for name, port in self.ports.items():
            args += ["--listen", f"{name}=127.0.0.1:{port}"]
        return args

    def spawn(self, *extra: str) -> subprocess.Popen:
        """Start `gomail run` without waiting for it to be ready."""
        assert not self.running, "already running"
        self.write_config()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept for the process's life
        self._log_file.write(f"\n=== gomail run at {time.strftime('%T')} ===\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            [*self.base_command(), "run", *self.listen_args(), *extra],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            cwd=self.root,
        )
        return self.proc

    def start(self, extra_config: dict | None = None) -> Gomail:
        if extra_config is not None:
            self.extra_config = extra_config
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        pending = set(self.ports)
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"gomail run exited {self.proc.returncode} while starting:\n{self.log}"
                )
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError(f"gomail run not listening on {pending}:\n{self.log}")
            for name in list(pending):
                with socket.socket() as s:
                    s.settimeout(0.5)
                    if s.connect_ex(("127.0.0.1", self.ports[name])) == 0:
                        pending.discard(name)
            if pending:
                time.sleep(0.05)
        return self

    def _reap(self) -> None:
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> int:
        """SIGTERM; the server must exit 0 within STOP_TIMEOUT seconds."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(
                f"gomail run did not exit within {STOP_TIMEOUT}s of SIGTERM:\n{self.log[-4000:]}"
            ) from None
        finally:
            self._reap()
        assert rc == 0, f"gomail run exited {rc} on SIGTERM:\n{self.log[-4000:]}"
        return rc

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        self._reap()

    def restart(self) -> Gomail:
        if self.running:
            self.stop()
        return self.start()

    def ensure_running(self) -> Gomail:
        if not self.running:
            self._reap()
            self.start()
        return self

    # reading what was stored
    def _store_call(self, fn):
        """Run `await fn(store)` on a read view of the store, in a thread of its own (the test
        may itself be running an event loop)."""
        from gomail.store.sqlite import open_store

        result: dict = {}

        async def go():
            store = open_store(self.data, 1 << 20)
            await store.open()
            try:
                return await fn(store)
            finally:
                await store.close()

        def thread():
            try:
                result["value"] = asyncio.run(go())
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                result["error"] = e

        t = threading.Thread(target=thread)
        t.start()
        t.join(60)
        if "error" in result:
            raise result["error"]
        return result["value"]

    def messages(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """Raw bytes of every message in the folder, by UID."""
        return [raw for _uid, raw in self._store_call(lambda s: s.list_messages(address, folder))]

    def message_ids(self, address: str, folder: str = "INBOX") -> list[str]:
        return message_ids(self.messages(address, folder))

    def queue(self) -> list:
        return self._store_call(lambda s: s.list_queue())

    def sql(self, query: str, *params):
        """A SELECT on the SQLite database, for checks the store API has no call for."""
        con = sqlite3.connect(self.db_path, timeout=10)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()

    def has_table(self, name: str) -> bool:
        if not self.db_path.exists():
            return False
        return bool(self.sql("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", name))

    # clients
    def smtp(self, listener: str = "mx", **kw):
        import smtplib

        if listener == "smtps":
            s = smtplib.SMTP_SSL(
                "127.0.0.1", self.ports[listener], timeout=15, context=tls_client_context(), **kw
            )
        else:
            s = smtplib.SMTP("127.0.0.1", self.ports[listener], timeout=15, **kw)
        return s

    def submission(self, user: str = "alice@example.org", password: str = PASSWORD):
        """A logged-in smtplib session on 587 (after STARTTLS)."""
        s = self.smtp("submission")
        s.ehlo("client.test")
        s.starttls(context=tls_client_context())
        s.ehlo("client.test")
        s.login(user, password)
        return s

    def raw(self, listener: str = "mx", **kw) -> RawSMTP:
        return RawSMTP(self.ports[listener], tls=(listener == "smtps"), **kw)

    def swaks(self, *args: str, listener: str = "mx", timeout: float = 60):
        """Run swaks against a listener; returns the CompletedProcess (its transcript in
        stdout)."""
        return subprocess.run(
            [
                "swaks",
                "--server",
                "127.0.0.1",
                "--port",
                str(self.ports[listener]),
                "--helo",
                "client.test",
                "--timeout",
                "20",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def transact(
        self,
        sender: str,
        rcpts: list[str],
        data: bytes | None = None,
        listener: str = "mx",
        mail_params: str = "",
    ) -> dict:
        """One plain transaction on a raw connection, every reply recorded exactly:
        {"mail": (code, text), "rcpt": [(code, text), …], "data": (code, text) or None}.
        DATA is sent only when data is given and a recipient was accepted."""
        out: dict = {"rcpt": [], "data": None}
        with self.raw(listener) as c:
            assert c.greeting[0] == 220, c.greeting
            assert c.cmd("EHLO client.test")[0] == 250
            out["mail"] = c.cmd(f"MAIL FROM:<{sender}>{' ' + mail_params if mail_params else ''}")
            if out["mail"][0] == 250:
                for r in rcpts:
                    rcpt = r if r.startswith("<") else f"<{r}>"
                    out["rcpt"].append(c.cmd(f"RCPT TO:{rcpt}"))
                if data is not None and any(code == 250 for code, _ in out["rcpt"]):
                    out["data"] = c.data(data)
            with contextlib.suppress(OSError, ConnectionError):
                c.cmd("QUIT")
        return out

    def send(self, sender: str, rcpts: list[str], data: bytes, listener: str = "mx") -> dict:
        """smtplib.sendmail on a fresh connection; refused recipients raise."""
        with self.smtp(listener) as s:
            s.ehlo("client.test")
            return s.sendmail(sender, rcpts, data)

    def wait_for(self, predicate, timeout: float = 5.0, interval: float = 0.1):
        """Poll predicate() until it is truthy; return its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(interval)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gomail_template(tmp_path_factory) -> Path:
    """A data directory with the test domains, users and aliases, made through the CLI once."""
    root = tmp_path_factory.mktemp("template")
    g = Gomail(root)
    for domain in DOMAINS:
        g.cli("domain", "add", domain)
    for address, quota in USERS.items():
        args = ["user", "add", address, "--password-stdin"]
        if quota:
            args += ["--quota", quota]
        g.cli(*args, input=PASSWORD + "\n")
    for source, targets in ALIASES:
        g.cli("alias", "add", source, *targets)
    return g.data


@pytest.fixture
def gomail_factory(tmp_path, gomail_template):
    """make(name="srv") -> a Gomail with the test accounts, not started. Stopped at the end."""
    made: list[Gomail] = []

    def make(name: str = "srv") -> Gomail:
        g = Gomail(tmp_path / name, template=gomail_template)
        made.append(g)
        return g

    yield make
    for g in made:
        g.kill9()


@pytest.fixture
def gomail(gomail_factory) -> Gomail:
    """A started server of its own for one test."""
    return gomail_factory().start()


@contextlib.contextmanager
def module_server(tmp_path_factory, template: Path, name: str, config: dict | None = None):
    """A started server with the test accounts and ``config`` added to its settings (for a
    module fixture: ``with module_server(...) as g: yield g``); stopped at the end."""
    g = Gomail(tmp_path_factory.mktemp(name), template=template)
    g.start(config)
    try:
        yield g
    finally:
        if g.running:
            g.stop()
        g.kill9()


@pytest.fixture(scope="module")
def _module_gomail(tmp_path_factory, gomail_template):
    with module_server(tmp_path_factory, gomail_template, "shared") as g:
        yield g


@pytest.fixture
def shared_gomail(_module_gomail) -> Gomail:
    """The module's server, restarted first if an earlier test left it dead."""
    return _module_gomail.ensure_running()


def pytest_report_header(config):
    if shutil.which("swaks") is None:
        return "swaks: NOT INSTALLED (apt-get install swaks libnet-ssleay-perl)"
    return None


os.environ.setdefault("PYTHONUNBUFFERED", "1")
