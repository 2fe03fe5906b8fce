"""The administration commands, run through click's CliRunner against a real data directory."""

from __future__ import annotations

import asyncio
import json
import types
from pathlib import Path

import argon2
import click
import pytest
from click.testing import CliRunner, Result
from gomail.cli.admin import format_size, parse_size, register
from gomail.context import LocalDelivery
from gomail.store import Delivery
from gomail.store.sqlite import SqliteStore


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli(data: Path):
    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        ctx.obj = types.SimpleNamespace(data_dir=data, blob_inline_max=1 << 20)

    register(group)
    runner = CliRunner()

    def run(*args: str, input: str | None = None, ok: bool = True) -> Result:
        result = runner.invoke(group, list(args), input=input)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 1, result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)
            assert "Traceback" not in result.output
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        return result

    return run


def store_call(data: Path, fn):
    async def go():
        async with SqliteStore(data) as s:
            return await fn(s)

    return asyncio.run(go())


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4000", 4000),
        ("500M", 500 << 20),
        ("1G", 1 << 30),
        ("1g", 1 << 30),
        ("1.5G", 3 << 29),
        ("2GiB", 2 << 30),
        ("10KB", 10 << 10),
        ("0", None),
        ("none", None),
        ("unlimited", None),
    ],
)
def test_parse_size(text: str, value: int | None):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1", "1X", "M", "1.2.3G", "lots"])
def test_parse_size_refuses(text: str):
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size():
    assert format_size(None) == "unlimited"
    assert format_size(500 << 20) == "500M"
    assert format_size(4000) == "3.9K"
    assert format_size(4000, exact=True) == "4000"
    assert format_size(100) == "100"
    assert format_size(3 << 29) == "1536M"


# --- domains ----------------------------------------------------------------------------------


def test_domains(cli, data: Path):
    assert "domain example.org added" in cli("domain", "add", "Example.ORG.").output
    cli("domain", "add", "bücher.example")
    out = cli("domain", "list").output
    assert table(out) == [
        ["domain", "unicode", "users", "aliases"],
        ["example.org", "0", "0"],  # no unicode form: an empty cell
        ["xn--bcher-kva.example", "bücher.example", "0", "0"],
    ]
    r = cli("domain", "add", "example.org", ok=False)
    assert "domain example.org already exists" in r.stderr
    r = cli("domain", "add", "not a domain!", ok=False)
    assert "invalid domain" in r.stderr
    cli("domain", "remove", "BÜCHER.example")
    assert table(cli("domain", "list").output) == [
        ["domain", "users", "aliases"],
        ["example.org", "0", "0"],
    ]
    r = cli("domain", "remove", "other.example", ok=False)
    assert "no such domain: other.example" in r.stderr


def test_domain_in_use_is_kept(cli):
    cli("domain", "add", "example.org")
    cli("user", "add", "a@example.org", "--password-stdin", input="pw\n")
    r = cli("domain", "remove", "example.org", ok=False)
    assert "still has 1 user(s)" in r.stderr


def test_read_commands_need_a_database(cli, data: Path):
    r = cli("domain", "list", ok=False)
    assert f"no gomail database in {data}" in r.stderr
    assert not data.exists()  # a typo in --data creates nothing


# --- users ------------------------------------------------------------------------------------


def test_user_add_with_stdin_password(cli, data: Path):
    cli("domain", "add", "example.org")
    r = cli(
        "user", "add", "Alice@Example.org", "--quota", "1G", "--password-stdin", input="s3cret\n"
    )
    assert "user alice@example.org added (quota 1G)" in r.output
    stored = store_call(data, lambda s: s.get_password_hash("alice@example.org"))
    assert stored.startswith("$argon2id$")
    assert argon2.PasswordHasher().verify(stored, "s3cret")
    assert store_call(data, lambda s: s.get_user("alice@example.org")).quota == 1 << 30


def test_user_add_prompts_twice(cli, data: Path):
    cli("domain", "add", "example.org")
    r = cli("user", "add", "bob@example.org", input="pw1\npw1\n")
    assert "Password" in r.output and "Repeat" in r.output
    assert "pw1" not in r.output  # hidden
    stored = store_call(data, lambda s: s.get_password_hash("bob@example.org"))
    assert argon2.PasswordHasher().verify(stored, "pw1")
    # mismatching confirmation, then end of input: nothing created
    cli("user", "add", "carol@example.org", input="a\nb\n", ok=False)
    assert store_call(data, lambda s: s.get_user("carol@example.org")) is None


