"""Events: everything the server does, broadcast to every plugin's ``gomail_event`` hook."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gomail.plugins import PluginManager

log = logging.getLogger("gomail.events")

# The names the core emits; plugins may emit their own, dotted the same way.
EMAIL_RECEIVED = "email.received"
EMAIL_DELIVERED = "email.delivered"
EMAIL_QUEUED = "email.queued"
EMAIL_REJECTED = "email.rejected"
EMAIL_SENT = "email.sent"  # the outbound queue: a far server accepted recipients
EMAIL_DEFERRED = "email.deferred"
EMAIL_BOUNCED = "email.bounced"  # a far server refused recipients for good (5xx)
# gomail gave up on recipients itself: no such domain, null MX, expired after max_age, an
# outbound policy's reject
EMAIL_FAILED = "email.failed"
LOGIN_FAILED = "security.login_failed"
LOGIN_SUCCEEDED = "security.login_succeeded"
USER_CREATED = "user.created"
SERVER_STARTED = "server.started"
SERVER_STOPPING = "server.stopping"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: a dotted name, when, and what about it."""

    name: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)


class EventBus:
    """Calls every plugin's ``gomail_event``; coroutines it gets back run as tracked tasks."""

    def __init__(self, plugins: PluginManager, app: Any) -> None:
        self._impls = plugins.impls("event")
        self._app = app
        self._tasks: set[asyncio.Task] = set()

    def emit(self, name: str, **data: Any) -> None:
        if not self._impls:
            return
        event = Event(name, data)
        for plugin, impl in self._impls:
            try:
                kwargs = {"event": event, "app": self._app}
                result = impl.function(**{n: kwargs[n] for n in impl.argnames})
            except Exception:
                log.exception("plugin %s failed handling event %s", plugin, name)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(self._guard(plugin, name, result))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(plugin: str, name: str, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("plugin %s failed handling event %s", plugin, name)

    async def drain(self, grace: float = 10.0) -> None:
        """Wait (bounded) for event handlers still running, at shutdown."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
