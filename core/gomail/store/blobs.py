"""Message bodies kept as files: ``<root>/ab/cdef…`` named by the body's SHA-256 (hex).

Bodies above the store's inline limit live here instead of in the database. A file is written
durably *before* the database commit that references it: to a temporary name in the target
directory, fsync'd, renamed into place, and the directory fsync'd (and any directory created on
the way). Files are immutable once written; two writers of the same body race harmlessly, since
both renames put identical bytes in place.

Blocking I/O: call these methods from a worker thread, never on the event loop.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from pathlib import Path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a created, renamed or removed name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durably(path: Path) -> None:
    """Create path and missing parents, fsyncing each parent whose entries changed."""
    if path.is_dir():
        return
    make_dirs_durably(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def write_file_durably(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write data to path atomically and durably: temp file, fsync, rename, fsync dir."""
    make_dirs_durably(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


class BlobFiles:
    """The blob folder of one store."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def write(self, sha256: str, data: bytes) -> None:
        """Make sure the file for sha256 exists, durably (no-op when it already does)."""
        path = self.path(sha256)
        if path.is_file():
            return
        write_file_durably(path, data)

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def unlink(self, sha256: str) -> None:
        """Remove the file if it exists (its directory stays)."""
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            pass

    def copy_to(self, sha256: str, dest: BlobFiles) -> None:
        """Copy one file into another blob folder, durably."""
        target = dest.path(sha256)
        make_dirs_durably(target.parent)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        shutil.copyfile(self.path(sha256), tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        fsync_dir(target.parent)

    def remove_temporary_files(self, older_than: float = 3600.0) -> int:
        """Remove temporary files left by a crash mid-write; returns how many.

        Only files older than ``older_than`` seconds: another process (the CLI next to a
        running server) may be writing a fresh one right now.
        """
        removed = 0
        if not self.root.is_dir():
            return 0
        limit = time.time() - older_than
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for entry in sub.iterdir():
                if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                    continue
                try:
                    if entry.stat().st_mtime < limit:
                        entry.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed
