"""gomail's IMAP server beside Dovecot, on the same machine in the same run (issue 4).

    uv run python contrib/bench/imap_vs_dovecot.py [--messages 10000] [--runs 3]
        [--idle 1000] [--only gomail,dovecot] [--keep] [--json FILE]

Both servers get a folder (INBOX) of MESSAGES small messages: Dovecot as Maildir files written
directly (then one SELECT indexes them), gomail through its store's ``append_many`` in batches,
each message with the ``MessageMeta`` that delivery would compute (``gomail.imap.meta``), so
FETCH ENVELOPE and SEARCH read what they would read after SMTP delivery.  Then a raw-socket
client times, on each server, after one untimed warm-up pass:

    LOGIN+SELECT          connect, greeting, LOGIN, SELECT INBOX
    UID FETCH 1:* (FLAGS)
    FETCH 1:* (ENVELOPE)
    UID SEARCH HEADER Subject <word>     (a word in 1% of the subjects)
    SEARCH BODY <word>                   (a word in 2% of the bodies)
    FETCH 1:1000 BODY.PEEK[]

RUNS times, interleaved (run 1 of each server, then run 2 ...), and prints the medians; then the
memory of IDLE connections: IDLE_COUNT connections logged in, INBOX selected, in IDLE, once
plain and once over implicit TLS, measured as the growth of PSS (/proc/PID/smaps_rollup) of the
gomail process, and of Dovecot's whole process tree (master, imap, imap-login, auth ...; Dovecot
runs a process per IMAP connection, and a login process per TLS connection as its TLS proxy).

The script installs nothing: Dovecot comes from Debian's dovecot-imapd (see README.md), started
here with a config of its own in a temporary directory, on 127.0.0.1 only.  Every wait is
bounded and every child process is killed at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from email.utils import format_datetime
from pathlib import Path

from benchproc import descendants, free_port, kill_all, log, spawn, stop, tail

PY = sys.executable
BIN = Path(PY).parent
USER = "bench@example.org"
DOMAIN = "example.org"
PASSWORD = "bench-pass-1"
SUBJECT_WORD = "quarterly"  # in 1% of the subjects
BODY_WORD = "zeppelin"  # in 2% of the bodies
IO_TIMEOUT = 300.0  # one command's response, at most
START_TIMEOUT = 60.0
FILLER = (  # noqa: SIM905 - a sentence of words reads better than a column of strings
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa romeo sierra tango uniform victor whiskey xray yankee lunch meeting budget "
    "invoice travel report draft review summary agenda minutes notes schedule ticket update"
).split()
NAMES = ("Ann Lee", "Bo Chen", "Cleo Park", "Dan Roe", "Eve Moss", "Finn Hart", "Gia Tran")

# --------------------------------------------------------------------------------------------
# child processes


def pss_kib(pid: int) -> int:
    """Proportional set size of one process, KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_pss_kib(pid: int) -> tuple[int, int]:
    """(summed PSS, number of processes) of pid and its descendants."""
    pids = descendants(pid)
    return sum(pss_kib(p) for p in pids), len(pids)


def wait_greeting(proc: subprocess.Popen, port: int, logfile: Path, tls=False) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"exited {proc.returncode} while starting: {tail(logfile, 5, ' | ')}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                if tls:
                    s = client_tls().wrap_socket(s, server_hostname="localhost")  # noqa: PLW2901
                banner = s.recv(512)
            if banner.startswith(b"* OK"):
                return
            last = f"greeting {banner[:80]!r}"
            if banner.startswith(b"* BYE"):
                break
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"no IMAP greeting on port {port}: {last}; log: {tail(logfile, 5, ' | ')}")


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------------------------
# the messages


