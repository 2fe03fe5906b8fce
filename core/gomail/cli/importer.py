"""``gomail import ADDRESS PATH``: move mail from another server into an account.

::

    gomail import alice@example.org ~/mail/alice.mbox
    gomail import alice@example.org /var/mail/vhosts/example.org/alice/Maildir
    gomail import alice@example.org ~/.thunderbird/x.default/Mail/Local\\ Folders --folder Old
    gomail import alice@example.org big.mbox --dry-run

PATH is an mbox file, a Maildir (with Maildir++ subfolders) or a directory of mbox files; see
:mod:`gomail.mailimport` for the folders each gives. The import can be interrupted (Ctrl-C,
quota, crash) and run again with the same ADDRESS and PATH: it continues where it stopped
and never stores a message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from gomail import mailimport
from gomail.cli.admin import _address, format_size
from gomail.mailimport import (
    Importer,
    ImportFailure,
    Journal,
    Stats,
    find_sources,
    journal_path,
    no_progress,
)
from gomail.store import StoreError


@click.command("import")
@click.argument("address")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option(
    "--folder",
    metavar="NAME",
    help="Import into this folder instead of INBOX (subfolders go below it).",
)
@click.option("--dry-run", is_flag=True, help="Read everything and report, store nothing.")
@click.pass_context
def import_command(
    ctx: click.Context, address: str, path: Path, folder: str | None, dry_run: bool
) -> None:
    """Import an mbox file, a Maildir (Maildir++) tree or a directory of mbox files into
    the account ADDRESS, keeping folders and Maildir flags. Run it again after an
    interruption: it continues without duplicating messages."""
    from gomail.store.sqlite import DB_NAME, open_store

    a = _address(address)
    if folder is not None and not folder.strip("/ "):
        raise click.ClickException(f"invalid folder name {folder!r}")
    obj = ctx.obj
    data_dir = Path(obj.data_dir)
    if not (data_dir / DB_NAME).exists():
        raise click.ClickException(f"no gomail database in {data_dir} (is --data right?)")
    try:
        sources = find_sources(path, folder.strip("/ ") if folder else None)
    except ImportFailure as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {exc.filename or path}: {exc.strerror}") from None

    absolute = path.resolve()
    interactive = sys.stderr.isatty()
    stats = Stats()

    def warn(text: str) -> None:
        click.echo(f"warning: {text}", err=True)

    async def run() -> None:
        store = open_store(data_dir, getattr(obj, "blob_inline_max", 1 << 20))
        await store.open()
        journal = None
        try:
            journal = Journal(journal_path(data_dir, path, a), dry_run=dry_run)
            if not dry_run:
                journal.set_info(path=str(absolute), address=a)
            importer = Importer(
                store,
                a,
                sources,
                journal,
                dry_run=dry_run,
                warn=warn,
                progress=_progress if interactive else no_progress,
                batch_messages=mailimport.BATCH_MESSAGES,
                batch_bytes=mailimport.BATCH_BYTES,
                max_size=mailimport.MAX_MESSAGE,
                stats=stats,
            )
            await importer.run()
        finally:
            if journal is not None:
                journal.close()
            await store.close()

    error = None
    try:
        asyncio.run(run())
    except (ImportFailure, StoreError) as exc:
        error = str(exc)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        error = f"{exc.strerror or exc}{where}"
    except KeyboardInterrupt:
        error = "interrupted: run the same command again to continue where it stopped"
    click.echo(summary(stats, dry_run))
    if error is not None:
        raise click.ClickException(error)


def summary(stats: Stats, dry_run: bool = False) -> str:
    """The one line printed at the end."""
    verb = "would import" if dry_run else "imported"
    folders = len(stats.folders)
    text = (
        f"{verb} {stats.imported} message(s) ({format_size(stats.bytes)}) into {folders} folder(s)"
    )
    if stats.created:
        text += f", {len(stats.created)} folder(s) {'to create' if dry_run else 'created'}"
    skipped = [
        (stats.malformed, "malformed"),
        (stats.too_large, "too large"),
        (stats.unreadable, "unreadable"),
        (stats.duplicates, "duplicate(s)"),
    ]
    parts = [f"{n} {what}" for n, what in skipped if n]
    total = sum(n for n, _ in skipped)
    text += f"; skipped {total}" + (f" ({', '.join(parts)})" if parts else "")
    if stats.done_before:
        text += f"; {stats.done_before} done by an earlier run"
    return text


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    with click.progressbar(length=max(total, 1), label=label, file=sys.stderr) as bar:
        yield bar.update
