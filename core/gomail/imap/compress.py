"""COMPRESS=DEFLATE (RFC 4978): raw deflate in both directions, under the IMAP session.

Outgoing data goes through a transport wrapper that compresses and sync-flushes each write,
so every response reaches the client at once. Incoming data is inflated by a pump task into
a fresh StreamReader that the session reads from instead of the socket's, and no faster than
the session reads it (a deflate bomb stays compressed until it is asked for).
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

READ_CHUNK = 64 * 1024
# A client could send a small deflate stream that inflates to gigabytes ("zip bomb"): inflate
# at most this much at a time, and no more while the session has enough unread (see _Gate);
# the rest waits in the decompressor, still compressed, and the socket is not read meanwhile.
MAX_INFLATE = 64 * 1024
# Inflated but not yet read by the session: more than the largest APPEND is an attack.
MAX_UNREAD = 64 << 20


class _Gate:
    """Stands in for the transport of the inflated StreamReader, which pauses it when the
    session has more than twice the reader's limit unread and resumes it when the session
    reads it down (or waits for more, as for a long literal); the pump waits while paused."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    def pause_reading(self) -> None:
        self._open.clear()

    def resume_reading(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        await self._open.wait()


class DeflateTransport(asyncio.Transport):
    """Compresses everything written, flushing after each write; the rest is delegated."""

    def __init__(self, inner: asyncio.BaseTransport) -> None:
        super().__init__()
        self._inner = inner
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)

    def write(self, data: Any) -> None:
        if data:
            self._inner.write(self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def can_write_eof(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()


def start_deflate(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task]:
    """New (reader, writer) speaking deflate over the given ones, and the inflating task
    (cancel it when the session ends)."""
    loop = asyncio.get_running_loop()
    inflated = asyncio.StreamReader(limit=reader._limit, loop=loop)
    out = asyncio.StreamWriter(DeflateTransport(writer.transport), writer._protocol, inflated, loop)

    gate = _Gate()
    inflated.set_transport(gate)  # type: ignore[arg-type]

    async def pump() -> None:
        inflate = zlib.decompressobj(-15)
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                while data:
                    await gate.wait()
                    chunk = inflate.decompress(data, MAX_INFLATE)
                    data = inflate.unconsumed_tail
                    if chunk:
                        inflated.feed_data(chunk)
                        if len(inflated._buffer) > MAX_UNREAD:
                            raise ConnectionError("too much inflated data unread")
        except (zlib.error, ConnectionError) as exc:
            inflated.set_exception(ConnectionError(f"COMPRESS: {exc}"))
            return
        except asyncio.IncompleteReadError:
            pass
        inflated.feed_eof()

    return inflated, out, asyncio.ensure_future(pump())