def make_message(i: int) -> tuple[bytes, float, bool, bool]:
    """(raw, date as Unix time, seen, flagged) of message i: small, deterministic."""
    when = 1_735_689_600 + i * 617  # from 2025-01-01, ~10 minutes apart
    words = [FILLER[(i * 7 + k * 13) % len(FILLER)] for k in range(40)]
    if i % 50 == 3:
        words[17] = BODY_WORD
    lines = [" ".join(words[k : k + 10]) for k in range(0, 40, 10)]
    subject_word = SUBJECT_WORD if i % 100 == 7 else FILLER[(i * 3) % len(FILLER)]
    name = NAMES[i % len(NAMES)]
    mailbox = name.split()[0].lower()
    raw = (
        f"From: {name} <{mailbox}@sender.example>\r\n"
        f"To: Bench <{USER}>\r\n"
        f"Subject: {subject_word} item {i}\r\n"
        f"Date: {format_datetime(_utc(when))}\r\n"
        f"Message-ID: <bench-{i}@sender.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n" + "\r\n".join(lines) + "\r\n"
    ).encode()
    return raw, float(when), i % 3 == 0, i % 10 == 0


def _utc(ts: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC)


# --------------------------------------------------------------------------------------------
# the servers


class Target:
    name = ""

    def __init__(self, root: Path, args):
        self.root = root / self.name
        self.root.mkdir(parents=True)
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.tls_port = free_port()
        self.logfile = self.root / "server.log"

    def setup(self) -> None: ...
    def restart(self) -> None:
        """Stop the server and start it again on the same data (gomail: a new process)."""

    def memory_kib(self) -> tuple[int, int]:
        raise NotImplementedError

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)


class Dovecot(Target):
    name = "dovecot"

    def setup(self) -> None:
        if shutil.which("dovecot") is None and not Path("/usr/sbin/dovecot").exists():
            raise RuntimeError("dovecot not installed (apt-get install dovecot-imapd)")
        d = self.root
        os.chmod(d.parent, 0o755)  # the mail user below must reach its home
        os.chmod(d, 0o755)
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        else:
            uid, gid = os.getuid(), os.getgid()
        home = d / "home"
        maildir = home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
            (maildir / ".Empty" / sub).mkdir(parents=True)
        t0 = time.monotonic()
        for i in range(self.args.messages):
            raw, when, seen, flagged = make_message(i)
            flags = ("F" if flagged else "") + ("S" if seen else "")
            path = maildir / "cur" / f"{int(when)}.M{i}P1.bench,S={len(raw)}:2,{flags}"
            path.write_bytes(raw)
            os.utime(path, (when, when))
        log(f"  dovecot: {self.args.messages} Maildir files in {time.monotonic() - t0:.1f}s")
        for p in [home, *home.rglob("*")]:
            os.chown(p, uid, gid)
        (d / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{home}::\n")
        cert, key = d / "cert.pem", d / "key.pem"
        tls = "no"
        if shutil.which("openssl"):
            res = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
                + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                capture_output=True,
                timeout=60,
            )
            tls = "yes" if res.returncode == 0 else "no"
        if tls == "no":
            log("  dovecot: no openssl to make a certificate: TLS rows skipped")
            self.tls_port = None
        limit = max(2 * self.args.idle + 200, 1000)
        conf = f"""
instance_name = gomail-bench-{os.getpid()}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = {tls}
{f"ssl_cert = <{cert}" if tls == "yes" else ""}
{f"ssl_key = <{key}" if tls == "yes" else ""}
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
mail_location = maildir:~/Maildir
first_valid_uid = {min(uid, 1)}
first_valid_gid = {min(gid, 1)}
default_process_limit = {limit}
default_client_limit = {limit * 2}
mail_max_userip_connections = {limit}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port or 0}
    ssl = yes
  }}
  process_limit = {limit}
}}
service imap {{
  process_limit = {limit}
}}
service anvil {{
  client_limit = {limit * 3}
}}
service auth {{
  client_limit = {limit * 3}
}}
"""
        (d / "dovecot.conf").write_text(conf)
        dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.proc = spawn([dovecot, "-F", "-c", str(d / "dovecot.conf")], self.logfile, cwd=d)
        wait_greeting(self.proc, self.port, self.logfile)

    def memory_kib(self) -> tuple[int, int]:
        return tree_pss_kib(self.proc.pid)


