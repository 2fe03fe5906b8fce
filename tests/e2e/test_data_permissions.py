"""The data directory is private: every file gomail writes (database, WAL, blobs, keys,
backups) is its user's alone, and `gomail run` names any that other users may read."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from gomail.permissions import PRIVATE_UMASK


@pytest.fixture(autouse=True)
def open_umask():
    """The usual umask of a login shell, which made 0644 databases before the fix."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def assert_private(root: Path) -> dict[str, int]:
    found = modes(root)
    loose = {name: f"{mode:04o}" for name, mode in found.items() if mode & PRIVATE_UMASK}
    assert not loose, f"readable by others under {root}: {loose}"
    return found


def test_everything_written_is_private(gomail_factory, tmp_path):
    g = gomail_factory("fresh")
    shutil.rmtree(g.data)  # the harness's copy of the test accounts: start from nothing
    g.extra_config = {"blob_inline_max": 1000}  # so that a body is stored as a file
    g.cli("domain", "add", "example.org")
    g.cli("user", "add", "alice@example.org", "--password-stdin", input=g.PASSWORD + "\n")
    found = assert_private(g.data)
    assert found["."] == 0o700
    assert found["gomail.db"] == 0o600
    g.start()
    g.send("someone@sender.example", ["alice@example.org"],
           g.make_message(body="x" * 5000 + "\r\n")[1])  # fmt: skip
    found = assert_private(g.data)
    for name in ("gomail.db-wal", "gomail.db-shm", "tls/selfsigned.key", "srs.secret"):
        assert found[name] == 0o600, (name, oct(found[name]))
    assert any(name.startswith("blobs/") and not name.endswith("/") for name in found)
    assert "other local users may read" not in g.log
    dest = tmp_path / "backup"
    g.cli("backup", str(dest))
    found = assert_private(dest)
    assert found["gomail.db"] == 0o600
    assert any(name.startswith("blobs/") for name in found)
    g.stop()


def test_run_warns_once_about_each_loose_path(gomail_factory):
    g = gomail_factory("loose")
    g.start()
    g.stop()
    loose = {
        g.data: 0o755,
        g.data / "gomail.db": 0o644,
        g.data / "tls" / "selfsigned.key": 0o644,
    }
    for path, mode in loose.items():
        path.chmod(mode)
    g.start()
    this_run = g.log.rsplit("=== gomail run at", 1)[1]
    lines = [ln for ln in this_run.splitlines() if "other local users may read" in ln]
    for path, mode in loose.items():
        named = [ln for ln in lines if f"{path} (mode {mode:04o})" in ln]
        assert len(named) == 1, (path, lines)
    # SQLite gives a new WAL file the database file's mode: named as well.
    assert any("gomail.db-wal" in ln for ln in lines), lines
    g.stop()
