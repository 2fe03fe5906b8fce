"""Keeping the data private: the process umask, and a warning at start about any file or
directory that other local users may read.

The data directory holds every message and the password hashes, so it is 0700 and its
files 0600. The ``gomail`` command sets the umask to 0077 before it writes anything, so
everything it creates (database, blobs, spool, backups, TLS and SRS files) is private; files
made by an older version or copied in by hand keep their mode, and ``gomail run`` names each
one that is too open.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from gomail.config import Config

log = logging.getLogger("gomail")

PRIVATE_UMASK = 0o077


def make_process_private() -> None:
    """Files and directories this process creates are its user's alone."""
    os.umask(PRIVATE_UMASK)


def private_paths(config: Config) -> list[tuple[Path, int]]:
    """(path, mode bits that must be clear) for what ``gomail run`` checks.

    A TLS key outside the data directory may be shared with a group (Debian's ssl-cert
    convention: 0640), so for it only access by others counts.
    """
    from gomail.srs import secret_path
    from gomail.store.sqlite import BLOB_DIR, DB_NAME

    data = config.data_dir
    group_or_other = stat.S_IRWXG | stat.S_IRWXO
    paths = [
        (data, group_or_other),
        *((data / f"{DB_NAME}{suffix}", group_or_other) for suffix in ("", "-wal", "-shm")),
        (data / BLOB_DIR, group_or_other),
        (secret_path(config), group_or_other),
    ]
    if config.tls_cert and config.tls_key:
        key = Path(config.tls_key)
        inside = key.resolve().is_relative_to(data.resolve())
        paths.append((key, group_or_other if inside else stat.S_IRWXO))
    else:
        paths.append((config.tls_dir / "selfsigned.key", group_or_other))
    return paths


def warn_loose_permissions(config: Config) -> list[Path]:
    """Log a warning for each path that others may access; returns those paths."""
    loose = []
    for path, forbidden in private_paths(config):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue  # not made yet: it will be made private
        if mode & forbidden:
            wanted = mode & ~forbidden
            loose.append(path)
            log.warning(
                "other local users may read %s (mode %04o): chmod %04o it",
                path, mode, wanted,
                extra={"fields": {"path": str(path), "mode": f"{mode:04o}"}},
            )  # fmt: skip
    return loose
