"""``gomail run``: start the listeners on the configured pipelines, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket

from gomail import __version__, events, storms
from gomail.app import App
from gomail.config import Config
from gomail.delivery import QueueRunner
from gomail.dns import from_config as dns_from_config
from gomail.fdlimit import descriptors_needed, raise_fd_limit
from gomail.permissions import warn_loose_permissions
from gomail.pipeline import Listener, PipelineSet, load_pipelines
from gomail.plugins import PluginManager
from gomail.smtp.handler import Handler
from gomail.smtp.protocol import GomailSMTP
from gomail.spool import clear_spool
from gomail.store.sqlite import open_store
from gomail.tls import server_context, tune_asyncio_tls
from gomail.tlsgate import implicit_tls
from gomail.yamlfile import ConfigError

log = logging.getLogger("gomail")

# Where a listener goes when the process may not bind the privileged port it asks for.
UNPRIVILEGED = {25: 2525, 587: 2587, 465: 2465, 143: 2143, 993: 2993, 80: 8080, 443: 8443}
SHUTDOWN_GRACE = 30.0
# Listeners that are not SMTP (and so not in the pipeline file): name -> (default port, TLS).
PROTOCOL_LISTENERS = {"imap": (143, "starttls"), "imaps": (993, "implicit")}


def may_bind(port: int) -> bool:
    """Whether this process can bind ``port`` (tried, not guessed from the user id)."""
    if port >= 1024:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except PermissionError:
            return False
        except OSError as exc:
            return exc.errno != errno.EACCES
    return True


def resolve_addresses(config: Config, pipes: PipelineSet) -> dict[str, tuple[str, int]]:
    """Each listener's (host, port): from --listen/config, else the pipeline file's, moved to
    an unprivileged port when the privileged one cannot be bound."""
    unknown = set(config.listen) - set(pipes.listeners) - set(PROTOCOL_LISTENERS)
    if unknown:
        known = ", ".join(sorted([*pipes.listeners, *PROTOCOL_LISTENERS])) or "none"
        raise ConfigError(
            f"listen: no listener named {', '.join(sorted(unknown))} in {pipes.path} "
            f"(listeners: {known})"
        )
    out = {}
    for name, ln in pipes.listeners.items():
        if name in config.listen:
            out[name] = config.listen[name]
        elif ln.port < 1024 and not may_bind(ln.port):
            out[name] = (ln.host, UNPRIVILEGED.get(ln.port, ln.port + 10000))
        else:
            out[name] = (ln.host, ln.port)
    for name, (port, _tls) in PROTOCOL_LISTENERS.items():
        if name in config.listen:
            out[name] = config.listen[name]
        else:
            out[name] = ("0.0.0.0", port if may_bind(port) else UNPRIVILEGED[port])
    return out


def load_plugins() -> PluginManager:
    plugins = PluginManager()
    plugins.load_entrypoints()
    return plugins


class Server:
    """Listeners, the app they share, and an orderly shutdown."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.plugins = load_plugins()
        self.pipes = load_pipelines(config.pipeline_file, self.plugins, config.plugin_timeout)
        self.addresses = resolve_addresses(config, self.pipes)
        self.handlers: list[Handler] = []
        self.servers: list[asyncio.base_events.Server] = []
        self.imap: list = []  # gomail.imap.server.ImapListener
        self.app: App | None = None
        self.queue_runner: QueueRunner | None = None

    async def start(self) -> None:
        config = self.config
        raise_fd_limit(descriptors_needed(config, len(self.addresses)))
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        clear_spool(config.data_dir)
        tls = server_context(config)
        tune_asyncio_tls()
        store = open_store(config.data_dir, config.blob_inline_max)
        await store.open()
        warn_loose_permissions(config)
        self.app = app = App(config, self.plugins, self.pipes, store, dns=dns_from_config(config))
        for _name, impl in self.plugins.impls("startup"):
            await impl.function(**{n: app for n in impl.argnames})
        loop = asyncio.get_running_loop()
        for name, ln in self.pipes.listeners.items():
            host, port = self.addresses[name]
            handler = Handler(app, ln, self.pipes.pipelines[ln.pipeline])
            self.handlers.append(handler)
            factory = self._factory(handler, ln, tls)
            if ln.tls == "implicit":
                factory = implicit_tls(factory, tls, config.limits)
            srv = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
            self.servers.append(srv)
            bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in srv.sockets)
            log.info(
                "listening",
                extra={"fields": {"listener": name, "address": bound, "pipeline": ln.pipeline,
                                  "tls": ln.tls, "auth": ln.auth}},
            )  # fmt: skip
        await self._start_imap(app, tls)
        self.queue_runner = app.queue_runner = QueueRunner(app)
        await self.queue_runner.start()
        app.emit(events.SERVER_STARTED, version=__version__)

    async def _start_imap(self, app: App, tls) -> None:
        from gomail.imap.server import ImapListener

        for name, (_port, mode) in PROTOCOL_LISTENERS.items():
            host, port = self.addresses[name]
            listener = ImapListener(app, name, tls, implicit_tls=mode == "implicit")
            await listener.start(host, port)
            self.imap.append(listener)
            log.info(
                "listening",
                extra={"fields": {"listener": name, "address": listener.address, "tls": mode}},
            )

    def _factory(self, handler: Handler, ln: Listener, tls):
        cfg = self.config
        starttls = tls if ln.tls == "starttls" and ln.starttls != "none" else None

        def make() -> GomailSMTP:
            return GomailSMTP(
                handler,
                line_length_limit=cfg.max_line_length,
                data_size_limit=cfg.max_message_size,
                enable_SMTPUTF8=True,
                hostname=cfg.hostname,
                ident="ESMTP gomail",
                tls_context=starttls,
                require_starttls=ln.starttls == "required" and starttls is not None,
                auth_require_tls=ln.tls != "implicit",
                timeout=300,
            )

        return make

    async def stop(self) -> None:
        """Stop accepting, let transactions in flight finish (bounded), then close."""
        app = self.app
        if app is None:
            return
        app.stopping = True
        app.emit(events.SERVER_STOPPING)
        for srv in self.servers:
            srv.close()
        for imap in self.imap:
            imap.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE
        while loop.time() < deadline:
            busy = [c for h in self.handlers for c in h.connections if c.in_transaction]
            if not busy:
                break
            await asyncio.sleep(0.05)
        for h in self.handlers:
            for conn in list(h.connections):
                if conn.transport is not None:
                    try:
                        conn._writer.write(b"421 4.3.2 Server shutting down\r\n")
                    except Exception:
                        pass
                    conn.transport.close()
        await asyncio.sleep(0)
        for imap in self.imap:
            await imap.stop()
        for _name, impl in self.plugins.impls("shutdown"):
            try:
                await impl.function(**{n: app for n in impl.argnames})
            except Exception:
                log.exception("plugin %s failed at shutdown", _name)
        if self.queue_runner is not None:
            await self.queue_runner.stop()
        await app.events.drain()
        await app.store.close()
        log.info("stopped")


async def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT; 0 on a clean stop."""
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with storms.install(loop):
        await server.start()
        await stop.wait()
        log.info("stopping on signal")
        await server.stop()
    return 0
