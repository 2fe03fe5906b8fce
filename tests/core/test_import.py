"""``gomail import``: mbox, Maildir, Maildir++ and directories of mbox files into a real store,
through click's CliRunner; resuming, quota, bad input."""

from __future__ import annotations

import asyncio
import os
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from gomail import mailimport
from gomail.cli.admin import register
from gomail.mailimport import maildir_flags, read_mbox
from gomail.store.sqlite import SqliteStore

USER = "alice@example.org"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"

    async def setup():
        async with SqliteStore(data) as s:
            await s.add_domain("example.org")
            await s.add_user(USER, "x", None)

    asyncio.run(setup())
    return data


@pytest.fixture
def cli(data: Path):
    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        ctx.obj = types.SimpleNamespace(data_dir=data, blob_inline_max=1 << 20)

    register(group)
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(group, ["import", *args])
        assert "Traceback" not in result.output
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 1, result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)
            errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
            assert len(errors) == 1, result.output
        return result

    return run


def store_call(data: Path, fn):
    async def go():
        async with SqliteStore(data) as s:
            return await fn(s)

    return asyncio.run(go())


def messages(data: Path, folder: str = "INBOX") -> list[bytes]:
    return [raw for _uid, raw in store_call(data, lambda s: s.list_messages(USER, folder))]


def rows(data: Path, folder: str = "INBOX"):
    return store_call(data, lambda s: s.fetch_meta(USER, folder, range(1, 1 << 30)))


def folders(data: Path) -> dict[str, str | None]:
    return {f.name: f.special_use for f in store_call(data, lambda s: s.list_folders(USER))}


def msg(n: int, extra: str = "") -> bytes:
    return f"From: bob@example.com\nSubject: message {n}\n\nbody {n}\n{extra}".encode()


# --- mbox -------------------------------------------------------------------------------------


MBOX = (
    b"From bob@example.com Sat Jan  3 01:05:34 1996\n"
    b"From: bob@example.com\n"
    b"Subject: one\n"
    b"\n"
    b">From the start\n"
    b">>From quoted twice\n"
    b"From the middle of a line is not a separator\n"
    b"\n"
    b"From carol@example.com Sun Jan  4 10:00:00 2004\r\n"
    b"From: carol@example.com\r\n"
    b"Subject: two (CRLF)\r\n"
    b"\r\n"
    b"crlf body\r\n"
    b"\r\n"
    b"From MAILER-DAEMON Mon Jan  5 10:00:00 +0100 2004\n"
    b"Subject: three, no newline at the end\n"
    b"\n"
    b"last line"
)


def test_mbox(cli, data: Path, tmp_path: Path):
    path = tmp_path / "alice.mbox"
    path.write_bytes(MBOX)
    result = cli(USER, str(path))
    assert result.stdout.startswith("imported 3 message(s)")
    assert result.stderr == ""  # no TTY: no progress bar
    assert messages(data) == [
        b"From: bob@example.com\r\nSubject: one\r\n\r\nFrom the start\r\n>From quoted twice\r\n"
        b"From the middle of a line is not a separator\r\n",
        b"From: carol@example.com\r\nSubject: two (CRLF)\r\n\r\ncrlf body\r\n",
        b"Subject: three, no newline at the end\r\n\r\nlast line",
    ]
    dates = [r.internal_date for r in rows(data)]
    assert dates == [820631134.0, 1073210400.0, 1073293200.0]


def test_mbox_date_header_when_from_line_has_none(cli, data: Path, tmp_path: Path):
    path = tmp_path / "m"
    path.write_bytes(b"From -\nDate: Tue, 1 Jun 2021 12:00:00 +0000\nSubject: x\n\nhi\n")
    cli(USER, str(path))
    assert rows(data)[0].internal_date == 1622548800.0


def test_mbox_folder_option_and_special_name(cli, data: Path, tmp_path: Path):
    path = tmp_path / "m"
    path.write_bytes(b"From x Sat Jan  3 01:05:34 1996\n" + msg(1))
    cli(USER, str(path), "--folder", "Old/2019")
    # The journal is per PATH and ADDRESS: the same file again is done already.
    assert cli(USER, str(path), "--folder", "Other").stdout.startswith("imported 0")
    other = tmp_path / "m2"
    other.write_bytes(path.read_bytes())
    cli(USER, str(other), "--folder", "sent items")
    assert len(messages(data, "Old/2019")) == 1
    assert len(messages(data, "Sent")) == 1
    assert "sent items" not in folders(data)


