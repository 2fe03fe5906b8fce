"""Error storms: the same failure a thousand times a second is logged once per interval, with
a count, and its traceback at most once.

Out of file descriptors, asyncio's accept loop reports every failed ``accept()`` (up to the
listen backlog per wake-up, each with a traceback): 24,000 connections once wrote 720,000
tracebacks in a minute. :func:`install` (called by ``serve``) puts a loop exception handler
and a log filter in place that group failures by kind: the first of a kind in an interval is
logged, the others are counted and summed up in one line when the interval ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
import time
from collections.abc import Iterator

log = logging.getLogger("gomail.storms")

INTERVAL = 10.0  # seconds
MAX_KINDS = 1000  # kinds tracked at once; past it, new kinds share one
OTHER = "other errors"
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Throttle:
    """Occurrences per kind in fixed windows of ``interval`` seconds. Thread-safe: log
    records come from worker threads too."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # kind -> [window start, suppressed]
        self._traced: set[str] = set()

    def admit(self, kind: str) -> str | None:
        """The kind to log this occurrence under, or None when it is only counted."""
        now = time.monotonic()
        with self._lock:
            if kind not in self._windows and len(self._windows) >= MAX_KINDS:
                kind = OTHER
            window = self._windows.get(kind)
            # A new interval starts unless one is open, or one that ended with suppressed
            # occurrences still waits for flush() to report them (this one is counted in).
            if window is None or (now - window[0] >= self.interval and not window[1]):
                self._windows[kind] = [now, 0]
                return kind
            window[1] += 1
            return None

    def first_traceback(self, kind: str) -> bool:
        """True the first time a kind asks (its traceback is worth logging once)."""
        with self._lock:
            if kind in self._traced or len(self._traced) >= MAX_KINDS:
                return False
            self._traced.add(kind)
            return True

    def flush(self, force: bool = False) -> list[tuple[str, int]]:
        """(kind, count) of every ended interval that suppressed occurrences; resets them."""
        now = time.monotonic()
        out = []
        with self._lock:
            for kind, (start, suppressed) in list(self._windows.items()):
                if force or now - start >= self.interval:
                    if suppressed:
                        out.append((kind, int(suppressed)))
                    del self._windows[kind]
        return out


def _kind_of(context: dict) -> str:
    exc = context.get("exception")
    message = str(context.get("message") or "unhandled exception in event loop")
    # Messages name callbacks with their arguments: keep the stable beginning.
    head = message.split("\n", 1)[0][:60]
    if exc is None:
        return head
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{head}: {type(exc).__name__} errno {exc.errno}"
    return f"{head}: {type(exc).__name__}"


class LoopErrors:
    """The event loop's exception handler, and a log filter for the same job."""

    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        kind = self.throttle.admit(_kind_of(context))
        if kind is None:
            return
        exc = context.get("exception")
        sock = context.get("socket")
        fields = {"error": f"{type(exc).__name__}: {exc}" if exc is not None else None}
        if sock is not None:
            with contextlib.suppress(OSError):
                host, port = sock.getsockname()[:2]
                fields["address"] = f"{host}:{port}"
        exhausted = isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS
        if exhausted and str(context.get("message", "")).startswith("socket.accept()"):
            log.error(
                "cannot accept connections: %s (the process's RLIMIT_NOFILE or the "
                "system's file table is exhausted); retrying", exc.strerror,
                extra={"fields": fields, "storm_checked": True},
            )  # fmt: skip
            return
        # Out of descriptors or memory, a traceback says nothing that the limits do not.
        with_traceback = exc is not None and not exhausted and self.throttle.first_traceback(kind)
        log.error(
            "%s", context.get("message") or "unhandled exception in event loop",
            exc_info=exc if with_traceback else None,
            extra={"fields": fields, "storm_checked": True},
        )  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        """Errors and tracebacks from any logger: the first of a kind per interval passes,
        its traceback only the first time."""
        if getattr(record, "storm_checked", False):
            return True
        if record.levelno < logging.ERROR and not record.exc_info:
            return True  # per-event warnings (failed logins) are what fail2ban reads
        exc = record.exc_info[1] if record.exc_info else None
        kind = f"{record.name}: {str(record.msg)[:60]}: {type(exc).__name__ if exc else ''}"
        kind = self.throttle.admit(kind)
        if kind is None:
            return False
        if exc is not None and not self.throttle.first_traceback(kind):
            record.exc_info = None
            record.exc_text = None
            fields = dict(getattr(record, "fields", None) or {})
            fields["error"] = f"{type(exc).__name__}: {exc}"
            record.fields = fields
        return True

    def report(self, force: bool = False) -> None:
        for kind, count in self.throttle.flush(force):
            log.error(
                "%s: %d more times since the last report", kind, count,
                extra={"fields": {"repeated": count}, "storm_checked": True},
            )  # fmt: skip


@contextlib.contextmanager
def install(loop: asyncio.AbstractEventLoop, interval: float = INTERVAL) -> Iterator[LoopErrors]:
    """Throttle the loop's exception reports and every error logged through the root
    logger's handlers until the block ends; the counts are reported every interval."""
    errors = LoopErrors(Throttle(interval))
    handlers = list(logging.getLogger().handlers)
    previous = loop.get_exception_handler()
    loop.set_exception_handler(errors.handle)
    for h in handlers:
        h.addFilter(errors.filter)

    async def reporter() -> None:
        while True:
            await asyncio.sleep(interval)
            errors.report()

    task = loop.create_task(reporter())
    try:
        yield errors
    finally:
        task.cancel()
        errors.report(force=True)
        loop.set_exception_handler(previous)
        for h in handlers:
            h.removeFilter(errors.filter)
