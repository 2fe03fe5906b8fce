"""``gomail queue``: see and manage the outbound queue (works next to a running server)::

gomail queue list [--domain example.net] [--state deferred] [--json]
gomail queue show ID
gomail queue retry ID | --all       # due now (the running server picks it up within
gomail queue flush                  #   delivery.poll_interval seconds)
gomail queue delete ID              # dropped without delivery or bounce
"""

from __future__ import annotations

import dataclasses
import json
import time

import click

from gomail.cli.admin import _fail, _table, _with_store
from gomail.store import Store


@click.group("queue")
def queue() -> None:
    """The outbound queue (mail waiting to go to other servers)."""


@queue.command("list")
@click.option("--domain", help="Only recipients in this domain.")
@click.option("--state", type=click.Choice(["queued", "deferred", "bounced"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def queue_list(ctx: click.Context, domain: str | None, state: str | None, as_json: bool) -> None:
    """List queue entries: one per (message, recipient)."""
    entries = _with_store(ctx, lambda s: s.list_queue(), create=False)
    if domain:
        d = domain.strip().lower().rstrip(".")
        entries = [e for e in entries if e.recipient.rpartition("@")[2].lower() == d]
    if state:
        entries = [e for e in entries if e.state == state]
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(e) for e in entries], indent=2))
        return
    now = time.time()
    rows = [
        (
            e.id,
            e.queue_id,
            e.sender or "<>",
            e.recipient,
            e.state,
            e.attempts,
            "now" if e.next_attempt <= now else f"in {int(e.next_attempt - now)}s",
            (e.last_error or "")[:60],
        )
        for e in entries
    ]
    _table(("id", "queue-id", "sender", "recipient", "state", "tries", "next", "error"), rows)


@queue.command("show")
@click.argument("entry_id")
@click.pass_context
def queue_show(ctx: click.Context, entry_id: str) -> None:
    """Show one entry and its message's header."""
    key = _id(entry_id)

    async def read(s: Store):
        entry = await s.queue_entry(key)
        if entry is None:
            raise _fail(f"no queue entry {entry_id}")
        return entry, await s.queue_message(key)

    entry, raw = _with_store(ctx, read, create=False)
    for f in dataclasses.fields(entry):
        value = getattr(entry, f.name)
        if f.name in ("created", "next_attempt"):
            value = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(value))
        click.echo(f"{f.name}: {value}")
    click.echo("")
    end = raw.find(b"\r\n\r\n")
    click.echo(raw[: end if end >= 0 else len(raw)].decode("utf-8", "replace"))


def _id(text: str) -> int:
    if not text.isdigit():
        raise _fail(f"a queue entry id is a number (see gomail queue list), not {text!r}")
    return int(text)


@queue.command("retry")
@click.argument("entry_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Every waiting entry.")
@click.pass_context
def queue_retry(ctx: click.Context, entry_id: str | None, all_: bool) -> None:
    """Make an entry (or all) due now."""
    if all_ == (entry_id is not None):
        raise _fail("give an entry id or --all")
    ids = None if all_ else [_id(entry_id)]
    n = _with_store(ctx, lambda s: s.queue_retry(ids, time.time()), create=False)
    click.echo(f"{n} entr{'y' if n == 1 else 'ies'} due now")


@queue.command("flush")
@click.pass_context
def queue_flush(ctx: click.Context) -> None:
    """Make every waiting entry due now (like postqueue -f)."""
    n = _with_store(ctx, lambda s: s.queue_retry(None, time.time()), create=False)
    click.echo(f"{n} entr{'y' if n == 1 else 'ies'} due now")


@queue.command("delete")
@click.argument("entry_id")
@click.pass_context
def queue_delete(ctx: click.Context, entry_id: str) -> None:
    """Remove an entry without delivering it and without a bounce."""
    key = _id(entry_id)
    n = _with_store(ctx, lambda s: s.queue_delete([key]), create=False)
    if not n:
        raise _fail(f"no queue entry {entry_id}")
    click.echo(f"queue entry {entry_id} deleted")