def test_mbox_long_lines_and_cr_at_chunk_edge(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(mailimport, "_CHUNK", 16)
    body = b"x" * 15 + b"\r\n" + b"y" * 100 + b"\nFrom not a separator line\n"
    path = tmp_path / "m"
    path.write_bytes(b"From a Sat Jan  3 01:05:34 1996 with a long long From line\n" + body)
    (item,) = read_mbox(path)
    assert item.raw == body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert item.end == path.stat().st_size


def test_mbox_too_large_message_skipped(tmp_path: Path):
    path = tmp_path / "m"
    big = b"From a Sat Jan  3 01:05:34 1996\nSubject: big\n\n" + b"z" * 1000 + b"\n\n"
    small = b"From b Sat Jan  3 01:05:34 1996\nSubject: small\n\nok\n"
    path.write_bytes(big + small)
    items = list(read_mbox(path, max_size=500))
    assert [i.raw for i in items] == [None, b"Subject: small\r\n\r\nok\r\n"]
    assert items[0].end == len(big)


def test_large_mbox_streamed_in_batches(cli, data: Path, tmp_path: Path, monkeypatch):
    path = tmp_path / "big.mbox"
    n = 2100
    filler = ("lorem ipsum dolor sit amet " * 3 + "\n") * 120  # ~10 KB
    with open(path, "wb") as f:
        for i in range(n):
            f.write(b"From bob@example.com Sat Jan  3 01:05:34 1996\n")
            f.write(msg(i, filler) + b"\n")
    assert path.stat().st_size > 20_000_000
    calls = []
    real = SqliteStore.append_many

    async def counting(self, user, folder, batch):
        calls.append(sum(len(m.raw) for m in batch))
        return await real(self, user, folder, batch)

    monkeypatch.setattr(SqliteStore, "append_many", counting)
    result = cli(USER, str(path))
    assert result.stdout.startswith(f"imported {n} message(s)")
    assert len(calls) >= 3 and max(calls) <= mailimport.BATCH_BYTES + 20_000
    status = store_call(data, lambda s: s.folder_status(USER))
    assert status[0].messages == n


def test_duplicates_and_malformed(cli, data: Path, tmp_path: Path):
    path = tmp_path / "m"
    sep = b"From a Sat Jan  3 01:05:34 1996\n"
    path.write_bytes(sep + msg(1) + b"\n" + sep + b"\n" + sep + b"not a header\n\n" + sep + msg(1))
    result = cli(USER, str(path))
    assert result.stdout.startswith("imported 1 message(s)")
    assert "skipped 3 (2 malformed, 1 duplicate(s))" in result.stdout
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert "empty message" in warnings[0] and "header" in warnings[1]
    assert len(messages(data)) == 1


def test_dry_run_stores_nothing(cli, data: Path, tmp_path: Path):
    path = tmp_path / "m"
    path.write_bytes(b"From a Sat Jan  3 01:05:34 1996\n" + msg(1))
    result = cli(USER, str(path), "--folder", "New", "--dry-run")
    assert result.stdout.startswith("would import 1 message(s)")
    assert "1 folder(s) to create" in result.stdout
    assert messages(data) == [] and "New" not in folders(data)
    assert not (data / "import").exists()


# --- Maildir ----------------------------------------------------------------------------------


def make_maildir(path: Path, files: dict[str, bytes], mtime: float = 1_600_000_000) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for i, (name, raw) in enumerate(files.items()):
        (path / name).write_bytes(raw)
        os.utime(path / name, (mtime + i, mtime + i))


def test_maildir_flags(cli, data: Path, tmp_path: Path):
    md = tmp_path / "Maildir"
    make_maildir(
        md,
        {
            "cur/1.a.host:2,FS": msg(1),
            "cur/2.b.host:2,RT": msg(2),
            "cur/3.c.host:2,DSa": msg(3),
            "cur/4.d.host": msg(4),
            "new/5.e.host": msg(5),
            "new/6.f.host:2,S": msg(6),
            "tmp/7.g.host": msg(7),
        },
    )
    (md / "dovecot-keywords").write_text("0 $Important\n")
    result = cli(USER, str(md))
    assert result.stdout.startswith("imported 6 message(s)")
    got = rows(data)
    assert [r.flags for r in got] == [
        ("\\Seen", "\\Flagged"),
        ("\\Answered", "\\Deleted"),
        ("\\Seen", "\\Draft", "$Important"),
        (),
        (),
        (),
    ]
    assert [r.internal_date for r in got] == [1_600_000_000.0 + i for i in range(6)]
    assert messages(data)[0] == msg(1).replace(b"\n", b"\r\n")


def test_maildir_flag_names():
    assert maildir_flags("123.host:2,PRS", False) == (
        "123.host",
        ("$Forwarded", "\\Answered", "\\Seen"),
    )
    assert maildir_flags("123.host!2,S", True) == ("123.host", ())
    assert maildir_flags("plain", False) == ("plain", ())


def test_maildirpp_tree(cli, data: Path, tmp_path: Path):
    md = tmp_path / "Maildir"
    make_maildir(md, {"cur/1.x:2,S": msg(1)})
    make_maildir(md / ".Sub.Folder", {"cur/2.x:2,": msg(2)})
    make_maildir(md / ".Sub", {})
    make_maildir(md / ".Sent", {"cur/3.x:2,S": msg(3)})
    make_maildir(md / ".Deleted Messages", {"cur/4.x:2,ST": msg(4)})
    make_maildir(md / ".spam", {"new/5.x": msg(5)})
    make_maildir(md / ".Entw&APw-rfe", {"new/6.x": msg(6)})
    (md / ".notamaildir").mkdir()
    result = cli(USER, str(md))
    assert result.stdout.startswith("imported 6 message(s)")
    names = folders(data)
    assert "Sub/Folder" in names and "Sub" in names and "Entwürfe" in names
    assert "Deleted Messages" not in names and "spam" not in names
    assert len(messages(data, "Sub/Folder")) == 1
    assert len(messages(data, "Sent")) == 1
    assert len(messages(data, "Trash")) == 1
    assert len(messages(data, "Junk")) == 1
    assert len(messages(data, "Entwürfe")) == 1


def test_maildir_resume_by_file_name(cli, data: Path, tmp_path: Path):
    md = tmp_path / "Maildir"
    make_maildir(md, {"cur/1.x:2,": msg(1), "new/2.x": msg(2)})
    cli(USER, str(md))
    # The old server's client read the message meanwhile: same file, new name.
    os.rename(md / "new/2.x", md / "cur/2.x:2,S")
    make_maildir(md, {"new/3.x": msg(3)})
    result = cli(USER, str(md))
    assert result.stdout.startswith("imported 1 message(s)")
    assert "2 done by an earlier run" in result.stdout
    assert len(messages(data)) == 3


# --- directories of mbox files ----------------------------------------------------------------


def test_directory_of_mboxes(cli, data: Path, tmp_path: Path):
    top = tmp_path / "Local Folders"
    (top / "Archives.sbd").mkdir(parents=True)
    sep = b"From - Sat Jan 03 01:05:34 1996\n"
    (top / "Inbox").write_bytes(sep + msg(1))
    (top / "Inbox.msf").write_bytes(b"// <!-- <mdb:mork:z v=1.4/> -->")
    (top / "Sent").write_bytes(sep + msg(2) + b"\n" + sep + msg(3))
    (top / "Archives").write_bytes(b"")
    (top / "Archives.sbd" / "2024").write_bytes(sep + msg(4))
    (top / "Spam").write_bytes(sep + msg(5))
    (top / "Lists").write_bytes(sep + msg(6))
    (top / "notes.txt").write_bytes(b"not mail")
    result = cli(USER, str(top))
    assert result.stdout.startswith("imported 6 message(s)")
    assert len(messages(data)) == 1
    assert len(messages(data, "Sent")) == 2
    assert len(messages(data, "Archive/2024")) == 1
    assert len(messages(data, "Junk")) == 1
    assert len(messages(data, "Lists")) == 1
    names = folders(data)
    assert "Archives" not in names and "Inbox.msf" not in names and "notes.txt" not in names


def test_existing_special_folder_renamed(cli, data: Path, tmp_path: Path):
    store_call(data, lambda s: s.rename_folder(USER, "Sent", "Gesendet"))
    path = tmp_path / "Sent Messages"
    path.write_bytes(b"From a Sat Jan  3 01:05:34 1996\n" + msg(1))
    cli(USER, str(path), "--folder", "Sent Messages")
    assert len(messages(data, "Gesendet")) == 1


# --- resuming ---------------------------------------------------------------------------------


def write_mbox(path: Path, n: int) -> None:
    with open(path, "wb") as f:
        for i in range(n):
            f.write(b"From bob@example.com Sat Jan  3 01:05:34 1996\n" + msg(i) + b"\n")


def test_resume_after_interruption(cli, data: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(mailimport, "BATCH_MESSAGES", 4)
    path = tmp_path / "m"
    write_mbox(path, 10)
    real = SqliteStore.append_many
    calls = []

    async def failing(self, user, folder, batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return await real(self, user, folder, batch)

    monkeypatch.setattr(SqliteStore, "append_many", failing)
    result = cli(USER, str(path), ok=False)
    assert result.stdout.startswith("imported 4 message(s)")
    assert "run the same command again" in result.stderr
    assert len(messages(data)) == 4
    result = cli(USER, str(path))
    assert result.stdout.startswith("imported 6 message(s)")
    assert "duplicate" not in result.stdout  # resumed at the offset, nothing read twice
    got = messages(data)
    assert got == [msg(i).replace(b"\n", b"\r\n") for i in range(10)]
    result = cli(USER, str(path))
    assert result.stdout.startswith("imported 0 message(s)")


def test_crash_after_commit_before_journal(cli, data: Path, tmp_path: Path, monkeypatch):
    """The store committed the batch but the journal never heard of it: no duplicates."""
    monkeypatch.setattr(mailimport, "BATCH_MESSAGES", 4)
    path = tmp_path / "m"
    write_mbox(path, 10)
    real = SqliteStore.append_many
    calls = []

    async def crashing(self, user, folder, batch):
        calls.append(len(batch))
        result = await real(self, user, folder, batch)
        if len(calls) == 2:
            raise OSError("simulated crash")
        return result

    monkeypatch.setattr(SqliteStore, "append_many", crashing)
    cli(USER, str(path), ok=False)
    assert len(messages(data)) == 8
    monkeypatch.setattr(SqliteStore, "append_many", real)
    result = cli(USER, str(path))
    assert result.stdout.startswith("imported 2 message(s)")
    assert "4 duplicate(s)" in result.stdout
    assert messages(data) == [msg(i).replace(b"\n", b"\r\n") for i in range(10)]


def test_changed_mbox_read_again_without_duplicates(cli, data: Path, tmp_path: Path):
    path = tmp_path / "m"
    write_mbox(path, 3)
    cli(USER, str(path))
    write_mbox(path, 2)  # shorter now: the journal's offset is past its end
    with open(path, "ab") as f:
        f.write(b"From x Sat Jan  3 01:05:34 1996\n" + msg(99))
    result = cli(USER, str(path))
    assert "changed since the last import" in result.stderr
    assert result.stdout.startswith("imported 1 message(s)")
    assert len(messages(data)) == 4


def test_quota_stops_and_rerun_continues(cli, data: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(mailimport, "BATCH_MESSAGES", 2)
    path = tmp_path / "m"
    write_mbox(path, 6)
    size = len(msg(0).replace(b"\n", b"\r\n"))
    store_call(data, lambda s: s.set_quota(USER, size * 3))
    result = cli(USER, str(path), ok=False)
    assert result.stdout.startswith("imported 2 message(s)")
    assert "over quota" in result.stderr and "gomail user quota" in result.stderr
    store_call(data, lambda s: s.set_quota(USER, None))
    result = cli(USER, str(path))
    assert result.stdout.startswith("imported 4 message(s)")
    assert len(messages(data)) == 6


# --- bad input --------------------------------------------------------------------------------


def test_unknown_user(cli, tmp_path: Path):
    path = tmp_path / "m"
    write_mbox(path, 1)
    result = cli("nobody@example.org", str(path), ok=False)
    assert "no such user: nobody@example.org" in result.stderr


def test_bad_address(cli, tmp_path: Path):
    cli("not an address", str(tmp_path), ok=False)


def test_missing_path(cli, tmp_path: Path):
    result = cli(USER, str(tmp_path / "nope"), ok=False)
    assert "no such file or directory" in result.stderr


def test_not_an_mbox(cli, tmp_path: Path):
    path = tmp_path / "letter.txt"
    path.write_bytes(b"Dear Alice,\n")
    result = cli(USER, str(path), ok=False)
    assert "not an mbox file" in result.stderr


def test_empty_directory(cli, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = cli(USER, str(tmp_path / "empty"), ok=False)
    assert "no mbox files or Maildir folders" in result.stderr


def test_unreadable_path(cli, tmp_path: Path, monkeypatch):
    path = tmp_path / "m"
    write_mbox(path, 1)
    if os.geteuid() == 0:  # root reads every file: pretend
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != path)
    path.chmod(0)
    try:
        result = cli(USER, str(path), ok=False)
    finally:
        path.chmod(0o600)
    assert "cannot read" in result.stderr


def test_no_database(tmp_path: Path):
    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        ctx.obj = types.SimpleNamespace(data_dir=tmp_path / "none", blob_inline_max=1 << 20)

    register(group)
    path = tmp_path / "m"
    write_mbox(path, 1)
    result = CliRunner().invoke(group, ["import", USER, str(path)])
    assert result.exit_code == 1 and "no gomail database" in result.stderr
    assert not (tmp_path / "none").exists()


def test_meta_stored_for_imap(cli, data: Path, tmp_path: Path):
    pytest.importorskip("gomail.imap.meta")
    path = tmp_path / "m"
    path.write_bytes(b"From a Sat Jan  3 01:05:34 1996\n" + msg(1))
    cli(USER, str(path))
    (row,) = rows(data)
    assert row.envelope is not None and '"message 1"' in row.envelope
    assert store_call(data, lambda s: s.missing_meta(USER, "INBOX")) == []
    assert store_call(data, lambda s: s.search_header(USER, "INBOX", "subject", "message 1")) == {1}
