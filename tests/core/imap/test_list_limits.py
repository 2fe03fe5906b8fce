"""Issue 10, findings 1 and 2: LIST patterns that made a regex backtrack for seconds, folder
names deep or long enough to make LIST cubic, and the limits that now bound both (over a real
socket to an in-process server, and on the store directly)."""

from __future__ import annotations

import asyncio
import time

import pytest
from gomail.imap.patterns import MAX_PATTERN, MAX_PATTERNS
from gomail.store import MAX_FOLDER_LEVEL_BYTES, MAX_FOLDER_LEVELS, FolderLimit
from gomail.store import sqlite as sqlite_mod

from . import test_session_basic as _base
from .test_session_basic import USER, Imap

imap = _base.imap  # the fixture


def deep(levels: int, stem: str = "d") -> str:
    return "/".join(f"{stem}{i}" for i in range(levels))


async def names(c, pattern: str = "*", command: str = "LIST") -> list[bytes]:
    out = await c.cmd(f'{command} "" "{pattern}"')
    assert out[-1].split()[1] == b"OK", out
    return out[:-1]


# --- finding 1: patterns ----------------------------------------------------------------------


async def test_many_stars_answer_at_once_and_others_are_served(imap: Imap):
    for name in ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Lists/bbbbbbbbbbbbbbbbbbbbbbbbbbbb"):
        await imap.store.create_folder(USER, name)
    attacker = await imap.client()
    other = await imap.client()
    start = time.monotonic()
    await attacker.send(b'x LIST "" "' + b"*" * 60 + b'x"\r\n')
    # Meanwhile another client is answered, and at once.
    assert await other.cmd("NOOP") == [b"a1 OK NOOP completed"]
    assert await attacker.until("x") == [b"x OK LIST completed"]
    for pattern in ("%" * 60 + "x", "*%" * 30 + "x", "*a" * 30 + "x", "%/" * 20 + "x"):
        assert await attacker.cmd(f'LIST "" "{pattern}"') == [
            f"a{attacker.n} OK LIST completed".encode()
        ]
    assert time.monotonic() - start < 3


async def test_too_long_or_too_many_patterns_are_refused(imap: Imap):
    c = await imap.client()
    out = await c.cmd(f'LIST "" "{"*" * (MAX_PATTERN + 1)}"')
    assert out == [f"a1 NO [LIMIT] Pattern too long (more than {MAX_PATTERN} bytes)".encode()]
    many = " ".join(f'"p{i}*"' for i in range(MAX_PATTERNS + 1))
    out = await c.cmd(f'LIST "" ({many})')
    assert out == [f"a2 NO [LIMIT] Too many patterns (more than {MAX_PATTERNS})".encode()]
    out = await c.cmd(f'LSUB "" "{"%" * (MAX_PATTERN + 1)}"')
    assert out[-1].startswith(b"a3 NO [LIMIT] ")
    # The longest pattern allowed works, and the session goes on.
    longest = await c.cmd(f'LIST "" "{"*" * MAX_PATTERN}"')
    assert longest[:-1] == (await c.cmd('LIST "" "*"'))[:-1] and len(longest) == 7
    assert (await c.cmd("NOOP"))[-1] == b"a6 OK NOOP completed"


async def test_list_semantics_kept(imap: Imap):
    c = await imap.client()
    for name in ("p/q/r/s", "p/x", "Work/a"):
        assert (await c.cmd(f"CREATE {name}"))[-1].endswith(b"OK CREATE completed")
    for name in ("p", "p/q", "p/q/r", "p/x", "Work", "Work/a"):
        await c.cmd(f"UNSUBSCRIBE {name}")
    assert await names(c, "p/%") == [
        b'* LIST (\\HasChildren) "/" p/q',
        b'* LIST (\\HasNoChildren) "/" p/x',
    ]
    assert await names(c, "inbox") == [b'* LIST (\\HasNoChildren) "/" INBOX']
    out = await c.cmd('LIST "p/" "/q/%"')
    assert out[:-1] == [b'* LIST (\\HasChildren) "/" p/q/r']
    # LSUB: p/q/r/s is subscribed, its parents are not: shown \Noselect at the pattern's level.
    assert await names(c, "%", "LSUB") == [
        b'* LSUB () "/" INBOX',
        b'* LSUB () "/" Archive',
        b'* LSUB () "/" Drafts',
        b'* LSUB () "/" Junk',
        b'* LSUB () "/" Sent',
        b'* LSUB () "/" Trash',
        b'* LSUB (\\Noselect) "/" p',
    ]
    assert await names(c, "p/*", "LSUB") == [
        b'* LSUB () "/" p/q/r/s',
        b'* LSUB (\\Noselect) "/" p/q/r',
        b'* LSUB (\\Noselect) "/" p/q',
    ]
    out = await c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "p/%"')
    assert out[:-1] == [b'* LIST () "/" p/q ("CHILDINFO" ("SUBSCRIBED"))']
    out = await c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "Work"')
    assert out[:-1] == []


