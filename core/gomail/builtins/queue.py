"""The core's outbound hand-off: recipients in other domains (relayed for an authenticated
user, or alias targets elsewhere) go on the durable outbound queue. Entry point ``queue``.

Forwarding and SRS (:mod:`gomail.srs`): a copy for an outside address that an alias of ours
points to (a "local" recipient's ``forward``) is sent with the envelope sender rewritten to
an SRS address in our domain, when the sender is not null and not in one of our domains;
otherwise SPF fails downstream, since we are not the sender's mail server. The SRS domain is
``srs.domain``, else the alias's own domain. Relayed mail of authenticated users (route
"relay", their own address), null-sender mail (bounces) and senders in our domains keep
their sender; local copies always keep the original one (their Return-Path).

With ``srs: {rewrite: false}`` forwarded copies keep their sender (for forwarding to hosts
that do not check SPF, or know us); bounces to SRS addresses made before are still taken.

Quarantined messages are never relayed. The SRS secret is made (or read) at start.
"""

from __future__ import annotations

import logging

from gomail import hookimpl, srs
from gomail.address import normalize_domain, split_address

log = logging.getLogger("gomail.queue")


@hookimpl
async def gomail_startup(app):
    srs.for_config(app.config)  # a bad secret file stops the start, not the first forward


@hookimpl
async def gomail_deliver(transaction, app):
    if transaction.quarantined:
        return
    sender = transaction.sender
    forwards = any(r.route == "local" and r.forward for r in transaction.recipients)
    # the sender's domain is looked up only for mail that forwards: most mail does not
    rewrite = (
        forwards
        and app.config.srs_rewrite
        and bool(sender)
        and not await app.store.has_domain(split_address(sender)[1])
    )
    for rcpt in transaction.recipients:
        new_sender = None
        if rewrite and rcpt.route == "local" and rcpt.forward:
            try:
                alias_domain = normalize_domain(split_address(rcpt.address)[1])
                domain = srs.srs_domain(app.config, alias_domain)
                new_sender = srs.for_config(app.config).forward(sender, domain)
            except (OSError, ValueError) as exc:
                # Without SRS the copy may fail SPF downstream, but it is not lost.
                log.error("message %s: no SRS sender for %s: %s", transaction.id, sender, exc)
        for address in rcpt.forward:
            transaction.plan.to_queue(address, new_sender)
