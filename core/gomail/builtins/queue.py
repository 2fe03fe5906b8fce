"""The core's outbound hand-off: recipients in other domains (relayed for an authenticated
user, or alias targets elsewhere) go on the durable outbound queue. Entry point ``queue``.

Quarantined messages are never relayed.
"""

from __future__ import annotations

from gomail import hookimpl


@hookimpl
async def gomail_deliver(transaction):
    if transaction.quarantined:
        return
    for rcpt in transaction.recipients:
        for address in rcpt.forward:
            transaction.plan.to_queue(address)
