"""Outbound delivery rate and peak memory of gomail beside Postfix, in the same run (issue 5).

    uv run python contrib/bench/outbound_vs_postfix.py [--messages 10000] [--domains 100]
        [--runs 3] [--only gomail,postfix] [--modes e2e,drain]

Target for gomail: at least half of Postfix's rate, peak memory under 200 MiB.

Destinations: DOMAINS domains d000.bench ... d099.bench, served by one knot (knotd) on 127.0.0.1
(MX mx.dNNN.bench, A 127.0.2.(NNN % MX_ADDRESSES + 1)).  Each of those addresses runs
Postfix's smtp-sink on one shared port, appending every transaction to a dump file (-D); the
same sinks, restarted for every run, take the mail of both MTAs.  After each run the dumps are
parsed: every message carries ``X-Bench-Seq: i``, so the check is that each i in 0..N-1 arrived
exactly once, at the MX of the domain it was addressed to.

What reaches the MTAs: message i (about --size bytes, one recipient) goes to
a(i % DOMAINS)@fwd.example, an alias on the MTA under test forwarding to rcpt@dNNN.bench:

- gomail: ``gomail run`` from this checkout (the venv's ``gomail`` script) with its stock
  pipelines; fwd.example is a gomail domain with one alias per destination domain, so the
  message is accepted on the mx listener (no AUTH, no TLS) and queued for relay.  Config:
  ``dns: {nameservers: [127.0.0.1], port: KNOT}`` and ``delivery: {port: SINK}``; every other
  delivery setting at its default (concurrency 50, per_domain 3, poll_interval 5 s).  gomail
  looks up MX and A records through knot (cached after the first look-up per domain).
- Postfix: Debian's postfix, started with ``postfix -c DIR start-fg`` from a config directory
  in the temporary directory (own queue_directory, data_directory, maillog_file; smtpd on
  127.0.0.1:PORT only; relay for mynetworks = 127.0.0.0/8; fwd.example in virtual_alias_maps).
  Postfix cannot be pointed at a DNS server on another port than 53, so instead of MX look-ups
  it gets ``transport_maps``: ``dNNN.bench smtp:[127.0.2.X]:SINK`` (no DNS at all: a small
  advantage to Postfix).  Concurrency and connection caching at Postfix's defaults
  (default_process_limit 100, 20 per destination, connection cache on demand).  The machine's
  own Postfix (/etc/postfix, its queue and its ports) is never touched.

Two modes, each timed from its start to the moment the last message reached a sink (the newest
modification time of the dump files, once all N are counted):

- e2e: ``smtp_inject.py`` (SESSIONS connections, each reused, no pipelining) sends the N
  messages to the MTA's port while it delivers: accept, queue and delivery together.
- drain: the queue is filled while delivery is held, then released; only delivery is timed.
  gomail: the N messages are written through gomail's store API (``Store.deliver`` with
  ``outbound=``, the same bytes the SMTP path queues) before ``gomail run`` starts; the time
  starts when the process is spawned (so it includes gomail's start-up, reported apart).
  Postfix: the N messages are injected over SMTP with ``smtpd_client_restrictions =
  check_client_access static:HOLD`` (straight into the hold queue), then the time starts and
  ``postsuper -H ALL; postqueue -f`` releases them.
  "first->last" is the rate between the first and the last message at the sinks, which leaves
  out start-up and release for both.

Peak memory: every 100 ms the sum of Pss (and of Rss) from /proc/PID/smaps_rollup over the MTA's
processes: gomail's one process; every Postfix process under master (master, qmgr, smtpd,
smtp, cleanup, trivial-rewrite, postlogd, ...), not the start-fg shell.  Pss is the fair sum for
Postfix's many processes sharing libraries; for gomail Pss ~ Rss.  "cpu s" is the CPU time
(user + system) the MTA's processes used in the timed window.

Everything listens on loopback; every wait is bounded; every child (knot, the sinks, the MTAs,
the injector) is killed and the temporary directory removed at exit, also on error or Ctrl-C
(kept with --keep, or when a run failed).  See contrib/bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchproc import (
    TICK,
    clean_up,
    descendants,
    exit_on_signals,
    format_table,
    free_port,
    gomail_bin,
    gomail_listeners,
    kill_all,
    log,
    report_profile,
    settle,
    spawn,
    start_pyspy,
    stop,
    tail,
    wait_greeting,
    write_json,
)
from smtp_inject import ALIAS_DOMAIN, SENDER, alias_of, destination_of, message

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parents[1] / "tests"))  # for knotbed: the knot the DNS tests start
from knotbed import KNOTD, Knot  # noqa: E402

PY = sys.executable
SMTP_SINK = "/usr/sbin/smtp-sink"
POSTFIX = "/usr/sbin/postfix"
POSTSUPER = "/usr/sbin/postsuper"
POSTQUEUE = "/usr/sbin/postqueue"
POSTFIX_DAEMONS = "/usr/lib/postfix/sbin"
MODES = ("e2e", "drain")
MTAS = ("gomail", "postfix")
SEQ_MARK = b"\nX-Bench-Seq: "


def mx_address(domain_no: int, addresses: int) -> str:
    return f"127.0.2.{domain_no % addresses + 1}"


# --------------------------------------------------------------------------------------------
# DNS: knot serving the destination zones


def start_knot(directory: Path, domains: int, addresses: int) -> Knot:
    """knot serving dNNN.bench: MX 10 mx.dNNN.bench, A mx_address() (TTL 3600: looked up once)."""
    zones = {
        f"d{n:03d}.bench": f"@ 3600 MX 10 mx\nmx 3600 A {mx_address(n, addresses)}"
        for n in range(domains)
    }
    return Knot(directory, zones).start()


# --------------------------------------------------------------------------------------------
# The destination MX hosts: one smtp-sink per address, dumping to a file each


class Sinks:
    def __init__(self, directory: Path, addresses: int) -> None:
        self.dir = directory
        self.addresses = addresses
        self.port = 0
        self.procs: list[subprocess.Popen] = []
        self.dumps = [directory / f"sink-{i + 1:03d}.dump" for i in range(addresses)]
        self._offsets = [0] * addresses
        self._carry = [b""] * addresses
        self.count = 0
        self.first_seen: float | None = None

    def start(self) -> Sinks:
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir, "nobody")  # smtp-sink writes its dumps as nobody
        for attempt in range(5):
            self.port = free_port()
            try:
                for i in range(self.addresses):
                    addr = f"127.0.2.{i + 1}"
                    argv = [SMTP_SINK, "-u", "nobody", "-D", str(self.dumps[i])]
                    argv += [f"{addr}:{self.port}", "1024"]
                    self.procs.append(spawn(argv, self.dir / "sinks.log"))
                for i, proc in enumerate(self.procs):
                    wait_one(proc, f"127.0.2.{i + 1}", self.port, self.dir / "sinks.log")
                return self
            except RuntimeError as exc:
                self.stop()
                if attempt == 4:
                    raise
                log(f"  sinks on port {self.port} failed ({exc}); another port")
        return self

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc, signal.SIGKILL, grace=2)
        self.procs.clear()

    def poll(self) -> int:
        """Messages in the dumps so far (read incrementally)."""
        for i, path in enumerate(self.dumps):
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets[i])
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self._offsets[i] += len(data)
            chunk = self._carry[i] + data
            self.count += chunk.count(SEQ_MARK)
            self._carry[i] = chunk[-(len(SEQ_MARK) - 1) :]
        if self.count and self.first_seen is None:
            self.first_seen = time.time()
        return self.count

    def last_write(self) -> float:
        return max((p.stat().st_mtime for p in self.dumps if p.exists()), default=0.0)

    def verify(self, messages: int, domains: int) -> tuple[int, str]:
        """(messages found, "" or what is wrong): each seq exactly once, at the right MX."""
        seen = [0] * messages
        problems: list[str] = []
        rcpt_re = re.compile(rb"^X-Rcpt-Args: <([^>]*)>", re.M)
        seq_re = re.compile(rb"^X-Bench-Seq: (\d+)", re.M)
        total = 0
        for i, path in enumerate(self.dumps):
            if not path.exists():
                continue
            addr = f"127.0.2.{i + 1}"
            for block in path.read_bytes().split(b"X-Client-Addr: ")[1:]:
                m_seq, m_rcpt = seq_re.search(block), rcpt_re.search(block)
                if not m_seq:
                    continue  # not a message of ours (or a torn dump)
                total += 1
                seq = int(m_seq[1])
                if seq >= messages:
                    problems.append(f"unknown seq {seq}")
                    continue
                seen[seq] += 1
                want = destination_of(seq % domains)
                got = m_rcpt[1].decode(errors="replace") if m_rcpt else "?"
                if got.lower() != want or mx_address(seq % domains, self.addresses) != addr:
                    problems.append(f"seq {seq} for {got} at {addr} (want {want})")
        missing = [i for i, n in enumerate(seen) if n == 0]
        dupes = [i for i, n in enumerate(seen) if n > 1]
        if missing:
            problems.insert(0, f"{len(missing)} missing (first {missing[:5]})")
        if dupes:
            problems.insert(0, f"{len(dupes)} delivered more than once (first {dupes[:5]})")
        return total, "; ".join(problems[:4])


def wait_one(proc: subprocess.Popen, addr: str, port: int, logfile: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"smtp-sink {addr}:{port} exited: {tail(logfile, 2)}")
        try:
            with socket.create_connection((addr, port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"smtp-sink {addr}:{port} not listening after 10 s")


# --------------------------------------------------------------------------------------------
# Memory and CPU of a process tree


def proc_stat(pid: int) -> tuple[str, float] | None:
    """(comm, CPU seconds of pid and its reaped children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.find("(") + 1 : text.rfind(")")]
    fields = text.rpartition(")")[2].split()
    return comm, sum(int(x) for x in fields[11:15]) / TICK


