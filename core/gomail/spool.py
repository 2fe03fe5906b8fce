"""A message being received (SMTP DATA or BDAT, an IMAP literal): in memory while small, on
disk past a threshold, so that many large messages arriving at once cost disk, not memory.

The file lives under ``DATA/spool`` (directory 0700, file 0600) and its name is removed as soon
as it is created: nothing is left behind when the transaction ends, fails or the connection
drops, nor after a crash; its space is freed when the spool is closed. ``clear_spool`` removes
whatever a crash between creating and unlinking a file could have left, at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

SPOOL_DIR = "spool"
# Bytes gathered before one write to the file: fewer system calls than one per network read.
WRITE_BATCH = 256 * 1024


def spool_directory(data_dir: Path) -> Path:
    return Path(data_dir) / SPOOL_DIR


def clear_spool(data_dir: Path) -> int:
    """Create the spool directory (0700) and remove any file left in it; returns how many.

    Call it at start, before any connection is taken."""
    directory = spool_directory(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    removed = 0
    for entry in directory.iterdir():
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            entry.unlink()
            removed += 1
    return removed


class Spool:
    """The bytes of one message as they arrive.

    Up to ``threshold`` bytes stay in memory; past it they go to an unlinked file in
    ``directory``. ``write`` raises OSError when the disk is full. ``load`` gives the whole
    message back once, then the spool is closed; ``close`` may be called any number of times.
    """

    def __init__(self, directory: Path, threshold: int) -> None:
        self.directory = directory
        self.threshold = threshold
        self.size = 0
        self._buffer = bytearray()
        self._fd: int | None = None
        self.closed = False

    def __len__(self) -> int:
        return self.size

    @property
    def on_disk(self) -> bool:
        return self._fd is not None

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ValueError("write to a closed spool")
        self._buffer += data
        self.size += len(data)
        if self._fd is None and self.size > self.threshold:
            self._open_file()
        if self._fd is not None and len(self._buffer) >= WRITE_BATCH:
            self._flush()

    def _open_file(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="msg-", dir=self.directory)  # mode 0600
        os.unlink(path)
        self._fd = fd

    def _flush(self) -> None:
        view = memoryview(self._buffer)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        finally:
            view.release()
        self._buffer.clear()

    async def load(self) -> bytes:
        """The whole message; the spool is closed after. A file is read in a thread, which
        closes it itself: a caller cancelled meanwhile leaves nothing open or half-read."""
        if self.closed:
            raise ValueError("load of a closed spool")
        self.closed = True
        if self._fd is None:
            data = bytes(self._buffer)
            self._buffer = bytearray()
            return data
        self._flush()
        fd, self._fd = self._fd, None  # the thread owns it now: close() leaves it alone
        return await asyncio.to_thread(_read_and_close, fd, self.size)

    def close(self) -> None:
        """Drop what was received (and free the file's space)."""
        self.closed = True
        self._buffer = bytearray()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _read_and_close(fd: int, size: int) -> bytes:
    try:
        data = os.pread(fd, size, 0)
        if len(data) < size:  # a short read (over 2 GiB on Linux): gather the rest
            parts = [data]
            got = len(data)
            while got < size:
                part = os.pread(fd, size - got, got)
                if not part:
                    raise OSError(f"spool file shorter than {size} bytes")
                parts.append(part)
                got += len(part)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)