class Gomail(Target):
    name = "gomail"

    def gomail_bin(self) -> str:
        exe = BIN / "gomail"
        return str(exe) if exe.exists() else (shutil.which("gomail") or str(exe))

    def cli(self, *args: str, stdin: str | None = None) -> str:
        res = subprocess.run(
            [self.gomail_bin(), "--data", str(self.data), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if res.returncode != 0:
            raise RuntimeError(f"gomail {' '.join(args)}: {(res.stderr or res.stdout)[-300:]}")
        return res.stdout

    def setup(self) -> None:
        self.data = self.root / "data"
        self.cli("domain", "add", DOMAIN)
        self.cli("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        t0 = time.monotonic()
        asyncio.run(self.fill())
        log(f"  gomail: {self.args.messages} messages appended in {time.monotonic() - t0:.1f}s")
        self.start()

    def restart(self) -> None:
        stop(self.proc)
        self.start()

    def start(self) -> None:
        # One user at one address opens every connection: raise the limits that stop that
        # (as the Dovecot config raises mail_max_userip_connections).
        most = max(self.args.idle, 1) + 100
        config = self.root / "gomail.yaml"
        config.write_text(
            f"limits: {{connections: {most}, connections_per_ip: {most}, "
            f"imap_sessions_per_user_ip: {most}}}\n"
        )
        argv = [self.gomail_bin(), "--data", str(self.data), "--config", str(config), "run"]
        listen = {
            "imap": self.port,
            "imaps": self.tls_port,
            "mx": free_port(),
            "submission": free_port(),
            "smtps": free_port(),
        }
        for name, port in listen.items():
            argv += ["--listen", f"{name}=127.0.0.1:{port}"]
        self.proc = spawn(argv, self.logfile, cwd=self.root)
        wait_greeting(self.proc, self.port, self.logfile)

    async def fill(self) -> None:
        """The folder through the store's append_many, every message with its MessageMeta."""
        from gomail.store import AppendMessage
        from gomail.store.sqlite import open_store

        try:
            from gomail.imap.meta import message_meta
        except ImportError as exc:
            raise RuntimeError(f"gomail.imap.meta is not there yet ({exc})") from None
        store = open_store(self.data)
        await store.open()
        try:
            batch: list = []
            for i in range(self.args.messages):
                raw, when, seen, flagged = make_message(i)
                flags = (("\\Seen",) if seen else ()) + (("\\Flagged",) if flagged else ())
                batch.append(
                    AppendMessage(raw, flags=flags, internal_date=when, meta=message_meta(raw))
                )
                if len(batch) == 500:
                    await store.append_many(USER, "INBOX", batch)
                    batch = []
            if batch:
                await store.append_many(USER, "INBOX", batch)
            await store.create_folder(USER, "Empty")
        finally:
            await store.close()

    def memory_kib(self) -> tuple[int, int]:
        return pss_kib(self.proc.pid), 1


# --------------------------------------------------------------------------------------------
# the timing client


class ImapError(Exception):
    pass


class Client:
    """A blocking raw-socket IMAP client that reads each response to its tagged line."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.n = 0
        greeting = self._until(lambda b: b.find(b"\r\n"))
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting {greeting[:200]!r}")

    def _until(self, find) -> bytes:
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            end = find(self.buf)
            if end >= 0:
                out = bytes(self.buf[: end + 2])
                del self.buf[: end + 2]
                return out
            if time.monotonic() > deadline:
                raise ImapError(f"no complete response within {IO_TIMEOUT}s")
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ImapError(f"connection closed; got {bytes(self.buf[-300:])!r}")
            self.buf += chunk

    def cmd(self, line: str) -> bytes:
        """Send one command, return its whole response (untagged lines and the tagged one).
        The messages here never hold a line that starts with one of our tags."""
        self.n += 1
        tag = b"b%d " % self.n
        needle = b"\r\n" + tag
        self.sock.sendall(tag + line.encode() + b"\r\n")
        scanned = [0]

        def find(buf: bytearray) -> int:
            if buf.startswith(tag):
                start = 0
            else:
                i = buf.find(needle, max(0, scanned[0] - len(needle)))
                if i < 0:
                    scanned[0] = len(buf)
                    return -1
                start = i + 2
            return buf.find(b"\r\n", start)

        resp = self._until(find)
        i = resp.rfind(b"\r\n", 0, len(resp) - 2)
        last = resp[i + 2 :] if i >= 0 else resp
        if not last.startswith(tag + b"OK"):
            raise ImapError(f"{line!r}: {last.strip()[:300]!r}")
        return resp

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"z LOGOUT\r\n")
        with contextlib.suppress(OSError):
            self.sock.close()


def count_fetch(resp: bytes) -> int:
    return len(re.findall(rb"^\* \d+ FETCH ", resp, re.M))


def count_search(resp: bytes) -> int:
    m = re.search(rb"^\* SEARCH([ \d]*)\r$", resp, re.M)
    return len(m.group(1).split()) if m else -1


OPERATIONS = (
    ("LOGIN+SELECT", None, None),
    ("UID FETCH 1:* (FLAGS)", "UID FETCH 1:* (FLAGS)", count_fetch),
    ("FETCH 1:* (ENVELOPE)", "FETCH 1:* (ENVELOPE)", count_fetch),
    (
        f"UID SEARCH HEADER Subject {SUBJECT_WORD}",
        f"UID SEARCH HEADER Subject {SUBJECT_WORD}",
        count_search,
    ),
    (f"SEARCH BODY {BODY_WORD}", f"SEARCH BODY {BODY_WORD}", count_search),
    ("FETCH 1:1000 BODY.PEEK[]", "FETCH 1:1000 BODY.PEEK[]", count_fetch),
)


def one_pass(
    target: Target, operations: bool = True
) -> tuple[dict[str, tuple[float, int | None]], dict[str, str]]:
    """Every operation once: ({operation: (milliseconds, hits or responses)}, {operation:
    error}). An operation that fails is reported and the pass goes on, on a new connection."""
    out: dict[str, tuple[float, int | None]] = {}
    errors: dict[str, str] = {}

    def connect() -> tuple[Client, bytes]:
        c = Client(target.port)
        try:
            c.cmd(f'LOGIN "{USER}" "{PASSWORD}"')
            return c, c.cmd("SELECT INBOX")
        except BaseException:
            c.close()
            raise

    c: Client | None = None
    t0 = time.perf_counter()
    try:
        c, resp = connect()
        exists = re.search(rb"^\* (\d+) EXISTS", resp, re.M)
        out["LOGIN+SELECT"] = (
            (time.perf_counter() - t0) * 1000,
            int(exists.group(1)) if exists else None,
        )
    except (ImapError, OSError) as exc:
        errors["LOGIN+SELECT"] = str(exc)
    try:
        for name, line, count in OPERATIONS[1:] if operations else ():
            try:
                if c is None:
                    c, _ = connect()
                t0 = time.perf_counter()
                resp = c.cmd(line)
                out[name] = ((time.perf_counter() - t0) * 1000, count(resp))
            except (ImapError, OSError) as exc:
                errors[name] = str(exc)
                if c is not None:
                    c.close()
                c = None
    finally:
        if c is not None:
            c.close()
    return out, errors


# --------------------------------------------------------------------------------------------
# idle connections


async def open_idlers(port: int, tls: bool, count: int, folder: str, concurrency: int = 50):
    """count connections, each logged in, INBOX selected and in IDLE. Returns the writers
    and how many failed (with the first error)."""
    sem = asyncio.Semaphore(concurrency)
    ctx = client_tls() if tls else None
    writers: list[asyncio.StreamWriter] = []
    errors: list[str] = []

    async def expect(reader, tag: bytes | None) -> bytes:
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            if tag is None or line.startswith(tag):
                return line

    async def one() -> None:
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        "127.0.0.1", port, ssl=ctx, server_hostname="localhost" if tls else None
                    ),
                    60,
                )
                writers.append(writer)

                async def session() -> None:
                    greeting = await expect(reader, None)
                    if not greeting.startswith(b"* OK"):
                        raise ImapError(greeting[:100])
                    writer.write(f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
                    if not (await expect(reader, b"a ")).startswith(b"a OK"):
                        raise ImapError("LOGIN refused")
                    writer.write(f"b SELECT {folder}\r\n".encode())
                    if not (await expect(reader, b"b ")).startswith(b"b OK"):
                        raise ImapError("SELECT refused")
                    writer.write(b"c IDLE\r\n")
                    await expect(reader, b"+")

                await asyncio.wait_for(session(), 120)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(one() for _ in range(count)))
    return writers, errors


async def close_writers(writers) -> None:
    for w in writers:
        with contextlib.suppress(Exception):
            w.close()
    await asyncio.sleep(0)


MEMORY_CASES = (  # (row, TLS, folder selected)
    ("plain", False, "INBOX"),
    ("TLS", True, "INBOX"),
    ("plain, empty folder", False, "Empty"),
)


def idle_memory(target: Target, tls: bool, count: int, settle: float, folder: str) -> dict:
    port = target.tls_port if tls else target.port
    if port is None:
        return {"error": "no TLS"}
    target.restart()  # memory freed by earlier connections would be reused, hiding the cost
    one_pass(target, operations=False)  # lazy imports, caches: not the connections' cost
    time.sleep(settle)
    before, procs_before = target.memory_kib()

    async def go():
        writers, errors = await open_idlers(port, tls, count, folder)
        await asyncio.sleep(settle)
        after, procs_after = target.memory_kib()
        await close_writers(writers)
        return after, procs_after, len(writers) - len(errors), errors

    t0 = time.monotonic()
    after, procs_after, opened, errors = asyncio.run(go())
    res = {
        "before_kib": before,
        "after_kib": after,
        "connections": opened,
        "processes": (procs_before, procs_after),
        "seconds_to_open": round(time.monotonic() - t0 - settle, 1),
        "kib_per_connection": (after - before) / opened if opened else None,
    }
    if errors:
        res["errors"] = len(errors)
        res["first_error"] = errors[0]
    time.sleep(settle)  # let the server reap them before the next measurement
    return res


# --------------------------------------------------------------------------------------------
# main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--idle", type=int, default=1000, help="IDLE connections (0: skip)")
    p.add_argument("--only", default="gomail,dovecot")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before memory readings")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", type=Path, help="write every measurement here")
    return p.parse_args()


def fmt_ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def main() -> int:
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.idle + 1000))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    root = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    classes = {"gomail": Gomail, "dovecot": Dovecot}
    targets: list[Target] = []
    errors: dict[str, str] = {}
    try:
        for name in names:
            log(f"setting up {name} ...")
            t = classes[name](root, args)
            try:
                t.setup()
                targets.append(t)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                errors[name] = str(exc)
                log(f"  {name}: {exc}")
                t.close()

        timings: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
        hits: dict[str, dict[str, int | None]] = {t.name: {} for t in targets}
        cold: dict[str, dict[str, float]] = {t.name: {} for t in targets}
        op_errors: dict[str, str] = {}
        for run in range(args.runs + 1):  # run 0 warms up (Dovecot indexes and caches)
            for t in targets:
                if t.name in errors:
                    continue
                res, failed = one_pass(t)
                for op, err in failed.items():
                    op_errors.setdefault(f"{t.name}: {op}", f"run {run}: {err}"[:400])
                    log(f"  {t.name}: {op}: {err[:300]}")
                summary = ", ".join(f"{k} {v[0]:.0f}ms" for k, v in res.items())
                log(f"  {'warm-up' if run == 0 else f'run {run}'} {t.name}: {summary}")
                for op, (ms, n) in res.items():
                    if run:
                        timings[t.name].setdefault(op, []).append(ms)
                    else:
                        cold[t.name][op] = ms
                    hits[t.name][op] = n

        memory: dict[str, dict[str, dict]] = {t.name: {} for t in targets}
        if args.idle:
            for t in targets:
                for kind, tls, folder in MEMORY_CASES:
                    log(f"  {t.name}: {args.idle} IDLE connections ({kind}) ...")
                    try:
                        memory[t.name][kind] = idle_memory(t, tls, args.idle, args.settle, folder)
                    except (OSError, RuntimeError) as exc:
                        memory[t.name][kind] = {"error": str(exc)}
                    log(f"    {memory[t.name][kind]}")
        for t in targets:
            t.close()

        errors.update(op_errors)
        print_table(args, names, timings, cold, hits, memory, errors)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "timings_ms": timings,
                        "warm_up_ms": cold,
                        "hits": hits,
                        "memory": memory,
                        "errors": errors,
                    },
                    indent=2,
                )
            )
    finally:
        for t in targets:
            t.close()
        kill_all(signal.SIGTERM, 3)
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if not errors else 1


def print_table(args, names, timings, cold, hits, memory, errors) -> None:
    g, d = "gomail", "dovecot"
    print(
        f"\n{args.messages} messages in INBOX; median of {args.runs} run(s) after a warm-up; "
        f"{os.cpu_count()} CPUs"
    )
    head = (
        f"{'operation':<36} {'gomail ms':>10} {'dovecot ms':>11} {'ratio':>6}  "
        f"{'hits g/d':>11}  {'warm-up ms g/d':>15}"
    )
    print(head)
    print("-" * len(head))
    for op, _, _ in OPERATIONS:
        gv = timings.get(g, {}).get(op, [])
        dv = timings.get(d, {}).get(op, [])
        ratio = (
            f"{statistics.median(gv) / statistics.median(dv):.2f}"
            if gv and dv and statistics.median(dv) > 0
            else "-"
        )
        gh, dh = hits.get(g, {}).get(op), hits.get(d, {}).get(op)
        gc, dc = cold.get(g, {}).get(op), cold.get(d, {}).get(op)
        warm = f"{gc:.0f}" if gc is not None else "-"
        warm += "/" + (f"{dc:.0f}" if dc is not None else "-")
        print(
            f"{op:<36} {fmt_ms(gv):>10} {fmt_ms(dv):>11} {ratio:>6}  {f'{gh}/{dh}':>11}  {warm:>15}"
        )
    if args.idle:
        print()
        print(
            f"{'memory, ' + str(args.idle) + ' IDLE connections':<36} {'gomail':>10} "
            f"{'dovecot':>11} {'ratio':>6}  (KiB PSS per connection)"
        )
        for kind, _, _ in MEMORY_CASES:
            gm = memory.get(g, {}).get(kind, {}).get("kib_per_connection")
            dm = memory.get(d, {}).get(kind, {}).get("kib_per_connection")
            ratio = f"{gm / dm:.2f}" if gm is not None and dm else "-"
            print(
                f"{'  ' + kind:<36} {f'{gm:.1f}' if gm is not None else '-':>10} "
                f"{f'{dm:.1f}' if dm is not None else '-':>11} {ratio:>6}"
            )
        for name in names:
            for kind, m in memory.get(name, {}).items():
                if "errors" in m or "error" in m:
                    print(f"  {name} {kind}: {m.get('errors', '')} failed: {m.get('first_error')}")
    for name, err in errors.items():
        print(f"{name}: {err}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        kill_all(signal.SIGTERM, 3)
        sys.exit(130)
    finally:
        kill_all(signal.SIGTERM, 3)