def smaps_rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of pid in KiB, (0, 0) when it has gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


SKIP_COMM = {"sh", "postfix-script", "postfix", "uv"}  # wrappers, not the MTA


class Sampler(threading.Thread):
    """Every `interval` s, the summed Rss and Pss of root's process tree; keeps the peaks."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="mem-sampler")
        self.root = root
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.samples = 0
        self._halt = threading.Event()

    def tree(self) -> list[int]:
        out = []
        for pid in descendants(self.root):
            st = proc_stat(pid)
            if st is not None and st[0] not in SKIP_COMM:
                out.append(pid)
        return out

    def cpu(self) -> float:
        return sum(st[1] for pid in descendants(self.root) if (st := proc_stat(pid)))

    def run(self) -> None:
        while not self._halt.is_set():
            pids = self.tree()
            rss = pss = 0
            for pid in pids:
                r, p = smaps_rollup(pid)
                rss += r
                pss += p
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            self.samples += 1
            self._halt.wait(self.interval)

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------------------------
# The MTAs


class Mta:
    name = ""
    proc: subprocess.Popen | None = None
    port = 0
    logfile: Path

    def available(self) -> str | None:
        return None

    def start(self, workdir: Path, ctx: Ctx, drain: bool) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """drain mode: let the held queue go (Postfix); gomail starts with it."""

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGTERM, grace=20)
            self.proc = None

    def left_in_queue(self) -> int | None:
        return None

    deferral_mark = ""  # what the MTA logs once per deferred delivery

    def deferrals(self) -> int:
        if not self.deferral_mark:
            return 0
        try:
            return self.logfile.read_text(errors="replace").count(self.deferral_mark)
        except OSError:
            return 0


@dataclasses.dataclass
class Ctx:
    args: argparse.Namespace
    knot: Knot
    sink_port: int = 0


class Gomail(Mta):
    name = "gomail"
    deferral_mark = ": deferred "

    def available(self) -> str | None:
        try:
            res = subprocess.run(
                [gomail_bin(), "run", "--help"], capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`gomail run --help` fails: {exc}"
        return None if res.returncode == 0 else "`gomail run --help` fails"

    def start(self, workdir: Path, ctx: Ctx, drain: bool) -> None:
        args = ctx.args
        self.data = workdir / "data"
        self.logfile = workdir / "gomail.log"
        asyncio.run(self._setup(args, drain))
        config = workdir / "config.yaml"
        delivery: dict = {"port": ctx.sink_port}
        if args.gomail_poll is not None:
            delivery["poll_interval"] = args.gomail_poll
        doc = {
            "hostname": "gomail.bench.example",
            "dns": {"nameservers": ["127.0.0.1"], "port": ctx.knot.port, "timeout": 2},
            "delivery": delivery,
        }
        config.write_text(json.dumps(doc) + "\n")  # JSON is YAML
        self.port = free_port()
        argv = [gomail_bin(), "--data", str(self.data), "--config", str(config), "run"]
        self.argv = argv + gomail_listeners(self.port)
        self.spawned = 0.0
        if not drain:
            self.launch()

    def launch(self) -> None:
        self.spawned = time.time()
        self.proc = spawn(self.argv, self.logfile, cwd=self.data.parent)
        self.ready_after = None

    def wait_ready(self) -> None:
        wait_greeting(self.proc, self.port, 60, self.logfile, interval=0.05)
        self.ready_after = time.time() - self.spawned

    def release(self) -> None:
        self.launch()

    async def _setup(self, args, drain: bool) -> None:
        from gomail.context import new_id
        from gomail.store import Delivery
        from gomail.store.sqlite import open_store

        store = open_store(self.data)
        await store.open()
        try:
            await store.add_domain(ALIAS_DOMAIN)
            for n in range(args.domains):
                await store.add_alias(alias_of(n), [destination_of(n)])
            if not drain:
                return
            # The bytes the SMTP path would queue for a forwarded message: its trace header
            # on top of what the client sent (no Return-Path: that is for local copies).
            pending = []
            for i in range(args.messages):
                rcpt, body = message(i, args.domains, args.size)
                qid = new_id()
                raw = (
                    f"Received: from inject.bench.example ([127.0.0.1])\r\n"
                    f"\tby gomail.bench.example with ESMTP id {qid}\r\n"
                    f"\tfor <{rcpt}>; Thu, 01 Jan 2026 00:00:00 +0000\r\n"
                ).encode() + body
                dest = destination_of(i % args.domains)
                pending.append(
                    store.deliver(Delivery(queue_id=qid, sender=SENDER, raw=raw, outbound=(dest,)))
                )
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await store.close()

    def left_in_queue(self) -> int | None:
        db = self.data / "gomail.db"
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                return conn.execute("SELECT count(*) FROM queue").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error:
            return None


MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix(Mta):
    name = "postfix"
    deferral_mark = "status=deferred"

    def available(self) -> str | None:
        for exe in (POSTFIX, POSTSUPER, POSTQUEUE, f"{POSTFIX_DAEMONS}/master"):
            if not os.access(exe, os.X_OK):
                return f"{exe} missing (apt-get install postfix)"
        return None

    def start(self, workdir: Path, ctx: Ctx, drain: bool) -> None:
        args = ctx.args
        base = workdir / "postfix"
        self.conf = base / "conf"
        self.queue = base / "queue"
        data = base / "data"
        for d in (self.conf, self.queue, data):
            d.mkdir(parents=True)
        shutil.chown(data, "postfix")
        self.port = free_port()
        self.logfile = base / "maillog"
        (self.conf / "virtual").write_text(
            "".join(f"{alias_of(n)} {destination_of(n)}\n" for n in range(args.domains))
        )
        (self.conf / "transport").write_text(
            "".join(
                f"d{n:03d}.bench smtp:[{mx_address(n, args.mx_addresses)}]:{ctx.sink_port}\n"
                for n in range(args.domains)
            )
        )
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": data,
            "command_directory": "/usr/sbin",
            "daemon_directory": POSTFIX_DAEMONS,
            "shlib_directory": "/usr/lib/postfix",
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix.bench.example",
            "mydomain": "bench.example",
            "myorigin": "bench.example",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "virtual_alias_domains": ALIAS_DOMAIN,
            "virtual_alias_maps": f"texthash:{self.conf / 'virtual'}",
            "transport_maps": f"texthash:{self.conf / 'transport'}",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": base,
        }
        if drain:
            main["smtpd_client_restrictions"] = "check_client_access static:HOLD"
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.conf / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        # `postfix check` makes the queue directories with their owners and modes
        res = subprocess.run(
            [POSTFIX, "-c", str(self.conf), "check"], capture_output=True, text=True, timeout=60
        )
        if res.returncode != 0:
            raise RuntimeError(f"postfix check failed: {tail(self.logfile, 3)} {res.stderr}")
        self.proc = spawn([POSTFIX, "-c", str(self.conf), "start-fg"], base / "start-fg.log")
        wait_greeting(self.proc, self.port, 60, self.logfile, interval=0.05)

    def wait_ready(self) -> None:
        pass

    def held(self) -> int:
        return sum(len(files) for _, _, files in os.walk(self.queue / "hold"))

    def release(self) -> None:
        conf = str(self.conf)
        for argv in ([POSTSUPER, "-c", conf, "-H", "ALL"], [POSTQUEUE, "-c", conf, "-f"]):
            res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} exited {res.returncode}: {res.stderr}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(
                    [POSTFIX, "-c", str(self.conf), "stop"], capture_output=True, timeout=30
                )
        super().stop()

    def left_in_queue(self) -> int | None:
        n = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            n += sum(len(files) for _, _, files in os.walk(self.queue / sub))
        return n


# --------------------------------------------------------------------------------------------
# One run


@dataclasses.dataclass
class Result:
    mta: str
    mode: str
    run: int
    ok: bool = False
    seconds: float | None = None  # start -> last message at the sinks
    rate: float | None = None
    spread: float | None = None  # first -> last message at the sinks
    spread_rate: float | None = None
    inject_seconds: float | None = None  # e2e: the injector's own time
    startup: float | None = None  # drain, gomail: spawn -> listening
    delivered: int | None = None
    left: int | None = None
    deferrals: int | None = None
    peak_pss_mib: float | None = None
    peak_rss_mib: float | None = None
    procs: int | None = None
    cpu: float | None = None
    error: str = ""


def inject(port: int, args, workdir: Path) -> subprocess.Popen:
    argv = [PY, str(HERE / "smtp_inject.py"), "--port", str(port), "--messages"]
    argv += [str(args.messages), "--domains", str(args.domains), "--sessions", str(args.sessions)]
    argv += ["--size", str(args.size)]
    return spawn(argv, workdir / "inject.log")


def inject_result(proc: subprocess.Popen, workdir: Path) -> dict:
    lines = (workdir / "inject.log").read_text(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        why = f"injector exit {proc.returncode}: {lines[-3:]}"
        return {"sent": 0, "seconds": None, "error": why}


def one_run(mta: Mta, mode: str, run: int, ctx: Ctx, root: Path, spy: Path | None = None) -> Result:
    """One timed run; with spy (a directory), py-spy records the MTA process meanwhile."""
    args = ctx.args
    spy_proc = None
    res = Result(mta.name, mode, run)
    workdir = Path(tempfile.mkdtemp(prefix=f"{mta.name}-{mode}-{run}-", dir=root))
    workdir.chmod(0o755)
    sinks = Sinks(workdir / "sinks", args.mx_addresses)
    sampler = None
    injector = None
    drain = mode == "drain"
    try:
        sinks.start()
        ctx.sink_port = sinks.port
        mta.start(workdir, ctx, drain)
        if drain and isinstance(mta, Postfix):
            # fill the hold queue over SMTP, untimed
            filler = inject(mta.port, args, workdir)
            filler.wait(timeout=args.timeout)
            got = inject_result(filler, workdir)
            if got["error"]:
                raise RuntimeError(f"filling Postfix's hold queue: {got['error']}")
            deadline = time.monotonic() + 60
            while mta.held() < args.messages and time.monotonic() < deadline:
                time.sleep(0.1)
            if mta.held() < args.messages:
                raise RuntimeError(f"only {mta.held()} of {args.messages} in the hold queue")
            if sinks.poll():
                raise RuntimeError("mail reached the sinks while held")
        if not drain:
            mta.wait_ready()
        settle(args.settle, window=0.5)
        cpu0 = 0.0
        if mta.proc is not None:
            sampler = Sampler(mta.proc.pid)
            cpu0 = sampler.cpu()
            sampler.start()
        t0 = time.time()
        if drain:
            mta.release()
            if sampler is None:  # gomail: its process starts with the release
                sampler = Sampler(mta.proc.pid)
                sampler.start()
        else:
            injector = inject(mta.port, args, workdir)
        if spy is not None:
            spy_proc = start_pyspy(mta.proc.pid, spy)
        if drain and isinstance(mta, Gomail):
            mta.wait_ready()
            res.startup = mta.ready_after
        deadline = time.monotonic() + args.timeout
        last_count, last_change = 0, time.monotonic()
        while True:
            n = sinks.poll()
            if n >= args.messages:
                break
            now = time.monotonic()
            if n != last_count:
                last_count, last_change = n, now
            if mta.proc is None or mta.proc.poll() is not None:
                raise RuntimeError(f"{mta.name} exited: {tail(mta.logfile, 3, ' | ')}")
            if injector is not None and injector.poll() not in (None, 0):
                raise RuntimeError(f"injector: {inject_result(injector, workdir)['error']}")
            if now > deadline:
                raise RuntimeError(f"{n} of {args.messages} delivered in {args.timeout:.0f}s")
            if now - last_change > args.stall:
                raise RuntimeError(f"stalled at {n} of {args.messages} for {args.stall:.0f}s")
            time.sleep(0.05)
        t_last = sinks.last_write()
        if spy_proc is not None:
            stop(spy_proc, signal.SIGINT, grace=30)  # SIGINT: py-spy writes its file
        res.seconds = t_last - t0
        res.rate = args.messages / res.seconds
        if sinks.first_seen is not None and args.messages > 1:
            res.spread = max(t_last - sinks.first_seen, 1e-3)
            res.spread_rate = (args.messages - 1) / res.spread
        sampler.halt()
        res.cpu = sampler.cpu() - cpu0
        res.peak_pss_mib = sampler.peak_pss / 1024
        res.peak_rss_mib = sampler.peak_rss / 1024
        res.procs = sampler.peak_procs
        if injector is not None:
            injector.wait(timeout=60)
            got = inject_result(injector, workdir)
            res.inject_seconds = got["seconds"]
            if got["error"]:
                raise RuntimeError(f"injector: {got['error']}")
        time.sleep(1.0)  # anything sent twice would arrive now
        sinks.poll()
        res.delivered, problem = sinks.verify(args.messages, args.domains)
        res.deferrals = mta.deferrals()
        mta.stop()
        res.left = mta.left_in_queue()
        if problem:
            raise RuntimeError(problem)
        if res.left:
            raise RuntimeError(f"{res.left} entries left in {mta.name}'s queue")
        res.ok = True
    except Exception as exc:  # one failed run must not lose the others
        res.error = f"{type(exc).__name__}: {exc}"[:400]
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.halt()
        if injector is not None:
            stop(injector, signal.SIGKILL, grace=1)
        if spy_proc is not None:
            stop(spy_proc, signal.SIGINT, grace=30)
        mta.stop()
        sinks.stop()
        if res.ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


def profile(mode: str, ctx: Ctx, root: Path) -> None:
    """One more gomail run of mode under py-spy; the summary as smtp_accept.py --profile."""
    outdir = Path(ctx.args.profile_dir).resolve()
    log(f"profiling gomail {mode} with py-spy into {outdir}")
    res = one_run(Gomail(), mode, 0, ctx, root, spy=outdir)
    log(f"  profiled run: {describe(res)}  (slowed by sampling; not in the table)")
    title = f"gomail outbound {mode}, {ctx.args.messages} messages"
    report_profile(outdir, "gomail", title)


def describe(r: Result) -> str:
    if not r.ok:
        return f"FAILED {r.error}"
    s = f"{r.rate:7.0f} msg/s {r.seconds:6.2f}s"
    if r.spread_rate:
        s += f"  first->last {r.spread_rate:.0f} msg/s"
    s += f"  peak pss {r.peak_pss_mib:.0f} MiB rss {r.peak_rss_mib:.0f} MiB ({r.procs} procs)"
    s += f"  cpu {r.cpu:.1f}s"
    if r.inject_seconds:
        s += f"  injected in {r.inject_seconds:.2f}s"
    if r.startup is not None:
        s += f"  startup {r.startup:.2f}s"
    if r.deferrals:
        s += f"  deferrals {r.deferrals}"
    return s


# --------------------------------------------------------------------------------------------
# Table


def med(values, fmt: str = "{:.0f}") -> str:
    vals = [v for v in values if v is not None]
    return fmt.format(statistics.median(vals)) if vals else "-"


def table(results: list[Result], names: list[str], modes: list[str]) -> str:
    head = ["mta", "mode", "runs", "median msg/s", "min", "max", "first->last msg/s"]
    head += ["peak PSS MiB", "peak RSS MiB", "procs", "cpu s", "delivered", "deferrals"]
    rows = [head]
    notes = []
    for mode in modes:
        for name in names:
            rs = [r for r in results if r.mta == name and r.mode == mode]
            if not rs:
                continue
            good = [r for r in rs if r.ok]
            rates = [r.rate for r in good]
            delivered = sorted({r.delivered for r in good})
            rows.append(
                [
                    name,
                    mode,
                    f"{len(good)}/{len(rs)}",
                    med(rates),
                    f"{min(rates):.0f}" if rates else "-",
                    f"{max(rates):.0f}" if rates else "-",
                    med([r.spread_rate for r in good]),
                    med([r.peak_pss_mib for r in good], "{:.1f}"),
                    med([r.peak_rss_mib for r in good], "{:.1f}"),
                    med([r.procs for r in good]),
                    med([r.cpu for r in good], "{:.1f}"),
                    "/".join(map(str, delivered)) or "-",
                    med([r.deferrals for r in good]),
                ]
            )
            notes += [f"{name} {mode} run {r.run}: {r.error}" for r in rs if r.error]
    ratios = []
    for mode in modes:
        g = [r.rate for r in results if r.ok and r.mta == "gomail" and r.mode == mode]
        p = [r.rate for r in results if r.ok and r.mta == "postfix" and r.mode == mode]
        if g and p:
            ratio = statistics.median(g) / statistics.median(p)
            ratios.append(f"{mode}: gomail/postfix rate {ratio:.2f} (target >= 0.5)")
    return format_table(rows, notes, after=ratios)


# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=10000, help="messages per run")
    p.add_argument("--domains", type=int, default=100, help="destination domains (at most 250)")
    p.add_argument(
        "--mx-addresses",
        type=int,
        default=None,
        help="loopback addresses 127.0.2.1.. for the MX hosts, one smtp-sink each "
        "(default: one per domain)",
    )
    p.add_argument("--sessions", type=int, default=20, help="injector connections")
    p.add_argument("--size", type=int, default=3000, help="approximate message size (bytes)")
    p.add_argument("--runs", type=int, default=3, help="runs per MTA and mode")
    p.add_argument("--only", default=",".join(MTAS), help="gomail,postfix")
    p.add_argument("--modes", default=",".join(MODES), help="e2e,drain")
    p.add_argument(
        "--gomail-poll", type=float, default=None, help="gomail's delivery.poll_interval"
    )
    p.add_argument("--timeout", type=float, default=None, help="s per run (default: N/20)")
    p.add_argument("--stall", type=float, default=60.0, help="fail a run after s without progress")
    p.add_argument("--settle", type=float, default=10.0, help="wait up to s for a quiet machine")
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    p.add_argument("--profile", choices=MODES, help="one more gomail run of this mode under py-spy")
    p.add_argument(
        "--profile-dir", default="/tmp/gomail-outbound-profile", help="where py-spy's output goes"
    )
    p.add_argument("--json", dest="json_out", help="also write every run's result to this file")
    args = p.parse_args()
    if args.mx_addresses is None:
        args.mx_addresses = args.domains
    if not (0 < args.domains <= 250 and 0 < args.mx_addresses <= 250 and args.messages > 0):
        p.error("--domains and --mx-addresses 1..250, --messages positive")
    if args.timeout is None:
        args.timeout = max(120.0, args.messages / 20)  # fails below 20 msg/s
    return args


def checkout() -> str:
    """The commit gomail runs from, with "-dirty" when its working tree has changes."""
    try:
        res = subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return res.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main() -> int:
    args = parse_args()
    for exe in (SMTP_SINK, KNOTD):
        if not os.access(exe, os.X_OK):
            log(f"{exe} is missing: apt-get install postfix knot (see contrib/bench/README.md)")
            return 2
    if os.geteuid() != 0:
        log("run as root: smtp-sink and Postfix drop privileges to nobody / postfix")
        return 2
    catalog = {m.name: m for m in (Gomail(), Postfix())}
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(n not in catalog for n in wanted) or any(m not in MODES for m in modes):
        log(f"unknown MTA or mode: --only {args.only} --modes {args.modes}")
        return 2
    mtas = []
    for n in wanted:
        why = catalog[n].available()
        if why:
            log(f"skipping {n}: {why}")
        else:
            mtas.append(catalog[n])
    if not mtas:
        return 1

    root = Path(tempfile.mkdtemp(prefix="gomail-outbound-"))
    root.chmod(0o755)  # smtp-sink (nobody) and Postfix (postfix) reach their directories
    results: list[Result] = []
    log(f"gomail checkout: {checkout()}")
    log(
        f"work dir {root}; {args.messages} messages of ~{args.size} bytes to {args.domains} domains"
        f" on {args.mx_addresses} MX addresses; {args.sessions} injector sessions"
    )
    exit_on_signals()
    knot = None
    try:
        knot = start_knot(root / "knot", args.domains, args.mx_addresses)
        ctx = Ctx(args, knot)
        for run in range(1, args.runs + 1):
            for mode in modes:
                for mta in mtas:
                    res = one_run(mta, mode, run, ctx, root)
                    results.append(res)
                    log(f"run {run} {mta.name:8} {mode:6} {describe(res)}")
        if args.profile:
            profile(args.profile, ctx, root)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        if knot is not None:
            knot.stop()  # knotbed's knot is not one of benchproc's children
        clean_up(root, keep=args.keep or not all(r.ok for r in results))

    if results:
        print()
        print(
            f"{args.messages} messages (~{args.size} B, 1 recipient) to {args.domains} domains on"
            f" {args.mx_addresses} smtp-sink MX addresses; injector {args.sessions} sessions;"
            f" {args.runs} run(s); {os.cpu_count()} CPUs; gomail {checkout()}"
        )
        print(table(results, [m.name for m in mtas], modes))
    write_json(args.json_out, results)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
