"""The load generator of outbound_vs_postfix.py: numbered messages to numbered recipients.

    python smtp_inject.py --port P --messages N --domains D [--sessions S] [--size BYTES]

SESSIONS connections to 127.0.0.1:P, each kept for the next message (like smtp-source -d):
EHLO once, then MAIL FROM, RCPT TO, DATA, the message, one command at a time (no pipelining),
QUIT at the end.  Message i (0-based) goes to ``message(i, D)``'s recipient, aNNN@fwd.example
with NNN = i mod D, carries ``X-Bench-Seq: i`` and is about SIZE bytes.  Any reply other than
the expected one stops the run with exit status 1.  The last line on stdout is JSON:
``{"sent": N, "seconds": S, "error": null | "..."}``.

smtp-source cannot vary the recipient, hence this script; it is a plain asyncio client so that
it costs little CPU next to the servers it drives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

SENDER = "bench@src.example"
ALIAS_DOMAIN = "fwd.example"
FILLER = "The quick brown fox jumps over the lazy dog; outbound delivery benchmark filler text.\r\n"


def alias_of(domain_no: int) -> str:
    """The address on the MTA under test that forwards to destination domain domain_no."""
    return f"a{domain_no:03d}@{ALIAS_DOMAIN}"


def destination_of(domain_no: int) -> str:
    """Where alias_of(domain_no) forwards to."""
    return f"rcpt@d{domain_no:03d}.bench"


def message(i: int, domains: int, size: int) -> tuple[str, bytes]:
    """(recipient, message bytes with CRLF line ends, not dot-stuffed: no line starts with '.')."""
    rcpt = alias_of(i % domains)
    head = (
        f"From: Bench <{SENDER}>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: outbound benchmark message {i}\r\n"
        f"Message-ID: <bench.{i}@src.example>\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        f"X-Bench-Seq: {i}\r\n"
        "\r\n"
    )
    lines = max(1, (size - len(head)) // len(FILLER))
    return rcpt, (head + FILLER * lines).encode()


class Failed(Exception):
    pass


async def session(port: int, todo: list[int], args) -> int:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port), args.timeout
    )

    async def reply(expect: str, what: str) -> None:
        while True:
            line = await asyncio.wait_for(reader.readline(), args.timeout)
            if not line:
                raise Failed(f"{what}: connection closed")
            if line[3:4] != b"-":
                break
        if not line.startswith(expect.encode()):
            raise Failed(f"{what}: {line.decode(errors='replace').strip()}")

    async def command(text: str, expect: str) -> None:
        writer.write(text.encode() + b"\r\n")
        await reply(expect, text.split(":")[0])

    sent = 0
    try:
        await reply("220", "greeting")
        await command("EHLO inject.bench.example", "250")
        while todo:
            i = todo.pop()
            rcpt, body = message(i, args.domains, args.size)
            await command(f"MAIL FROM:<{SENDER}>", "250")
            await command(f"RCPT TO:<{rcpt}>", "250")
            await command("DATA", "354")
            writer.write(body + b".\r\n")
            await reply("250", f"end of data of message {i}")
            sent += 1
        await command("QUIT", "221")
    finally:
        writer.close()
    return sent


async def main_async(args) -> dict:
    # popped from the end: reversed so that messages go out in order 0, 1, 2, ...
    todo = list(range(args.messages - 1, -1, -1))
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(session(args.port, todo, args) for _ in range(args.sessions)), return_exceptions=True
    )
    seconds = time.perf_counter() - t0
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    sent = sum(r for r in results if isinstance(r, int))
    return {"sent": sent, "seconds": seconds, "error": errors[0] if errors else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--domains", type=int, default=100)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--size", type=int, default=3000, help="approximate message size in bytes")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for any one reply")
    args = p.parse_args()
    res = asyncio.run(main_async(args))
    print(json.dumps(res), flush=True)
    return 0 if res["error"] is None and res["sent"] == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
