"""gomail's Server in the test's own process, on free loopback ports, for tests that want to
see inside it (its plugins' hooks, its store) while talking to it over the network.

``await prepare_store(tmp_path, "example.org", {user: password_hash})`` makes the store a
Server opens (a domain, its users, aliases if given);
``async with running_server(tmp_path, recorder) as (server, ports):`` starts a Server on the
data directory tmp_path (prepare its store first) with every listener on a port of its own
(``ports["mx"]`` …) and a DNS server nobody answers on, with ``recorder`` (a ``Recorder``, or
any plugin) registered; it is stopped on leaving the block.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from gomail import hookimpl
from gomail.config import Config
from gomail.server import Server
from gomail.store.sqlite import SqliteStore

LISTENERS = ("mx", "submission", "smtps", "imap", "imaps")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """A plugin keeping every event: ``events`` is [(name, data), …] in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    @hookimpl
    async def gomail_event(self, event):  # a coroutine: run as a background task
        self.events.append((event.name, event.data))


async def prepare_store(
    data_dir: Path,
    domain: str,
    users: dict[str, str],
    aliases: dict[str, list[str]] | None = None,
) -> None:
    store = SqliteStore(data_dir)
    await store.open()
    await store.add_domain(domain)
    for user, password_hash in users.items():
        await store.add_user(user, password_hash, None)
    for alias, targets in (aliases or {}).items():
        await store.add_alias(alias, targets)
    await store.close()


@contextlib.asynccontextmanager
async def running_server(
    data_dir: Path, plugin: object, name: str = "recorder"
) -> AsyncIterator[tuple[Server, dict[str, int]]]:
    ports = {listener: free_tcp_port() for listener in LISTENERS}
    config = Config(
        data_dir=data_dir,
        hostname="mx.test",
        dns_nameservers=["127.0.0.1"],
        dns_port=free_tcp_port(),  # nothing answers there
        dns_timeout=1,
    )
    config.listen = {listener: ("127.0.0.1", port) for listener, port in ports.items()}
    server = Server(config)
    server.plugins.register(plugin, name)
    await server.start()
    try:
        yield server, ports
    finally:
        await server.stop()
