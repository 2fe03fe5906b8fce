"""The administration commands: domains, users, aliases, administrators, mailbox status, backup.

They open the store of the data directory directly (SQLite's WAL lets them run next to a
running server) and print one clear line on error, with exit code 1::

    gomail domain add example.org
    gomail user add alice@example.org --quota 1G      # asks for the password twice
    echo "$PW" | gomail user add bob@example.org --password-stdin
    gomail alias add sales@example.org alice@example.org bob@example.org
    gomail alias add @example.org alice@example.org    # catch-all
    gomail mailbox status alice@example.org --json
    gomail backup /srv/backups/gomail-2024-06-01

:func:`register` adds them to the ``gomail`` group; the group's context object gives
``data_dir`` and ``blob_inline_max``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import click

from gomail.address import normalize_address, normalize_domain
from gomail.store import Store, StoreError

T = TypeVar("T")

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?")


# --- helpers ----------------------------------------------------------------------------------


def parse_size(text: str) -> int | None:
    """Bytes from "4000", "500M", "1.5G", "2GiB"; None (unlimited) for "0", "none",
    "unlimited". Units are binary (1K = 1024). ValueError for anything else."""
    t = text.strip().upper()
    if t in ("NONE", "UNLIMITED"):
        return None
    m = _SIZE.fullmatch(t)
    if not m:
        raise ValueError(
            f"invalid size {text!r}: give bytes or a number with K, M, G or T"
            " (500M, 1G); 0 or none for unlimited"
        )
    try:
        value = int(Decimal(m.group(1)) * _UNITS[m.group(2)])
    except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
        raise ValueError(f"invalid size {text!r}") from None
    return value or None


def format_size(value: int | None, exact: bool = False) -> str:
    """ "unlimited" for None; "500M" when a unit divides value; else bytes (exact=True) or
    one decimal ("1.2M")."""
    if value is None:
        return "unlimited"
    for unit in ("T", "G", "M", "K"):
        factor = _UNITS[unit]
        if value >= factor and value % factor == 0:
            return f"{value // factor}{unit}"
    if exact or value < 1024:
        return str(value)
    for unit in ("T", "G", "M", "K"):
        factor = _UNITS[unit]
        if value >= factor:
            return f"{value / factor:.1f}{unit}"
    return str(value)  # pragma: no cover


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _domain(text: str) -> str:
    try:
        return normalize_domain(text)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _address(text: str) -> str:
    try:
        return normalize_address(text)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _alias_source(text: str) -> str:
    """ "name@domain" or "@domain" (catch-all), normalised."""
    if text.strip().startswith("@"):
        return "@" + _domain(text.strip()[1:])
    return _address(text)


def _size(text: str) -> int | None:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _read_password(from_stdin: bool, prompt: str = "Password") -> str:
    """One line of standard input, or a hidden prompt asked twice."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise _fail("no password on standard input")
    else:
        try:
            password = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
        except click.Abort:  # end of input or Ctrl-C
            raise _fail("cancelled: no password entered") from None
        if not password:
            raise _fail("the password is empty")
    return password


def _hash(password: str) -> str:
    from gomail.passwords import hash_sync

    return hash_sync(password)


def _with_store(
    ctx: click.Context, action: Callable[[Store], Awaitable[T]], *, create: bool = True
) -> T:
    """Open the data directory's store, run action(store), close it. Store and file-system
    errors become one-line messages (exit code 1). create=False refuses a data directory
    without a database (a mistyped --data for a read-only command)."""
    from gomail.store.sqlite import DB_NAME, open_store

    obj = ctx.obj
    data_dir = Path(obj.data_dir)
    if not create and not (data_dir / DB_NAME).exists():
        raise _fail(f"no gomail database in {data_dir} (is --data right?)")

    async def run() -> T:
        store = open_store(data_dir, obj.blob_inline_max)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise _fail(f"{exc.strerror or exc}{where}") from None


def _table(header: tuple[str, ...], rows: list[tuple]) -> None:
    from gomail.cli import _table as table  # the one table printer of the gomail command

    table(header, rows)


# --- create-admin -----------------------------------------------------------------------------


