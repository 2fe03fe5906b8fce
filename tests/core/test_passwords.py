"""Password hashing: argon2id in threads, a concurrency limit, a cache of successes."""

from __future__ import annotations

import asyncio
import threading
import time

import argon2
import pytest
from gomail import passwords
from gomail.passwords import PasswordHasher


def cheap() -> argon2.PasswordHasher:
    return argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Counting:
    """Wraps a hasher's verify to count calls and the most that ran at once."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self.calls = 0
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()
        self._inner = hasher._verify_sync
        hasher._verify_sync = self  # type: ignore[method-assign]

    def __call__(self, stored: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self._inner(stored, password)
        finally:
            with self._lock:
                self.running -= 1


async def test_hash_and_verify_with_default_parameters():
    hasher = PasswordHasher()
    stored = await hasher.hash("correct horse")
    assert stored.startswith("$argon2id$")
    assert await hasher.verify(stored, "correct horse")
    assert not await hasher.verify(stored, "wrong horse")
    assert not hasher.needs_rehash(stored)


async def test_wrong_and_malformed():
    hasher = PasswordHasher(argon2_hasher=cheap())
    stored = await hasher.hash("pw")
    assert not await hasher.verify(stored, "PW")
    assert not await hasher.verify(stored, "")
    assert not await hasher.verify("", "pw")
    assert not await hasher.verify("not a hash", "pw")
    assert not await hasher.verify("$argon2id$v=19$m=1024,t=1,p=1$bad$bad", "pw")
    assert hasher.needs_rehash("not a hash")


async def test_concurrent_verifies_do_not_block_the_event_loop():
    hasher = PasswordHasher()  # argon2-cffi defaults: each verify takes real time
    counting = Counting(hasher)
    stored = [await hasher.hash(f"pw{i}") for i in range(4)]
    loop = asyncio.get_running_loop()
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(loop.time())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    start = loop.time()
    results = await asyncio.gather(
        *(hasher.verify(stored[i % 4], f"pw{i % 4}" if i % 2 else "wrong") for i in range(20))
    )
    elapsed = loop.time() - start
    done.set()
    await task
    assert results == [bool(i % 2) for i in range(20)]
    assert counting.most <= 2  # the semaphore held
    # The loop kept ticking the whole time: no gap near the length of one hash.
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) >= elapsed / 0.01 * 0.5
    assert max(gaps) < 0.1


async def test_cache_hit_is_fast_and_skips_argon2():
    hasher = PasswordHasher()
    stored = await hasher.hash("secret")
    counting = Counting(hasher)
    assert await hasher.verify(stored, "secret")
    assert counting.calls == 1
    start = time.perf_counter()
    for _ in range(100):
        assert await hasher.verify(stored, "secret")
    assert (time.perf_counter() - start) / 100 < 0.002
    assert counting.calls == 1
    # failures are not cached, and a hit for one password says nothing about another
    assert not await hasher.verify(stored, "Secret")
    assert not await hasher.verify(stored, "Secret")
    assert counting.calls == 3


async def test_cache_holds_no_password():
    hasher = PasswordHasher(argon2_hasher=cheap())
    stored = await hasher.hash("hunter2-very-secret")
    assert await hasher.verify(stored, "hunter2-very-secret")
    (key,) = hasher._cache
    assert isinstance(key, bytes) and len(key) == 32
    assert b"hunter2" not in key
    # keyed per process: another hasher derives another key for the same pair
    other = PasswordHasher(argon2_hasher=cheap())
    assert other._cache_key(stored, "hunter2-very-secret") != key


async def test_invalidate_and_expiry():
    hasher = PasswordHasher(argon2_hasher=cheap(), cache_ttl=0.05)
    counting = Counting(hasher)
    stored = await hasher.hash("pw")
    assert await hasher.verify(stored, "pw")
    assert await hasher.verify(stored, "pw")
    assert counting.calls == 1
    hasher.invalidate()
    assert await hasher.verify(stored, "pw")
    assert counting.calls == 2
    await asyncio.sleep(0.06)
    assert await hasher.verify(stored, "pw")
    assert counting.calls == 3


async def test_cache_is_bounded():
    hasher = PasswordHasher(argon2_hasher=cheap(), cache_size=2)
    stored = [await hasher.hash(f"pw{i}") for i in range(3)]
    for i in range(3):
        assert await hasher.verify(stored[i], f"pw{i}")
    assert len(hasher._cache) == 2
    counting = Counting(hasher)
    assert await hasher.verify(stored[2], "pw2")  # recent: cached
    assert counting.calls == 0
    assert await hasher.verify(stored[0], "pw0")  # evicted first
    assert counting.calls == 1


def test_hash_sync():
    hasher = PasswordHasher(argon2_hasher=cheap())
    stored = hasher.hash_sync("pw")
    assert argon2.PasswordHasher().verify(stored, "pw")
    module_level = passwords.hash_sync("pw")
    assert module_level.startswith("$argon2id$")
    assert asyncio.run(PasswordHasher().verify(module_level, "pw"))


def test_concurrency_must_be_positive():
    with pytest.raises(ValueError):
        PasswordHasher(concurrency=0)
