"""The ``gomail`` command: ``gomail run`` and the administration commands.

Global options come before the command (``gomail --data DIR user list``). Plugins add their
own commands through the ``gomail_cli_commands`` hook.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from gomail import __version__
from gomail.config import Config, load_config
from gomail.permissions import make_process_private
from gomail.yamlfile import ConfigError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (database, blobs, TLS). Default: ./data",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settings file (YAML).",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default=None, help="Log line format."
)
@click.version_option(__version__, "--version", prog_name="gomail")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, config_file: Path | None, log_format):
    """gomail: an all-in-one mail server for your own domains."""
    # Before any command writes: the database, blobs, backups and keys are private.
    make_process_private()
    ctx.obj = _LazyConfig(config_file, data_dir, log_format)


class _LazyConfig:
    """The Config, read only when a command needs it (so --help never fails on a bad file)."""

    def __init__(self, config_file, data_dir, log_format) -> None:
        self._args = (config_file, data_dir, log_format)
        self._config: Config | None = None
        self.listen: tuple[str, ...] = ()

    @property
    def config(self) -> Config:
        if self._config is None:
            config_file, data_dir, log_format = self._args
            try:
                self._config = load_config(config_file, data_dir, self.listen, log_format)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._config

    def __getattr__(self, name: str):
        return getattr(self.config, name)


@main.command()
@click.option(
    "--listen",
    multiple=True,
    metavar="NAME=HOST:PORT",
    help="Where a listener (mx, submission, smtps) listens; repeatable.",
)
@click.pass_obj
def run(obj: _LazyConfig, listen: tuple[str, ...]) -> None:
    """Run the mail server until SIGTERM."""
    from gomail.logs import setup_logging
    from gomail.server import serve

    obj.listen = listen
    config = obj.config
    setup_logging(config.log_format)
    try:
        code = asyncio.run(serve(config))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    sys.exit(code)


@main.command()
def version() -> None:
    """Print the version of gomail."""
    click.echo(f"gomail {__version__}")


@main.command()
def plugins() -> None:
    """List installed plugins, their distribution and version, and the hooks each implements."""
    from gomail.server import load_plugins

    pm = load_plugins()
    rows = [(p.name, p.distribution, p.version, " ".join(p.hooks)) for p in pm.info()]
    rows += [(name, "-", "-", f"BROKEN: {why}") for name, why in sorted(pm.broken.items())]
    _table(("plugin", "distribution", "version", "hooks"), rows)


@main.group()
def pipeline() -> None:
    """Pipeline files."""


@pipeline.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def pipeline_check(obj: _LazyConfig, file: Path | None) -> None:
    """Check a pipeline file (default: the configured one) and print the effective pipelines."""
    from gomail.pipeline import load_pipelines
    from gomail.server import load_plugins

    path = file or obj.config.pipeline_file
    try:
        pipes = load_pipelines(path, load_plugins(), obj.config.plugin_timeout)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(pipes.describe())
    click.echo("ok")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(gomail completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    comp = cls(main, {}, "gomail", "_GOMAIL_COMPLETE")
    click.echo(comp.source())


def _table(header: tuple[str, ...], rows: list[tuple]) -> None:
    cells = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _register_more() -> None:
    try:
        from gomail.cli import admin
    except ImportError:  # the admin commands are being written
        admin = None
    if admin is not None:
        admin.register(main)
    from gomail.server import load_plugins

    for _name, impl in load_plugins().impls("cli_commands"):
        impl.function(group=main)


_register_more()
