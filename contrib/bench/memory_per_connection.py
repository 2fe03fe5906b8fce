"""What one idle connection costs gomail in memory, for each kind of connection.

    uv run python contrib/bench/memory_per_connection.py [--connections 500] [--keep]

Starts a real `gomail run` in a temporary directory, on 127.0.0.1 only, with one user. For
each kind of connection it opens CONNECTIONS of them and leaves them idle:

    smtp-plain   port 25 (mx): greeting, EHLO
    smtp-tls     port 465 (implicit TLS): handshake, greeting, EHLO
    imap-plain   port 143: greeting, LOGIN, SELECT INBOX
    imap-tls     port 993 (implicit TLS): handshake, greeting, LOGIN, SELECT INBOX

and prints the growth of the server's RSS and PSS (/proc/PID/status, smaps_rollup) per
connection, measured after the connections are open against just before. All stay open until
the end (the total is printed too), so that no kind reuses memory freed by another.
The server's limits are raised for the run (one client address opens all the connections).
Every wait is bounded and the server is stopped at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchproc import exit_on_signals, free_port, kill_all, log, spawn, stop, tail

BIN = Path(sys.executable).parent
USER = "bench@example.org"
PASSWORD = "bench-pass-1"
IO_TIMEOUT = 30.0
START_TIMEOUT = 60.0
SETTLE = 1.5  # seconds between opening the connections and measuring
OPENING_AT_ONCE = 50
KINDS = ("smtp-plain", "smtp-tls", "imap-plain", "imap-tls")


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of the process, KiB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One SMTP reply (its last line)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def read_tagged(reader: asyncio.StreamReader, tag: bytes) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line.startswith(tag + b" "):
            return line


async def open_one(kind: str, ports: dict[str, int]) -> asyncio.StreamWriter:
    tls = client_tls() if kind.endswith("tls") else None
    name = {"smtp-plain": "mx", "smtp-tls": "smtps", "imap-plain": "imap", "imap-tls": "imaps"}
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", ports[name[kind]], ssl=tls, server_hostname="localhost" if tls else None
    )
    if kind.startswith("smtp"):
        assert (await read_reply(reader)).startswith(b"220")
        writer.write(b"EHLO client.bench\r\n")
        assert (await read_reply(reader)).startswith(b"250")
    else:
        assert (await reader.readline()).startswith(b"* OK")
        writer.write(f"a LOGIN {USER} {PASSWORD}\r\n".encode())
        assert (await read_tagged(reader, b"a")).startswith(b"a OK"), "LOGIN refused"
        writer.write(b"b SELECT INBOX\r\n")
        assert (await read_tagged(reader, b"b")).startswith(b"b OK"), "SELECT refused"
    writer._bench_reader = reader  # type: ignore[attr-defined] - keep the reader alive
    return writer


async def open_many(kind: str, count: int, ports: dict[str, int]) -> list[asyncio.StreamWriter]:
    limit = asyncio.Semaphore(OPENING_AT_ONCE)

    async def one() -> asyncio.StreamWriter:
        async with limit:
            return await asyncio.wait_for(open_one(kind, ports), IO_TIMEOUT)

    return await asyncio.gather(*(one() for _ in range(count)))


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.close()
    for w in writers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.wait_closed(), 5)


async def measure(pid: int, ports: dict[str, int], count: int) -> list[tuple[str, float, float]]:
    """Each kind's connections stay open while the next kind's are measured: memory freed by
    closed connections would be reused by the next kind and hide its cost."""
    rows = []
    held: list[asyncio.StreamWriter] = []
    try:
        for kind in KINDS:
            await close_all(await open_many(kind, 2, ports))  # warm-up: imports, caches
            await asyncio.sleep(SETTLE)
            before = memory_kib(pid)
            started = time.monotonic()
            held += await open_many(kind, count, ports)
            opened = time.monotonic() - started
            await asyncio.sleep(SETTLE)
            after = memory_kib(pid)
            rss, pss = ((a - b) / count for a, b in zip(after, before, strict=True))
            log(f"  {kind}: {count} open in {opened:.1f}s, RSS {before[0]}->{after[0]} KiB")
            rows.append((kind, rss, pss))
        log(f"  all {len(held)} open: RSS {after[0] / 1024:.1f} MiB, PSS {after[1] / 1024:.1f} MiB")
    finally:
        await close_all(held)
    return rows


def gomail(data: Path, config: Path, *args: str, stdin: str | None = None) -> None:
    cmd = [str(BIN / "gomail"), "--data", str(data), "--config", str(config), *args]
    subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True, timeout=120)


def wait_listening(ports: dict[str, int], proc: subprocess.Popen, logfile: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = set(ports)
    while pending:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"gomail run did not start:\n{tail(logfile, 30)}")
        for name in list(pending):
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", ports[name])) == 0:
                    pending.discard(name)
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()
    count = max(1, min(args.connections, 5000))
    exit_on_signals()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100 <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 100), hard))
    root = Path(tempfile.mkdtemp(prefix="gomail-mem-"))
    ports = {name: free_port() for name in ("mx", "submission", "smtps", "imap", "imaps")}
    data, config, logfile = root / "data", root / "gomail.yaml", root / "server.log"
    limits = {
        "connections": count + 100,
        "connections_per_ip": count + 100,
        "imap_sessions_per_user_ip": count + 100,
    }
    config.write_text(
        "hostname: mx.bench.test\n"
        "dns: {nameservers: [127.0.0.1], port: 9, timeout: 1}\n"
        f"limits: {limits}\n".replace("'", "")
    )
    try:
        gomail(data, config, "domain", "add", "example.org")
        gomail(data, config, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        listen = [a for n, p in ports.items() for a in ("--listen", f"{n}=127.0.0.1:{p}")]
        cmd = [str(BIN / "gomail"), "--data", str(data), "--config", str(config), "run", *listen]
        proc = spawn(cmd, logfile)
        wait_listening(ports, proc, logfile)
        log(f"gomail run pid {proc.pid}; {count} connections of each kind")
        idle = memory_kib(proc.pid)
        rows = asyncio.run(measure(proc.pid, ports, count))
        stop(proc)
        print(f"\nserver before any connection: RSS {idle[0] / 1024:.1f} MiB, "
              f"PSS {idle[1] / 1024:.1f} MiB; {count} connections of each kind")  # fmt: skip
        print(f"{'connection':<12} {'RSS KiB/conn':>13} {'PSS KiB/conn':>13}")
        for kind, rss, pss in rows:
            print(f"{kind:<12} {rss:>13.1f} {pss:>13.1f}")
    finally:
        kill_all()
        if args.keep:
            log(f"run directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
