"""An open SQLite store for store tests: ``async with opened_store(dir, users=[...]) as s``.

The users' domains are added first, then the users (with a fake password hash: these tests
never log in); keyword arguments go to :class:`SqliteStore` (``blob_inline_max``). The store
is closed when the block ends, also when a test fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from gomail.store.sqlite import SqliteStore

FAKE_HASH = "$argon2id$fake"


@contextlib.asynccontextmanager
async def opened_store(
    directory: Path, users: Iterable[str] = (), domains: Iterable[str] = (), **kwargs
) -> AsyncIterator[SqliteStore]:
    users = list(users)
    store = SqliteStore(directory, **kwargs)
    await store.open()
    try:
        for domain in dict.fromkeys([*domains, *(u.rpartition("@")[2] for u in users)]):
            await store.add_domain(domain)
        for user in users:
            await store.add_user(user, FAKE_HASH, None)
        yield store
    finally:
        await store.close()
