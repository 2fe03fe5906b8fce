"""Password hashing (argon2id) that never blocks the event loop.

One argon2 hash costs ~200 ms of CPU and 64 MiB with argon2-cffi's defaults, so hashing and
verifying run in worker threads behind a small concurrency limit, and successful verifications
are remembered for a few minutes (as Dovecot's auth cache does): a client that logs in every
minute costs one hash per cache lifetime, not one per login.

The cache never holds a password. Its keys are HMAC-SHA256, under a random key made for this
process, of the stored hash and the password; a changed password (a new stored hash) simply
misses. Failed verifications are not cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["PasswordHasher", "hash_sync"]


class PasswordHasher:
    """argon2id hashing and verification for the server.

    ``concurrency`` hashes run at once (each in a thread); successful verifications are cached
    for ``cache_ttl`` seconds, at most ``cache_size`` of them. ``argon2_hasher`` replaces
    argon2-cffi's default parameters (tests use cheaper ones).
    """

    def __init__(
        self,
        concurrency: int = 2,
        cache_ttl: float = 300.0,
        cache_size: int = 10_000,
        argon2_hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._hasher = argon2_hasher or argon2.PasswordHasher()
        self._limit = asyncio.Semaphore(concurrency)
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, float] = OrderedDict()  # key -> expiry (monotonic)

    async def hash(self, password: str) -> str:
        """The encoded argon2id hash of password (``$argon2id$v=19$...``)."""
        return await self._in_thread(self._hasher.hash, password)

    async def _in_thread(self, fn, *args):
        """fn(*args) in a worker thread, at most ``concurrency`` at once. A slot is held until
        its thread finishes, even when the caller is cancelled (a client that hangs up): a
        thread cannot be stopped, so giving the slot back early would let clients that
        connect, send a password and hang up run any number of 64 MiB hashes at once."""
        await self._limit.acquire()
        try:
            fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except BaseException:
            self._limit.release()
            raise
        fut.add_done_callback(lambda _f: self._limit.release())
        return await asyncio.shield(fut)

    def hash_sync(self, password: str) -> str:
        """The same, blocking: for the CLI, never on the event loop."""
        return self._hasher.hash(password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether password matches stored_hash. A malformed hash is simply False."""
        if not stored_hash:
            return False
        key = self._cache_key(stored_hash, password)
        now = time.monotonic()
        expiry = self._cache.get(key)
        if expiry is not None:
            if expiry > now:
                self._cache.move_to_end(key)
                return True
            del self._cache[key]
        ok = await self._in_thread(self._verify_sync, stored_hash, password)
        if ok and self.cache_ttl > 0 and self.cache_size > 0:
            self._cache[key] = time.monotonic() + self.cache_ttl
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return ok

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether stored_hash was made with other parameters than ours (rehash on login)."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    def invalidate(self) -> None:
        """Forget every cached verification (after a password change or a removal, to be
        strict; a changed stored hash already misses)."""
        self._cache.clear()

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError, ValueError):
            return False

    def _cache_key(self, stored_hash: str, password: str) -> bytes:
        # stored_hash never contains NUL, so the encoding of the pair is unambiguous.
        message = stored_hash.encode() + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()


_default: argon2.PasswordHasher | None = None


def hash_sync(password: str) -> str:
    """An argon2id hash with the default parameters, blocking (for the CLI)."""
    global _default
    if _default is None:
        _default = argon2.PasswordHasher()
    return _default.hash(password)
