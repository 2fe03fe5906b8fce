"""The login guard: failures per client address within a window."""

from gomail import limits
from gomail.logins import LoginGuard


def test_locks_after_max_failures_and_ages_out(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    guard = LoginGuard(max_failures=3, window=60)
    for _ in range(2):
        guard.failed("192.0.2.7")
    assert not guard.locked("192.0.2.7")
    guard.failed("192.0.2.7")
    assert guard.locked("192.0.2.7")
    assert not guard.locked("192.0.2.8")
    now[0] += 61
    assert not guard.locked("192.0.2.7")


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4():
    guard = LoginGuard(max_failures=2, window=60)
    guard.failed("2001:db8::1")
    guard.failed("2001:db8::ffff:1")
    assert guard.locked("2001:db8::99")
    assert not guard.locked("2001:db8:0:1::1")
    guard.failed("::ffff:192.0.2.1")
    guard.failed("192.0.2.1")
    assert guard.locked("192.0.2.1")
