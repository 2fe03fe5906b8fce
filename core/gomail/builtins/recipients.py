"""The core's recipient resolver: the ``recipients`` plugin of the ``rcpt`` stage.

For a recipient in one of our domains it finds the accounts the mail goes to, in this order:
the exact user, the exact alias, the base of a sub-address (``user+tag`` → ``user`` or its
alias), then the domain's catch-all alias ``@domain``. Aliases expand recursively (targets may
be users, aliases or outside addresses). The recipient is routed "local" with ``mailboxes``
and ``forward`` filled in, and the stage continues so that later plugins (greylisting) run.

A recipient whose local part is an SRS address (``SRS0=HHHH=TT=domain=local@`` one of our
domains, :mod:`gomail.srs`) is a bounce to mail we forwarded: when its hash is right and it is
not older than ``srs.max_age_days`` it is routed "local" with ``forward`` set to the address
it unwraps to (the original sender, or the first hop's SRS0 address for SRS1), so the bounce
goes back through our queue, from any client, as any mail to our domains does; a wrong hash,
an expired or malformed SRS address gets 550 5.1.1 and a log line. When it unwraps to one of
our own domains it is resolved as that address.

For another domain it routes "relay" when the session is authenticated and refuses the
recipient otherwise. Sender-specified routing (``user%other@``, ``other!user@``,
``"user@other"@``, source routes) is refused outright, except as ordinary outbound relay of an
authenticated user to a domain that is not ours.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gomail import srs
from gomail.address import (
    format_local,
    normalize_address,
    parse_local,
    parse_path,
    plus_base,
    split_address,
)
from gomail.options import Option
from gomail.verdict import Verdict

if TYPE_CHECKING:
    from gomail.context import Recipient, Session, Transaction
    from gomail.store import Store, User

log = logging.getLogger("gomail.recipients")

MAX_ALIAS_DEPTH = 10

RELAY_DENIED = Verdict.reject(554, "5.7.1", "Relay access denied")
BAD_SYNTAX = Verdict.reject(501, "5.1.3", "Bad recipient address syntax")
MAILBOX_FULL = Verdict.tempfail(452, "4.2.2", "Mailbox full")
ALIAS_TOO_DEEP = Verdict.tempfail(451, "4.4.6", "Alias expansion too deep, try again later")


def gomail_plugin_options() -> dict[str, Option]:
    return {
        "plus_separator": Option(
            str,
            "+",
            "Sub-address separator: user+tag@domain goes to user@domain. Several characters "
            "mean any of them (as Postfix's recipient_delimiter); empty turns it off.",
        ),
    }


async def gomail_rcpt(
    session: Session,
    transaction: Transaction,
    recipient: Recipient,
    options: dict[str, Any] | None,
    app: Any,
) -> Verdict | None:
    store: Store = app.store
    separator = (options or {}).get("plus_separator", "+")
    try:
        # SMTPUTF8 is the SMTP layer's to enforce; here we only resolve.
        parsed = parse_path(recipient.address, smtputf8=True)
    except ValueError:
        return BAD_SYNTAX

    ours = await store.has_domain(parsed.domain)
    if not ours:
        if session.authenticated:
            recipient.route = "relay"
            # Another host's local parts may be case-sensitive (RFC 5321 2.4): keep the case.
            recipient.forward = [f"{format_local(parsed.local)}@{parsed.domain}"]
            return None
        return RELAY_DENIED
    target = parsed.address
    if srs.is_srs(parsed.local):
        # Before the relay-trick check: an SRS local part holds the original sender's, which
        # may have '%' or '!'; the hash says we wrote it.
        try:
            local, domain = srs.for_config(app.config).reverse_local(parsed.local)
        except srs.SRSError as exc:
            log.warning(
                "refused SRS recipient %r from %s (session %s): %s",
                recipient.address, session.peer_ip, session.id, exc,
            )  # fmt: skip
            return Verdict.reject(
                550, "5.1.1", f"<{recipient.address}>: Recipient address rejected: {exc.reason}"
            )
        original = f"{format_local(local)}@{domain}"
        if not await store.has_domain(domain):
            log.info("SRS recipient %s goes back to %s", recipient.address, original)
            recipient.route = "local"
            recipient.mailboxes = []
            recipient.forward = [original]
            return None
        target = normalize_address(original)
    elif parsed.trick:
        log.info("refused %r: %s in a local domain", recipient.address, parsed.trick)
        return RELAY_DENIED

    resolver = _Resolver(store, separator, split_address(target)[1])
    try:
        await resolver.resolve(target, 0)
    except _TooDeep:
        log.warning("alias expansion for %s nests deeper than %d", parsed.address, MAX_ALIAS_DEPTH)
        return ALIAS_TOO_DEEP
    if not resolver.mailboxes and not resolver.forward:
        return Verdict.reject(
            550, "5.1.1", f"<{recipient.address}>: Recipient address rejected: User unknown"
        )

    if await _over_quota(store, resolver.mailboxes, _mail_size(transaction)):
        return MAILBOX_FULL

    recipient.route = "local"
    recipient.mailboxes = list(resolver.mailboxes)
    recipient.forward = resolver.forward
    return None


class _TooDeep(Exception):
    pass


class _Resolver:
    """Resolves one recipient: the local accounts and outside addresses it ends up at."""

    __slots__ = ("store", "separator", "domains", "mailboxes", "forward", "seen")

    def __init__(self, store: Store, separator: str, our_domain: str) -> None:
        self.store = store
        self.separator = separator
        self.domains: dict[str, bool] = {our_domain: True}
        self.mailboxes: dict[str, User] = {}  # canonical address → account, in order
        self.forward: list[str] = []
        self.seen: set[str] = set()

    async def resolve(self, address: str, depth: int) -> None:
        """Add where ``address`` (canonical, in one of our domains) goes."""
        if address in self.seen:
            return  # an alias loop, or a target reached twice: once is enough
        self.seen.add(address)
        user = await self.store.get_user(address)
        if user is not None:
            self.mailboxes.setdefault(address, user)
            return
        local, domain = split_address(address)
        alias = await self.store.get_alias(address)
        if alias is None:
            base = plus_base(parse_local(local), self.separator)
            if base is not None:
                base_address = f"{format_local(base)}@{domain}"
                user = await self.store.get_user(base_address)
                if user is not None:
                    self.mailboxes.setdefault(base_address, user)
                    return
                alias = await self.store.get_alias(base_address)
        if alias is None:
            alias = await self.store.get_alias("@" + domain)
        if alias is None:
            return
        if depth >= MAX_ALIAS_DEPTH:
            raise _TooDeep
        for target in alias.targets:
            await self.expand(target, depth + 1)

    async def expand(self, target: str, depth: int) -> None:
        try:
            address = normalize_address(target)
        except ValueError:
            log.warning("ignoring malformed alias target %r", target)
            return
        domain = split_address(address)[1]
        ours = self.domains.get(domain)
        if ours is None:
            ours = self.domains[domain] = await self.store.has_domain(domain)
        if ours:
            await self.resolve(address, depth)
        elif address not in self.forward:
            self.forward.append(address)


def _mail_size(transaction: Transaction) -> int:
    """The SIZE= the client declared in MAIL FROM (RFC 1870), 0 when none or malformed."""
    for opt in transaction.mail_options:
        name, eq, value = opt.partition("=")
        if eq and name.strip().upper() == "SIZE":
            try:
                return max(int(value.strip()), 0)
            except ValueError:
                return 0
    return 0


async def _over_quota(store: Store, mailboxes: dict[str, User], size: int) -> bool:
    for address, user in mailboxes.items():
        if user.quota is None:
            continue
        usage = await store.quota_usage(address)
        if usage >= user.quota or usage + size > user.quota:
            log.info("%s is over quota (%d + %d of %d bytes)", address, usage, size, user.quota)
            return True
    return False
