"""The core's local delivery: each local recipient's copy goes to its INBOX (Junk when the
data stage quarantined the message). Entry point ``mailbox``."""

from __future__ import annotations

from gomail import hookimpl
from gomail.options import Option


@hookimpl
def gomail_plugin_options():
    return {
        "folder": Option(str, "INBOX", "folder for accepted mail"),
        "quarantine_folder": Option(str, "Junk", "folder for quarantined mail"),
    }


@hookimpl
async def gomail_deliver(transaction, options):
    folder = options["quarantine_folder"] if transaction.quarantined else options["folder"]
    for rcpt in transaction.recipients:
        for user in rcpt.mailboxes:
            transaction.plan.to_mailbox(user, folder)
