"""The store: accounts, mailboxes, messages and the outbound queue, behind one interface.

Protocol code (SMTP, IMAP, the CLI, plugins) talks only to :class:`Store`. The embedded
backend is SQLite (:mod:`gomail.store.sqlite`); the interface is kept narrow so that a
PostgreSQL backend can be added without touching protocol code.

Addresses and domains given to the store are already normalised by the caller
(:mod:`gomail.address`): lower-case domains in IDNA A-label form, no trailing dot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from gomail.context import LocalDelivery

SPECIAL_FOLDERS = ("INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive")


class StoreError(Exception):
    """A request the store refuses (duplicate, unknown name, …); its text is for the user."""


@dataclass(frozen=True, slots=True)
class User:
    address: str
    quota: int | None  # bytes; None means unlimited
    created: float


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # "name@domain", or "@domain" for a catch-all
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FolderStatus:
    name: str
    messages: int
    unseen: int
    bytes: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: str
    sender: str
    recipient: str
    size: int
    created: float
    next_attempt: float
    attempts: int
    state: str  # "queued", later "deferred", "bounced"
    last_error: str | None
    queue_id: str = ""  # the SMTP transaction's id (Delivery.queue_id); id is the entry's own


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted message to make durable: its final bytes and where it goes."""

    queue_id: str
    sender: str
    raw: bytes
    local: tuple[LocalDelivery, ...] = ()
    outbound: tuple[str, ...] = ()


class Store(ABC):
    """Everything gomail keeps. All methods are coroutines and safe to call concurrently."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the database and start background writers."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending commits and close."""

    # domains
    @abstractmethod
    async def add_domain(self, domain: str) -> None: ...
    @abstractmethod
    async def remove_domain(self, domain: str) -> None:
        """Remove a domain with no users or aliases left; StoreError otherwise."""

    @abstractmethod
    async def list_domains(self) -> list[str]: ...
    @abstractmethod
    async def has_domain(self, domain: str) -> bool: ...

    # users
    @abstractmethod
    async def add_user(self, address: str, password_hash: str, quota: int | None) -> None:
        """Create the account and its folders (SPECIAL_FOLDERS). Its domain must exist."""

    @abstractmethod
    async def get_user(self, address: str) -> User | None: ...
    @abstractmethod
    async def list_users(self, domain: str | None = None) -> list[User]: ...
    @abstractmethod
    async def get_password_hash(self, address: str) -> str | None: ...
    @abstractmethod
    async def set_password_hash(self, address: str, password_hash: str) -> None: ...
    @abstractmethod
    async def set_quota(self, address: str, quota: int | None) -> None: ...
    @abstractmethod
    async def remove_user(self, address: str) -> None:
        """Remove the account, its folders and its messages (blobs no longer used go too)."""

    @abstractmethod
    async def quota_usage(self, address: str) -> int:
        """Bytes stored in all the account's folders."""

    # administrators (of the server, not mail accounts)
    @abstractmethod
    async def add_admin(self, username: str, password_hash: str) -> None: ...
    @abstractmethod
    async def get_admin_password_hash(self, username: str) -> str | None: ...

    # aliases
    @abstractmethod
    async def add_alias(self, source: str, targets: list[str]) -> None:
        """Add targets to alias source (created if new). Its domain must exist."""

    @abstractmethod
    async def remove_alias(self, source: str, target: str | None = None) -> None:
        """Remove one target, or the whole alias when target is None."""

    @abstractmethod
    async def get_alias(self, source: str) -> Alias | None: ...
    @abstractmethod
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    # mailboxes and messages
    @abstractmethod
    async def folder_status(self, address: str) -> list[FolderStatus]:
        """Each folder of the account, INBOX first."""

    @abstractmethod
    async def deliver(self, delivery: Delivery) -> None:
        """Store the message once and add it to every local folder and the outbound queue,
        atomically. Returns only when it is durable (committed and fsync'd); concurrent
        calls share commits."""

    @abstractmethod
    async def list_messages(self, address: str, folder: str = "INBOX") -> list[tuple[int, bytes]]:
        """(UID, raw bytes) of every message in the folder, by UID. For tests and tools."""

    # outbound queue
    @abstractmethod
    async def list_queue(self) -> list[QueueEntry]: ...

    # maintenance
    @abstractmethod
    async def backup(self, dest: Path) -> None:
        """Write a consistent copy of database and blobs to the new directory dest while the
        server may keep running."""
