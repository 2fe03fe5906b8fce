"""Error storms are logged once per interval with a count, tracebacks at most once a kind."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

from gomail import storms
from gomail.storms import LoopErrors, Throttle


def test_throttle_admits_the_first_of_a_kind_per_interval(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(storms.time, "monotonic", lambda: now[0])
    t = Throttle(interval=10)
    assert t.admit("a") == "a"
    assert t.admit("b") == "b"
    assert [t.admit("a") for _ in range(500)] == [None] * 500
    assert t.flush() == []  # the interval has not ended
    now[0] += 10
    assert t.admit("a") is None  # counted in with the interval still to be reported
    assert t.flush() == [("a", 501)]
    assert t.admit("a") == "a"
    assert t.flush(force=True) == []


def test_throttle_bounds_its_kinds(monkeypatch):
    monkeypatch.setattr(storms, "MAX_KINDS", 3)
    t = Throttle()
    assert [t.admit(f"k{i}") for i in range(5)] == ["k0", "k1", "k2", storms.OTHER, None]


async def test_accept_failures_log_one_line_without_traceback(caplog):
    loop = asyncio.get_running_loop()
    errors = LoopErrors(Throttle(interval=60))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        exc = OSError(errno.EMFILE, "Too many open files")
        context = {"message": "socket.accept() out of system resource", "exception": exc,
                   "socket": sock}  # fmt: skip
        with caplog.at_level(logging.INFO, logger="gomail.storms"):
            for _ in range(1000):
                errors.handle(loop, context)
            errors.report(force=True)
    lines = [r for r in caplog.records if r.name == "gomail.storms"]
    assert len(lines) == 2
    assert lines[0].getMessage().startswith("cannot accept connections: Too many open files")
    assert lines[0].exc_info is None
    assert "999 more times" in lines[1].getMessage()


def test_log_filter_keeps_one_traceback_per_kind():
    errors = LoopErrors(Throttle(interval=0))  # every occurrence starts a new interval
    log = logging.getLogger("gomail.test")

    def record() -> logging.LogRecord:
        try:
            raise ValueError("bad")
        except ValueError as exc:
            return log.makeRecord(log.name, logging.ERROR, __file__, 1, "session failed", (),
                                  (ValueError, exc, exc.__traceback__))  # fmt: skip

    first, second = record(), record()
    assert errors.filter(first) and first.exc_info is not None
    assert errors.filter(second) and second.exc_info is None
    assert second.fields["error"] == "ValueError: bad"
    warning = log.makeRecord(log.name, logging.WARNING, __file__, 1, "authentication failed",
                             (), None)  # fmt: skip
    assert all(errors.filter(warning) for _ in range(100))  # per-event warnings all pass
