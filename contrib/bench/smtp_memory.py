"""What large SMTP messages cost gomail in memory (issue 10, finding 4).

Starts `gomail run` in a temporary directory on loopback ports and, in two phases, measures the
server's peak resident memory (VmHWM of /proc/PID/status, reset between phases through
/proc/PID/clear_refs) while a probe client keeps asking NOOP and times the slowest answer:

- refused: ``--refused-clients`` connections each send ``BDAT SIZE LAST`` of
  ``--refused-size`` bytes with no MAIL or RCPT (the attack: the chunk can never be taken);
- valid: ``--valid-clients`` connections each send one valid ``--valid-size`` message to a
  local mailbox at the same time, by BDAT or DATA (``--valid-mode``).

Run from the checkout:

    uv run python contrib/bench/smtp_memory.py          # 30 x 64 MiB refused, 30 x 20 MiB
    uv run python contrib/bench/smtp_memory.py --refused-clients 10 --refused-size 32M \
        --valid-clients 10 --valid-size 8M

Only loopback; every client sends a bounded amount once; all children are killed at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchproc import (  # noqa: E402
    clean_up,
    exit_on_signals,
    free_port,
    gomail_bin,
    gomail_listeners,
    log,
    spawn,
    stop,
    wait_greeting,
)

BLOCK = 1 << 20  # what a client writes at a time


def size_arg(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Set VmHWM back to the current RSS (Linux: clear_refs value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def reply(reader: asyncio.StreamReader) -> bytes:
    """One whole (possibly multi-line) reply."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return line.rstrip()


async def session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await reply(reader)
    writer.write(b"EHLO bench.example\r\n")
    await reply(reader)
    return reader, writer


async def send_bytes(writer: asyncio.StreamWriter, size: int, block: bytes) -> None:
    left = size
    while left:
        n = min(left, len(block))
        writer.write(block[:n] if n < len(block) else block)
        await writer.drain()
        left -= n


async def refused_bdat(port: int, size: int, block: bytes) -> bytes:
    reader, writer = await session(port)
    try:
        writer.write(f"BDAT {size} LAST\r\n".encode())
        await send_bytes(writer, size, block)
        return await reply(reader)
    finally:
        writer.close()


