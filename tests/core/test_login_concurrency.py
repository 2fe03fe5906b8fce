"""The failed-login limit holds when many attempts arrive at once, and hashing stays bounded
when clients hang up during the check."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from gomail import logins
from gomail.logins import LoginGuard
from gomail.passwords import PasswordHasher


def test_reservations_count_as_failures_until_settled():
    guard = LoginGuard(max_failures=3, window=60)
    assert all(guard.reserve("192.0.2.7") for _ in range(3))
    assert not guard.reserve("192.0.2.7")  # three in flight: the fourth is refused
    assert guard.reserve("192.0.2.8")  # another address is not affected
    guard.release("192.0.2.7")  # a success gives its reservation back
    assert guard.reserve("192.0.2.7")
    for _ in range(3):
        guard.release("192.0.2.7")
        guard.failed("192.0.2.7")
    assert guard.locked("192.0.2.7")
    assert not guard.reserve("192.0.2.7")


class SlowApp:
    """What login() needs of the App: a guard, events, and a password check that takes time
    (as argon2 does), counting how many checks it was asked for."""

    def __init__(self, max_failures: int) -> None:
        self.login_guard = LoginGuard(max_failures=max_failures, window=600)
        self.checks = 0
        self.events: list[tuple[str, dict]] = []

    def emit(self, name: str, **data) -> None:
        self.events.append((name, data))

    async def check_password(self, address: str, password: str) -> bool:
        self.checks += 1
        await asyncio.sleep(0.05)
        return password == "right"


async def attempt(app: SlowApp, peer: str, secret: str) -> logins.LoginResult:
    return await logins.login(
        app, protocol="imap", listener="imap", peer=peer, login="alice@example.org",
        secret=secret, mechanism="PLAIN", failures=0,
    )  # fmt: skip


@pytest.fixture
def no_delays(monkeypatch):
    monkeypatch.setattr(logins, "DELAY_STEP", 0.0)
    monkeypatch.setattr(logins, "DELAY_MAX", 0.0)


async def test_parallel_guesses_check_at_most_the_limit(no_delays):
    app = SlowApp(max_failures=5)
    results = await asyncio.gather(*(attempt(app, "192.0.2.7", "wrong") for _ in range(100)))
    assert app.checks == 5
    assert sum(1 for r in results if r.user is None and not r.locked) == 5
    assert sum(1 for r in results if r.locked) == 95
    # Locked out now, the right password included; another address logs in.
    assert (await attempt(app, "192.0.2.7", "right")).locked
    assert (await attempt(app, "192.0.2.99", "right")).user == "alice@example.org"


async def test_successes_give_their_reservation_back(no_delays):
    app = SlowApp(max_failures=2)
    results = await asyncio.gather(*(attempt(app, "192.0.2.7", "right") for _ in range(2)))
    assert [r.user for r in results] == ["alice@example.org"] * 2
    for _ in range(3):
        assert (await attempt(app, "192.0.2.7", "right")).user == "alice@example.org"


async def test_hanging_up_during_the_check_counts_as_a_failure(no_delays):
    app = SlowApp(max_failures=3)
    for _ in range(3):
        task = asyncio.create_task(attempt(app, "192.0.2.7", "wrong"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert app.checks == 3
    assert (await attempt(app, "192.0.2.7", "right")).locked


async def test_cancelled_verifies_keep_their_slot_until_the_thread_ends():
    """Hundreds of logins that hang up mid-check never run more hashes at once than the
    limit (each argon2 hash holds 64 MiB while it runs)."""
    hasher = PasswordHasher(concurrency=2)
    running = 0
    most = 0
    lock = threading.Lock()

    def slow_verify(stored: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return False

    hasher._verify_sync = slow_verify  # type: ignore[method-assign]
    tasks: list[asyncio.Task] = []
    for _ in range(20):  # waves of logins whose clients hang up while threads still run
        wave = [asyncio.create_task(hasher.verify("$argon2id$x", "pw")) for _ in range(10)]
        await asyncio.sleep(0.01)
        for t in wave:
            t.cancel()
        tasks += wave
    await asyncio.gather(*tasks, return_exceptions=True)
    # The slots come back as the threads end; then verification works again.
    assert await asyncio.wait_for(hasher.verify("$argon2id$x", "pw"), 10) is False
    assert most <= 2
