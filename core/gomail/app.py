"""The running server as plugins see it: config, store, plugins, events, password checks."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from gomail.config import Config
from gomail.dns import Resolver, from_config
from gomail.events import EventBus
from gomail.limits import KeyedCounter, SlidingCount
from gomail.logins import LoginGuard
from gomail.passwords import PasswordHasher
from gomail.pipeline import PipelineSet
from gomail.plugins import PluginManager
from gomail.store import Store

log = logging.getLogger("gomail")


class App:
    """Shared by every listener and handed to plugins as ``app``."""

    def __init__(
        self,
        config: Config,
        plugins: PluginManager,
        pipelines: PipelineSet,
        store: Store,
        hasher: PasswordHasher | None = None,
        dns: Resolver | None = None,
    ) -> None:
        self.config = config
        self.plugins = plugins
        self.pipelines = pipelines
        self.store = store
        self.hasher = hasher or PasswordHasher()
        # The one DNS resolver (gomail.dns) for delivery and every plugin that asks DNS.
        self.dns = dns if dns is not None else from_config(config)
        self.events = EventBus(plugins, self)
        self.stopping = False
        # The outbound queue runner (gomail.delivery.QueueRunner), set by Server.start; woken
        # when mail is queued so that it goes out at once, not at the next poll.
        self.queue_runner = None
        self.login_guard = LoginGuard(config.login_max_failures, config.login_window)
        # Logged-in IMAP sessions per user and client address, all IMAP listeners together.
        self.imap_sessions = KeyedCounter(config.limits.imap_sessions_per_user_ip)
        # RCPTs refused as unknown users, per client address, on every SMTP listener
        # (address harvesting; limits.unknown_recipients_per_ip)
        self.unknown_recipients = SlidingCount(config.limits.unknown_recipients_window)
        # Taken while a large received message (SMTP, IMAP APPEND) is held in memory.
        self.large_messages = asyncio.Semaphore(config.limits.large_messages_at_once)
        # Verified against when the account does not exist, so that a wrong user name costs
        # as much time as a wrong password (no user enumeration by timing).
        self._dummy_hash: str | None = None

    def emit(self, name: str, **data: Any) -> None:
        """Broadcast an event to every plugin (see ``gomail_event``)."""
        self.events.emit(name, **data)

    async def check_password(self, address: str, password: str) -> bool:
        stored = await self.store.get_password_hash(address)
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hasher.hash(secrets.token_hex(16))
            await self.hasher.verify(self._dummy_hash, password)
            return False
        return await self.hasher.verify(stored, password)
