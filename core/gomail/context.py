"""What a plugin is handed: the SMTP session, the mail transaction, its recipients."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Route = Literal["local", "relay"]


def new_id() -> str:
    """A short random id for sessions and queue entries (12 base32 characters)."""
    return secrets.token_hex(6).upper()


@dataclass(slots=True)
class Session:
    """One SMTP connection, from connect to QUIT.

    ``state`` is scratch space for plugins, one dict per plugin name by convention
    (``session.state.setdefault("greylist", {})``).
    """

    id: str
    listener: str
    pipeline: str
    peer_ip: str
    peer_port: int
    local_ip: str = ""
    local_port: int = 0
    helo: str | None = None
    tls: bool = False
    user: str | None = None
    started: float = field(default_factory=time.monotonic)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return self.user is not None


@dataclass(slots=True)
class Recipient:
    """One accepted (or candidate) recipient of a transaction.

    The rcpt stage resolves it: ``route`` becomes "local" with ``mailboxes`` (the local
    accounts it delivers to, after aliases) and ``forward`` (outside addresses an alias points
    to), or "relay" for an authenticated user's mail to another domain. A recipient that no
    plugin routed and no plugin explicitly accepted is refused as relaying (554 5.7.1).
    """

    address: str
    options: list[str] = field(default_factory=list)
    route: Route | None = None
    mailboxes: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)


@dataclass(slots=True)
class LocalDelivery:
    """A copy of the message for one local account's folder."""

    user: str
    folder: str = "INBOX"
    flags: tuple[str, ...] = ()


@dataclass(slots=True)
class DeliveryPlan:
    """What the ``deliver`` stage asks the store to make durable, in one atomic commit.

    Deliver plugins add to it; the core commits it once (shared with other sessions'
    commits) and answers 250 only after that. ``outbound_senders`` holds the envelope sender
    of a queued copy where it is not the transaction's (the SRS address of forwarded mail);
    local copies always keep the transaction's sender.
    """

    local: list[LocalDelivery] = field(default_factory=list)
    outbound: list[str] = field(default_factory=list)
    outbound_senders: dict[str, str] = field(default_factory=dict)

    def to_mailbox(self, user: str, folder: str = "INBOX", flags: tuple[str, ...] = ()) -> None:
        if not any(d.user == user and d.folder == folder for d in self.local):
            self.local.append(LocalDelivery(user, folder, flags))

    def to_queue(self, address: str, sender: str | None = None) -> None:
        """Queue a copy for ``address``, sent with ``sender`` as its envelope sender when
        given (else the transaction's). The first plugin to queue an address decides it."""
        if address not in self.outbound:
            self.outbound.append(address)
            if sender is not None:
                self.outbound_senders[address] = sender

    @property
    def empty(self) -> bool:
        return not self.local and not self.outbound


@dataclass(slots=True)
class Transaction:
    """One mail transaction: MAIL FROM, its recipients, and (after DATA) the message.

    ``auth_results`` collects Authentication-Results method results (``"spf=pass
    smtp.mailfrom=example.org"``) that the core writes as one header. ``quarantined`` is set
    when the data stage's verdict is quarantine: local copies go to the Junk folder and
    nothing is relayed.
    """

    id: str
    sender: str
    mail_options: list[str] = field(default_factory=list)
    recipients: list[Recipient] = field(default_factory=list)
    auth_results: list[str] = field(default_factory=list)
    quarantined: bool = False
    plan: DeliveryPlan = field(default_factory=DeliveryPlan)
    started: float = field(default_factory=time.monotonic)
    state: dict[str, Any] = field(default_factory=dict)