def message_block() -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=\r\n"
    return line * (BLOCK // len(line))


async def valid_message(port: int, size: int, mode: str, block: bytes, n: int) -> bytes:
    reader, writer = await session(port)
    head = (
        f"From: <bench{n}@sender.example>\r\nTo: <alice@example.org>\r\n"
        f"Subject: large {n}\r\nMessage-ID: <{n}.{time.time()}@sender.example>\r\n\r\n"
    ).encode()
    body = max(0, size - len(head))
    body -= body % len(block.split(b"\n", 1)[0] + b"\n")  # whole lines
    try:
        for cmd in (b"MAIL FROM:<bench@sender.example>", b"RCPT TO:<alice@example.org>"):
            writer.write(cmd + b"\r\n")
            r = await reply(reader)
            if not r.startswith(b"250"):
                return r
        if mode == "bdat":
            writer.write(f"BDAT {len(head) + body} LAST\r\n".encode() + head)
            await send_bytes(writer, body, block)
        else:
            writer.write(b"DATA\r\n")
            r = await reply(reader)
            if not r.startswith(b"354"):
                return r
            writer.write(head)
            await send_bytes(writer, body, block)  # no line starts with a dot
            writer.write(b".\r\n")
        return await reply(reader)
    finally:
        writer.close()


async def probe(port: int, done: asyncio.Event) -> tuple[int, float]:
    """NOOPs until done: (answers, slowest answer in seconds)."""
    reader, writer = await session(port)
    count, slowest = 0, 0.0
    try:
        while not done.is_set():
            t = time.monotonic()
            writer.write(b"NOOP\r\n")
            r = await asyncio.wait_for(reply(reader), 60)
            assert r.startswith(b"250"), r
            slowest = max(slowest, time.monotonic() - t)
            count += 1
            await asyncio.sleep(0.05)
    finally:
        writer.close()
    return count, slowest


async def phase(name: str, pid: int, port: int, clients: list) -> dict:
    reset_peak(pid)
    before = status_kib(pid, "VmRSS")
    done = asyncio.Event()
    prober = asyncio.create_task(probe(port, done))
    t = time.monotonic()
    replies = await asyncio.gather(*clients, return_exceptions=True)
    elapsed = time.monotonic() - t
    done.set()
    answers, slowest = await prober
    peak = status_kib(pid, "VmHWM")
    kinds: dict[str, int] = {}
    for r in replies:
        key = repr(r) if isinstance(r, BaseException) else r[:12].decode("ascii", "replace")
        kinds[key] = kinds.get(key, 0) + 1
    return {
        "phase": name,
        "rss_before_mib": before / 1024,
        "peak_rss_mib": peak / 1024,
        "seconds": elapsed,
        "probe_answers": answers,
        "probe_slowest_s": slowest,
        "replies": kinds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refused-clients", type=int, default=30)
    ap.add_argument("--refused-size", type=size_arg, default=64 << 20)
    ap.add_argument("--valid-clients", type=int, default=30)
    ap.add_argument("--valid-size", type=size_arg, default=20 << 20)
    ap.add_argument("--valid-mode", choices=("bdat", "data"), default="bdat")
    ap.add_argument(
        "--max-message-size",
        type=size_arg,
        default=None,
        help="the server's max_message_size (default: --valid-size + 1 MiB)",
    )
    ap.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the server's limits: section (e.g. large_messages_at_once=4)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    exit_on_signals()
    root = Path(tempfile.mkdtemp(prefix="gomail-smtp-memory-"))
    data = root / "data"
    try:
        import subprocess

        gomail = gomail_bin()
        subprocess.run(
            [gomail, "--data", str(data), "domain", "add", "example.org"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [gomail, "--data", str(data), "user", "add", "alice@example.org", "--password-stdin"],
            input=b"bench-password\n",
            check=True,
            capture_output=True,
        )
        max_size = args.max_message_size or args.valid_size + (1 << 20)
        config = root / "gomail.yaml"
        config.write_text(
            f"hostname: mx.bench.example\nmax_message_size: {max_size}\n"
            "dns: {nameservers: [127.0.0.1], port: 9, timeout: 1}\n"
        )
        if args.limit:
            lines = [
                f"  {name}: {value}" for name, _, value in (i.partition("=") for i in args.limit)
            ]
            config.write_text(config.read_text() + "limits:\n" + "\n".join(lines) + "\n")
        port = free_port()
        logfile = root / "server.log"
        proc = spawn(
            [gomail, "--data", str(data), "--config", str(config), "run", *gomail_listeners(port)],
            logfile,
        )
        wait_greeting(proc, port, 30, logfile)
        log(f"gomail pid {proc.pid}, mx 127.0.0.1:{port}, max_message_size {max_size}")
        block = message_block()

        async def run() -> list[dict]:
            out = []
            if args.refused_clients:
                clients = [
                    refused_bdat(port, args.refused_size, block)
                    for _ in range(args.refused_clients)
                ]
                out.append(
                    await phase(
                        f"{args.refused_clients} x BDAT {args.refused_size >> 20} MiB, no MAIL",
                        proc.pid,
                        port,
                        clients,
                    )
                )
            if args.valid_clients:
                clients = [
                    valid_message(port, args.valid_size, args.valid_mode, block, n)
                    for n in range(args.valid_clients)
                ]
                out.append(
                    await phase(
                        f"{args.valid_clients} x {args.valid_mode.upper()} "
                        f"{args.valid_size >> 20} MiB valid",
                        proc.pid,
                        port,
                        clients,
                    )
                )
            return out

        results = asyncio.run(run())
        for r in results:
            print(
                f"{r['phase']}: RSS before {r['rss_before_mib']:.0f} MiB, peak "
                f"{r['peak_rss_mib']:.0f} MiB, {r['seconds']:.1f} s; probe: "
                f"{r['probe_answers']} NOOPs, slowest {r['probe_slowest_s'] * 1000:.0f} ms; "
                f"replies {r['replies']}"
            )
        stop(proc)
    finally:
        clean_up(root, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
