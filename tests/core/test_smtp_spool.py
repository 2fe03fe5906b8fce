"""The spool of a message being received: memory, then an unlinked private file."""

import asyncio
import os
import stat

import pytest
from gomail.spool import Spool, clear_spool, spool_directory


def open_spool_files(directory) -> list[str]:
    """This process's open files that were made in directory."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory) + "/"):
            out.append(f"/proc/self/fd/{fd}")
    return out


async def test_small_message_stays_in_memory(tmp_path):
    spool = Spool(tmp_path / "spool", threshold=100)
    spool.write(b"a" * 60)
    spool.write(b"b" * 40)
    assert not spool.on_disk and spool.size == 100
    assert not (tmp_path / "spool").exists()
    assert await spool.load() == b"a" * 60 + b"b" * 40
    with pytest.raises(ValueError):
        await spool.load()


async def test_past_the_threshold_it_goes_to_an_unlinked_0600_file(tmp_path):
    directory = tmp_path / "spool"
    spool = Spool(directory, threshold=1000)
    pieces = [bytes([i]) * 70_000 for i in range(10)]  # past WRITE_BATCH too
    for p in pieces:
        spool.write(p)
    assert spool.on_disk and spool.size == 700_000
    assert list(directory.iterdir()) == []  # no name: nothing can be left behind
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [fd] = open_spool_files(directory)
    assert stat.S_IMODE(os.stat(fd).st_mode) == 0o600
    assert await spool.load() == b"".join(pieces)
    assert open_spool_files(directory) == []  # load closes it
    spool.close()  # and close after load is harmless


async def test_close_drops_the_file(tmp_path):
    spool = Spool(tmp_path, threshold=10)
    spool.write(b"x" * 100)
    assert open_spool_files(tmp_path)
    spool.close()
    spool.close()
    assert open_spool_files(tmp_path) == []
    with pytest.raises(ValueError):
        spool.write(b"more")


async def test_load_cancelled_still_closes_the_file(tmp_path):
    spool = Spool(tmp_path, threshold=10)
    spool.write(b"y" * 5_000_000)
    task = asyncio.create_task(spool.load())
    await asyncio.sleep(0)
    task.cancel()
    spool.close()  # what the protocol does when the connection drops meanwhile
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # the reading thread closes the file when it is done
        if not open_spool_files(tmp_path):
            break
        await asyncio.sleep(0.02)
    assert open_spool_files(tmp_path) == []


def test_clear_spool_at_start(tmp_path):
    directory = spool_directory(tmp_path)
    directory.mkdir()
    (directory / "msg-leftover").write_bytes(b"z")
    assert clear_spool(tmp_path) == 1
    assert list(directory.iterdir()) == []
    assert clear_spool(tmp_path / "new") == 0
    assert stat.S_IMODE(spool_directory(tmp_path / "new").stat().st_mode) == 0o700
