"""DATA is read in C-sized pieces: the terminator, dot-stuffing, limits, and what follows."""

import asyncio
from pathlib import Path

import pytest
from gomail.smtp.protocol import GomailSMTP, _line_limit_pattern
from gomail.spool import Spool


async def read(chunks, *, line_limit=1000, size_limit=10**6, spool_dir=None, threshold=1 << 20):
    """(the message or the refusal, what is left in the reader, the reader's limit after)."""
    reader = asyncio.StreamReader(limit=line_limit)
    proto = GomailSMTP.__new__(GomailSMTP)
    proto._reader = reader
    proto.data_size_limit = size_limit
    proto.line_length_limit = line_limit
    proto._line_too_long = _line_limit_pattern(line_limit)
    spool = Spool(spool_dir or Path("/nonexistent"), threshold)

    async def feed():
        for c in chunks:
            reader.feed_data(c)
            await asyncio.sleep(0)

    feeder = asyncio.create_task(feed())
    refusal = await asyncio.wait_for(proto._read_data(spool), 5)
    await feeder
    out = refusal if refusal is not None else await spool.load()
    return out, bytes(reader._buffer), reader._limit


@pytest.mark.parametrize(
    ("payload", "message", "rest"),
    [
        (b".\r\nQUIT\r\n", b"", b"QUIT\r\n"),
        (b"a\r\n.\r\n", b"a\r\n", b""),
        (b"a.\r\n..\r\n.b\r\n...\r\n.\r\nNOOP\r\n", b"a.\r\n.\r\nb\r\n..\r\n", b"NOOP\r\n"),
        # a bare LF before the dot does not end the message (SMTP smuggling)
        (b"x\n.\r\ny\r\n.\r\n", b"x\n.\r\ny\r\n", b""),
        (b"x\r.\r\ny\r\n.\r\n", b"x\r.\r\ny\r\n", b""),
        (b"a\r\n\r\n.\r\n", b"a\r\n\r\n", b""),
        (b"..\r\n.\r\n", b".\r\n", b""),
    ],
)
async def test_terminator_and_dot_stuffing(payload, message, rest):
    # whole, and split at every byte
    assert (await read([payload]))[:2] == (message, rest)
    out = await read([payload[i : i + 1] for i in range(len(payload))])
    assert out[:2] == (message, rest)


async def test_line_limit_counts_the_crlf():
    ok = b"x" * 998 + b"\r\n"
    assert (await read([ok + b".\r\n"]))[0] == ok
    out, _, _ = await read([b"x" * 999 + b"\r\n.\r\n"])
    assert out.startswith("500 5.5.2")


async def test_oversized_message_is_read_to_its_end_and_dropped():
    big = b"y" * 200_000 + b"\r\n.\r\nQUIT\r\n"
    out, rest, limit = await read([big[i : i + 4096] for i in range(0, len(big), 4096)],
                                  size_limit=1000)  # fmt: skip
    assert out.startswith("552 5.3.4")
    assert rest == b"QUIT\r\n"
    assert limit == 1000  # the reader's line limit is restored


async def test_size_limit_counts_the_message():
    body = b"z" * 500 + b"\r\n"
    assert (await read([body + b".\r\n"], size_limit=600))[0] == body
    assert (await read([body * 2 + b".\r\n"], size_limit=600))[0].startswith("552")


async def test_a_long_line_is_caught_across_pieces():
    limit = 1000
    line = b"q" * 999 + b"\r\n"  # 1,001 octets with its CRLF: one too many
    pieces = [line[i : i + 7] for i in range(0, len(line), 7)] + [b".\r\n"]
    assert (await read(pieces, line_limit=limit))[0].startswith("500 5.5.2")
    ok = b"q" * 998 + b"\r\n"
    pieces = [(ok * 3)[i : i + 7] for i in range(0, len(ok) * 3, 7)] + [b".\r\n"]
    assert (await read(pieces, line_limit=limit))[0] == ok * 3


async def test_a_large_message_is_spooled_to_a_file_undamaged(tmp_path):
    body = (b"z" * 997 + b".\r\n" + b"..dot\r\n") * 3000  # 3 MB, no line ends the message
    payload = b"..first\r\n" + body + b".\r\nQUIT\r\n"
    reader = asyncio.StreamReader(limit=1000)
    proto = GomailSMTP.__new__(GomailSMTP)
    proto._reader = reader
    proto.data_size_limit = 10**7
    proto.line_length_limit = 1000
    proto._line_too_long = _line_limit_pattern(1000)
    spool = Spool(tmp_path, 64 * 1024)
    for i in range(0, len(payload), 100_000):
        reader.feed_data(payload[i : i + 100_000])
    assert await asyncio.wait_for(proto._read_data(spool), 5) is None
    assert spool.on_disk
    assert await spool.load() == b".first\r\n" + body.replace(b"\n..", b"\n.")
    assert bytes(reader._buffer) == b"QUIT\r\n" and reader._limit == 1000