@click.command("create-admin")
@click.option("--username", help="The administrator's user name (asked when not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def create_admin(ctx: click.Context, username: str | None, password_stdin: bool) -> None:
    """Create an administrator of the server (admin pages and API)."""
    if username is None:
        if password_stdin:
            raise _fail("--password-stdin needs --username")
        try:
            username = click.prompt("Username")
        except click.Abort:
            raise _fail("cancelled: no user name entered") from None
    username = username.strip()
    if not username or any(c.isspace() or not c.isprintable() for c in username):
        raise _fail(f"invalid administrator name {username!r}")
    password_hash = _hash(_read_password(password_stdin))
    _with_store(ctx, lambda s: s.add_admin(username, password_hash))
    click.echo(f"administrator {username} created")


# --- domains ----------------------------------------------------------------------------------


@click.group()
def domain() -> None:
    """Mail domains served here."""


@domain.command("add")
@click.argument("name")
@click.pass_context
def domain_add(ctx: click.Context, name: str) -> None:
    """Add a domain (Unicode names are stored in their xn-- form)."""
    d = _domain(name)
    _with_store(ctx, lambda s: s.add_domain(d))
    click.echo(f"domain {d} added")


@domain.command("list")
@click.pass_context
def domain_list(ctx: click.Context) -> None:
    """List the domains with their numbers of users and aliases."""

    async def read(s: Store) -> list[tuple]:
        rows = []
        for d in await s.list_domains():
            users = await s.list_users(d)
            aliases = await s.list_aliases(d)
            rows.append((d, _unicode(d), len(users), len(aliases)))
        return rows

    rows = _with_store(ctx, read, create=False)
    if any(row[1] for row in rows):
        _table(("domain", "unicode", "users", "aliases"), rows)
    else:
        _table(("domain", "users", "aliases"), [(r[0], r[2], r[3]) for r in rows])


def _unicode(d: str) -> str:
    """The U-label form of an IDN domain, or "" when it is plain ASCII."""
    if "xn--" not in d:
        return ""
    try:
        import idna

        return idna.decode(d)
    except (idna.IDNAError, UnicodeError):
        return ""


@domain.command("remove")
@click.argument("name")
@click.pass_context
def domain_remove(ctx: click.Context, name: str) -> None:
    """Remove a domain that has no users or aliases left."""
    d = _domain(name)
    _with_store(ctx, lambda s: s.remove_domain(d))
    click.echo(f"domain {d} removed")


# --- users ------------------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Mail accounts."""


@user.command("add")
@click.argument("address")
@click.option("--quota", metavar="SIZE", help="Storage limit: 500M, 1G, … (0 or none: unlimited).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def user_add(ctx: click.Context, address: str, quota: str | None, password_stdin: bool) -> None:
    """Create a mail account with its folders (INBOX, Sent, Drafts, Trash, Junk, Archive)."""
    a = _address(address)
    limit = _size(quota) if quota is not None else None

    async def check(s: Store) -> None:
        dom = a.rpartition("@")[2]
        if not await s.has_domain(dom):
            raise StoreError(f"unknown domain {dom}: add it first (gomail domain add {dom})")
        if await s.get_user(a) is not None:
            raise StoreError(f"user {a} already exists")

    # Refuse before asking for a password that would be thrown away.
    _with_store(ctx, check)
    password_hash = _hash(_read_password(password_stdin))
    _with_store(ctx, lambda s: s.add_user(a, password_hash, limit))
    click.echo(f"user {a} added" + (f" (quota {format_size(limit)})" if limit else ""))


@user.command("list")
@click.argument("domain", required=False)
@click.pass_context
def user_list(ctx: click.Context, domain: str | None) -> None:
    """List accounts (of one domain) with their quota and the storage they use."""
    d = _domain(domain) if domain is not None else None

    async def read(s: Store) -> list[tuple]:
        if d is not None and not await s.has_domain(d):
            raise StoreError(f"no such domain: {d}")
        rows = []
        for u in await s.list_users(d):
            used = await s.quota_usage(u.address)
            share = f"{100 * used / u.quota:.0f}%" if u.quota else "-"
            rows.append((u.address, format_size(u.quota, exact=True), format_size(used), share))
        return rows

    _table(("address", "quota", "used", "use%"), _with_store(ctx, read, create=False))


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def user_passwd(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Set an account's password."""
    a = _address(address)

    async def check(s: Store) -> None:
        if await s.get_user(a) is None:
            raise StoreError(f"no such user: {a}")

    _with_store(ctx, check, create=False)
    password_hash = _hash(_read_password(password_stdin, "New password"))
    _with_store(ctx, lambda s: s.set_password_hash(a, password_hash))
    click.echo(f"password of {a} changed")


@user.command("quota")
@click.argument("address")
@click.argument("size")
@click.pass_context
def user_quota(ctx: click.Context, address: str, size: str) -> None:
    """Set an account's storage limit: 500M, 1G, … (0 or none: unlimited)."""
    a = _address(address)
    limit = _size(size)
    _with_store(ctx, lambda s: s.set_quota(a, limit), create=False)
    click.echo(f"quota of {a} set to {format_size(limit, exact=True)}")


@user.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def user_remove(ctx: click.Context, address: str, yes: bool) -> None:
    """Remove an account with all its folders and messages."""
    a = _address(address)

    async def messages(s: Store) -> int:
        if await s.get_user(a) is None:
            raise StoreError(f"no such user: {a}")
        return sum(f.messages for f in await s.folder_status(a))

    count = _with_store(ctx, messages, create=False)
    if not yes:
        try:
            sure = click.confirm(
                f"Remove {a} and its {count} message(s)? This cannot be undone", default=False
            )
        except click.Abort:
            sure = False
        if not sure:
            raise _fail("nothing removed")
    _with_store(ctx, lambda s: s.remove_user(a))
    click.echo(f"user {a} removed")


# --- aliases ----------------------------------------------------------------------------------


@click.group()
def alias() -> None:
    """Aliases: name@domain (or @domain, a catch-all) delivered to other addresses."""


@alias.command("add")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
@click.pass_context
def alias_add(ctx: click.Context, source: str, targets: tuple[str, ...]) -> None:
    """Deliver mail for SOURCE to each TARGET (adds to an existing alias)."""
    src = _alias_source(source)
    dests = [_address(t) for t in targets]
    _with_store(ctx, lambda s: s.add_alias(src, dests))
    click.echo(f"alias {src} -> {', '.join(dests)} added")


@alias.command("list")
@click.argument("domain", required=False)
@click.pass_context
def alias_list(ctx: click.Context, domain: str | None) -> None:
    """List aliases (of one domain) and their targets."""
    d = _domain(domain) if domain is not None else None

    async def read(s: Store) -> list[tuple]:
        if d is not None and not await s.has_domain(d):
            raise StoreError(f"no such domain: {d}")
        return [(a.source, ", ".join(a.targets)) for a in await s.list_aliases(d)]

    _table(("source", "targets"), _with_store(ctx, read, create=False))


@alias.command("remove")
@click.argument("source")
@click.argument("target", required=False)
@click.pass_context
def alias_remove(ctx: click.Context, source: str, target: str | None) -> None:
    """Remove one TARGET of an alias, or the whole alias."""
    src = _alias_source(source)
    dest = _address(target) if target is not None else None
    _with_store(ctx, lambda s: s.remove_alias(src, dest), create=False)
    click.echo(f"alias {src} -> {dest} removed" if dest else f"alias {src} removed")


# --- mailboxes --------------------------------------------------------------------------------


@click.group()
def mailbox() -> None:
    """Folders of mail accounts."""


@mailbox.command("status")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of folders.")
@click.pass_context
def mailbox_status(ctx: click.Context, address: str, as_json: bool) -> None:
    """Each folder of an account: messages, unseen, bytes (like doveadm mailbox status)."""
    a = _address(address)
    folders = _with_store(ctx, lambda s: s.folder_status(a), create=False)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(f) for f in folders], indent=2))
        return
    rows: list[tuple[Any, ...]] = [(f.name, f.messages, f.unseen, f.bytes) for f in folders]
    rows.append(
        (
            "total",
            sum(f.messages for f in folders),
            sum(f.unseen for f in folders),
            sum(f.bytes for f in folders),
        )
    )
    _table(("folder", "messages", "unseen", "bytes"), rows)


# --- backup -----------------------------------------------------------------------------------


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@click.pass_context
def backup(ctx: click.Context, dest: Path) -> None:
    """Write a consistent copy of the database and message files to the new directory DEST
    (works while the server runs)."""
    _with_store(ctx, lambda s: s.backup(dest), create=False)
    click.echo(f"backup written to {dest}")


COMMANDS = (create_admin, domain, user, alias, mailbox, backup)


def register(group: click.Group) -> None:
    """Add the administration commands to the ``gomail`` command group."""
    for command in COMMANDS:
        group.add_command(command)
    from gomail.cli.importer import import_command

    group.add_command(import_command)
    from gomail.cli.queue import queue

    group.add_command(queue)