# --- finding 2: depth and length at CREATE and RENAME --------------------------------------------


async def test_create_refuses_too_deep_or_too_long_names(imap: Imap):
    c = await imap.client()
    out = await c.cmd(f"CREATE {deep(MAX_FOLDER_LEVELS + 1)}")
    assert out[-1].startswith(b"a1 NO [LIMIT] Mailbox name refused: ")
    assert b"16 levels" in out[-1]
    assert await names(c, "d0*") == []  # no parent was created either
    assert await c.cmd(f"CREATE {deep(MAX_FOLDER_LEVELS)}/") == [b"a3 OK CREATE completed"]
    assert len(await names(c, "d0*")) == MAX_FOLDER_LEVELS
    # A child of the deepest folder would be one level too many.
    out = await c.cmd(f"CREATE {deep(MAX_FOLDER_LEVELS)}/more")
    assert out[-1].startswith(b"a5 NO [LIMIT] ")
    long = "L" * (MAX_FOLDER_LEVEL_BYTES + 1)
    assert (await c.cmd(f"CREATE Top/{long}"))[-1].startswith(b"a6 NO [LIMIT] ")
    assert await c.cmd(f"CREATE Top/{long[1:]}") == [b"a7 OK CREATE completed"]
    # Bytes of UTF-8, not characters: 128 × "ü" is 256 bytes.
    await c.cmd("ENABLE UTF8=ACCEPT")
    assert (await c.cmd(f'CREATE "Top/{"ü" * 128}"'))[-1].startswith(b"a9 NO [LIMIT] ")
    assert (await c.cmd(f'CREATE "Top/{"ü" * 127}"'))[-1] == b"a10 OK CREATE completed"
    # A name of megabytes is refused as quickly.
    out = await c.cmd(b"CREATE {%d+}\r\n" % 60000 + b"a/" * 30000)
    assert out[-1].startswith(b"a11 NO [LIMIT] ")


async def test_rename_refuses_too_deep_targets_children_included(imap: Imap):
    c = await imap.client()
    base = deep(MAX_FOLDER_LEVELS - 2, "b")  # 14 levels
    for name in (base, "m/n/o"):
        assert (await c.cmd(f"CREATE {name}"))[-1].endswith(b"OK CREATE completed")
    # m/n/o would become base/m/n/o: 17 levels.
    out = await c.cmd(f"RENAME m {base}/m")
    assert out[-1].startswith(b"a3 NO [LIMIT] Mailbox name refused: ")
    assert b"subfolder" in out[-1]
    assert [line.rsplit(b" ", 1)[1] for line in await names(c, "m*")] == [b"m", b"m/n", b"m/n/o"]
    assert await names(c, f"{base}/*") == []
    # Into a name that is too deep itself (INBOX too), and one that just fits.
    assert (await c.cmd(f"RENAME m {deep(MAX_FOLDER_LEVELS + 1)}"))[-1].startswith(b"a6 NO [LIMIT]")
    out = await c.cmd(f"RENAME INBOX {deep(MAX_FOLDER_LEVELS + 1)}")
    assert out[-1].startswith(b"a7 NO [LIMIT]")
    assert (await c.cmd(f"RENAME m/n {base}/n"))[-1] == b"a8 OK RENAME completed"
    assert (await names(c, f"{base}/*"))[-1].endswith(f"{base}/n/o".encode())


