"""gomail's Server in the test's own process, on free loopback ports, for tests that want to
see inside it (its plugins' hooks, its store) while talking to it over the network.

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