def test_user_add_errors(cli, data: Path):
    r = cli("user", "add", "a@example.org", "--password-stdin", input="pw\n", ok=False)
    assert "unknown domain example.org" in r.stderr
    cli("domain", "add", "example.org")
    r = cli(
        "user",
        "add",
        "a@example.org",
        "--quota",
        "lots",
        "--password-stdin",
        input="pw\n",
        ok=False,
    )
    assert "invalid size 'lots'" in r.stderr
    r = cli("user", "add", "a@example.org", "--password-stdin", input="\n", ok=False)
    assert "no password" in r.stderr
    r = cli("user", "add", "no-at-sign", "--password-stdin", input="pw\n", ok=False)
    assert "invalid address" in r.stderr
    cli("user", "add", "a@example.org", "--password-stdin", input="pw\n")
    r = cli("user", "add", "A@example.org", "--password-stdin", input="pw\n", ok=False)
    assert "user a@example.org already exists" in r.stderr


def test_user_list_quota_passwd_remove(cli, data: Path):
    cli("domain", "add", "example.org")
    cli("domain", "add", "other.example")
    cli("user", "add", "b@example.org", "--quota", "4000", "--password-stdin", input="pw\n")
    cli("user", "add", "a@example.org", "--quota", "0", "--password-stdin", input="pw\n")
    cli("user", "add", "c@other.example", "--password-stdin", input="pw\n")
    body = b"Subject: hi\r\n\r\n" + b"x" * 2000
    store_call(
        data, lambda s: s.deliver(Delivery("Q", "s@x", body, (LocalDelivery("b@example.org"),)))
    )
    assert table(cli("user", "list").output) == [
        ["address", "quota", "used", "use%"],
        ["a@example.org", "unlimited", "0", "-"],
        ["b@example.org", "4000", "2.0K", "50%"],
        ["c@other.example", "unlimited", "0", "-"],
    ]
    assert [row[0] for row in table(cli("user", "list", "other.example").output)] == [
        "address",
        "c@other.example",
    ]
    assert "no such domain" in cli("user", "list", "nope.example", ok=False).stderr

    assert (
        "quota of a@example.org set to 500M" in cli("user", "quota", "a@example.org", "500M").output
    )
    assert store_call(data, lambda s: s.get_user("a@example.org")).quota == 500 << 20
    cli("user", "quota", "a@example.org", "none")
    assert store_call(data, lambda s: s.get_user("a@example.org")).quota is None
    assert "no such user" in cli("user", "quota", "z@example.org", "1G", ok=False).stderr

    cli("user", "passwd", "a@example.org", "--password-stdin", input="new-pw\n")
    stored = store_call(data, lambda s: s.get_password_hash("a@example.org"))
    assert argon2.PasswordHasher().verify(stored, "new-pw")
    cli("user", "passwd", "a@example.org", input="other\nother\n")
    stored = store_call(data, lambda s: s.get_password_hash("a@example.org"))
    assert argon2.PasswordHasher().verify(stored, "other")
    r = cli("user", "passwd", "z@example.org", "--password-stdin", input="x\n", ok=False)
    assert "no such user: z@example.org" in r.stderr

    # remove: asks first
    r = cli("user", "remove", "b@example.org", input="n\n", ok=False)
    assert "1 message(s)" in r.output and "nothing removed" in r.stderr
    assert store_call(data, lambda s: s.get_user("b@example.org")) is not None
    cli("user", "remove", "b@example.org", input="y\n")
    assert store_call(data, lambda s: s.get_user("b@example.org")) is None
    assert (
        "user c@other.example removed" in cli("user", "remove", "c@other.example", "--yes").output
    )
    assert "no such user" in cli("user", "remove", "c@other.example", "--yes", ok=False).stderr


# --- administrators ---------------------------------------------------------------------------


def test_create_admin(cli, data: Path):
    r = cli("create-admin", "--username", "root", "--password-stdin", input="adm-pw\n")
    assert "administrator root created" in r.output
    stored = store_call(data, lambda s: s.get_admin_password_hash("root"))
    assert argon2.PasswordHasher().verify(stored, "adm-pw")
    r = cli("create-admin", input="ops\npw2\npw2\n")
    assert "Username" in r.output
    assert argon2.PasswordHasher().verify(
        store_call(data, lambda s: s.get_admin_password_hash("ops")), "pw2"
    )
    r = cli("create-admin", "--username", "root", "--password-stdin", input="x\n", ok=False)
    assert "administrator root already exists" in r.stderr
    r = cli("create-admin", "--password-stdin", input="x\n", ok=False)
    assert "needs --username" in r.stderr
    r = cli("create-admin", "--username", "two words", "--password-stdin", input="x\n", ok=False)
    assert "invalid administrator name" in r.stderr