async def test_list_over_a_full_depth_tree_is_fast(imap: Imap):
    level = "x" * 100
    tree = [
        "/".join(f"t{b}{level}" if i == 0 else f"{i}{level}" for i in range(depth))
        for b in range(40)
        for depth in (MAX_FOLDER_LEVELS,)
    ]
    await asyncio.gather(*(imap.store.create_folder(USER, name) for name in tree))
    total = len(await imap.store.list_folders(USER))
    assert total == 6 + 40 * MAX_FOLDER_LEVELS
    c = await imap.client()
    other = await imap.client()
    start = time.monotonic()
    await c.send(b'L1 LIST "" "*"\r\nL2 LIST "" "*%*%*%*%*%*/%*/*%"\r\nL3 LSUB "" "*"\r\n')
    assert await other.cmd("NOOP") == [b"a1 OK NOOP completed"]
    listed = await c.until("L1")
    assert len(listed) == total + 1
    assert sum(b"\\HasChildren" in line for line in listed) == 40 * (MAX_FOLDER_LEVELS - 1)
    assert len(await c.until("L2")) > 1
    assert len(await c.until("L3")) == total + 1
    assert time.monotonic() - start < 3


async def test_list_status_deleted_is_one_read_for_all_folders(imap: Imap, monkeypatch):
    """STATUS DELETED once read each folder's messages in full, one store read per folder
    LIST-STATUS showed; now one count for the account."""
    from .test_session_basic import message

    await imap.store.create_folder(USER, "Work")
    for folder, flags in (("INBOX", ["\\Deleted"]), ("INBOX", []), ("Work", ["\\Deleted"])):
        await imap.store.append(USER, folder, message(1), flags)
    await imap.store.append(USER, "Work", message(2), ["\\Deleted", "\\Seen"])
    reads = []
    counts = imap.store.deleted_counts

    async def counting(*args):
        reads.append(args)
        return await counts(*args)

    monkeypatch.setattr(imap.store, "deleted_counts", counting)
    c = await imap.client()
    out = await c.cmd('LIST "" "*" RETURN (STATUS (MESSAGES DELETED))')
    statuses = [line for line in out if line.startswith(b"* STATUS ")]
    assert b"* STATUS INBOX (MESSAGES 2 DELETED 1)" in statuses
    assert b"* STATUS Work (MESSAGES 2 DELETED 2)" in statuses
    assert b"* STATUS Sent (MESSAGES 0 DELETED 0)" in statuses
    assert len(statuses) == len(await imap.store.list_folders(USER))
    assert reads == [(USER,)]
    out = await c.cmd("STATUS Work (DELETED)")
    assert out[0] == b"* STATUS Work (DELETED 2)"
    assert reads[1:] == [(USER, "Work")]


# --- the store -----------------------------------------------------------------------------------


async def test_store_limits_and_get_folder(imap: Imap, monkeypatch):
    store = imap.store
    with pytest.raises(FolderLimit):
        await store.create_folder(USER, deep(MAX_FOLDER_LEVELS + 1))
    with pytest.raises(FolderLimit):
        await store.rename_folder(USER, "Sent", "s" * (MAX_FOLDER_LEVEL_BYTES + 1))
    inbox = await store.get_folder(USER, "inbox")
    assert inbox is not None and inbox.name == "INBOX"
    assert await store.get_folder(USER, "Nope") is None
    # The number of folders of an account is bounded too, parents created on the way counted.
    have = len(await store.list_folders(USER))
    monkeypatch.setattr(sqlite_mod, "MAX_FOLDERS", have + 2)
    with pytest.raises(FolderLimit, match="at most"):
        await store.create_folder(USER, "u/v/w")
    await store.create_folder(USER, "u/v")
    with pytest.raises(FolderLimit):
        await store.create_folder(USER, "z")
    with pytest.raises(FolderLimit):
        await store.rename_folder(USER, "INBOX", "Old")  # would add a folder
    await store.rename_folder(USER, "u", "y")  # moves, adds none
    assert len(await store.list_folders(USER)) == have + 2
    c = await imap.client()
    out = await c.cmd("CREATE z")
    limit = f"NO [LIMIT] too many folders: an account may have at most {have + 2}".encode()
    assert out[-1] == b"a1 " + limit
    out = await c.cmd("RENAME Sent p/q/Sent")  # two parents to create: the RENAME says so
    assert out[-1] == b"a2 " + limit + b" (2 would be created, parent folders included)"
    out = await c.cmd("RENAME INBOX Old")
    assert out[-1] == b"a3 " + limit