# --- aliases ----------------------------------------------------------------------------------


def test_aliases(cli, data: Path):
    cli("domain", "add", "example.org")
    cli("domain", "add", "bücher.example")
    r = cli("alias", "add", "Sales@Example.org", "alice@example.org", "bob@remote.example")
    assert "alias sales@example.org -> alice@example.org, bob@remote.example added" in r.output
    cli("alias", "add", "@BÜCHER.example", "alice@example.org")
    assert table(cli("alias", "list").output) == [
        ["source", "targets"],
        ["@xn--bcher-kva.example", "alice@example.org"],
        ["sales@example.org", "alice@example.org,", "bob@remote.example"],
    ]
    assert table(cli("alias", "list", "example.org").output)[1][0] == "sales@example.org"
    assert "no such domain" in cli("alias", "list", "nope.example", ok=False).stderr
    r = cli("alias", "add", "x@nope.example", "alice@example.org", ok=False)
    assert "unknown domain nope.example" in r.stderr
    r = cli("alias", "add", "sales@example.org", "alice@example.org", ok=False)
    assert "already has" in r.stderr
    r = cli("alias", "add", "sales@example.org", "not an address", ok=False)
    assert "invalid address" in r.stderr

    cli("alias", "remove", "sales@example.org", "bob@remote.example")
    alias = store_call(data, lambda s: s.get_alias("sales@example.org"))
    assert alias.targets == ("alice@example.org",)
    r = cli("alias", "remove", "sales@example.org", "bob@remote.example", ok=False)
    assert "has no target" in r.stderr
    assert (
        "alias @xn--bcher-kva.example removed" in cli("alias", "remove", "@bücher.example").output
    )
    assert "no such alias" in cli("alias", "remove", "@bücher.example", ok=False).stderr


# --- mailbox status ---------------------------------------------------------------------------


def test_mailbox_status(cli, data: Path):
    cli("domain", "add", "example.org")
    cli("user", "add", "a@example.org", "--password-stdin", input="pw\n")
    one, two = b"Subject: 1\r\n\r\nx", b"Subject: 2\r\n\r\nyy"

    async def deliver(s):
        await s.deliver(Delivery("Q", "s@x", one, (LocalDelivery("a@example.org"),)))
        await s.deliver(
            Delivery("Q", "s@x", two, (LocalDelivery("a@example.org", "INBOX", ("\\Seen",)),))
        )
        await s.deliver(Delivery("Q", "s@x", one, (LocalDelivery("a@example.org", "Junk"),)))

    store_call(data, deliver)
    rows = table(cli("mailbox", "status", "A@example.org").output)
    assert rows[0] == ["folder", "messages", "unseen", "bytes"]
    assert rows[1] == ["INBOX", "2", "1", str(len(one) + len(two))]
    assert ["Junk", "1", "1", str(len(one))] in rows
    assert rows[-1] == ["total", "3", "2", str(2 * len(one) + len(two))]
    assert [r[0] for r in rows[1:-1]] == ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"]
    # aligned: every line puts the numbers at the same columns
    lines = cli("mailbox", "status", "a@example.org").output.splitlines()
    col = lines[0].index("messages")
    assert all(line[col - 1] == " " and line[col] != " " for line in lines)

    doc = json.loads(cli("mailbox", "status", "a@example.org", "--json").output)
    assert doc[0]["name"] == "INBOX" and doc[0]["messages"] == 2 and doc[0]["unseen"] == 1
    assert set(doc[0]) >= {"name", "messages", "unseen", "bytes", "uidvalidity", "uidnext"}
    assert "no such user" in cli("mailbox", "status", "z@example.org", ok=False).stderr


# --- backup -----------------------------------------------------------------------------------


def test_backup(cli, data: Path, tmp_path: Path):
    cli("domain", "add", "example.org")
    cli("user", "add", "a@example.org", "--password-stdin", input="pw\n")
    dest = tmp_path / "backup"
    assert f"backup written to {dest}" in cli("backup", str(dest)).output
    assert (dest / "gomail.db").is_file()
    users = asyncio.run(_users(dest))
    assert users == ["a@example.org"]
    r = cli("backup", str(dest), ok=False)
    assert "exists and is not empty" in r.stderr


async def _users(data: Path) -> list[str]:
    async with SqliteStore(data) as s:
        return [u.address for u in await s.list_users()]


def test_registered_on_the_gomail_command():
    from gomail.cli import main

    for name in ("create-admin", "domain", "user", "alias", "mailbox", "backup"):
        assert name in main.commands
