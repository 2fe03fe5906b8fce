"""Destination MX servers on loopback for outbound tests: aiosmtpd on 127.0.0.x addresses.

``Sink`` records what it receives and answers as told; ``free_port_on(hosts)`` finds one port
free on every address; ``MXServers(hosts, port, tls_context=...)`` starts one aiosmtpd server
per address (STARTTLS offered when a server-side TLS context is given) and stops them all.
"""

from __future__ import annotations

import socket
import ssl

from aiosmtpd.controller import Controller


def free_port_on(hosts: list[str] | str) -> int:
    """A TCP port that is free on every one of hosts."""
    hosts = [hosts] if isinstance(hosts, str) else hosts
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for h in hosts[1:]:
                with socket.socket() as s:
                    s.bind((h, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


class Sink:
    """An aiosmtpd handler that keeps what it receives and answers as told."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.rcpt_replies: dict[str, str] = {}  # recipient -> reply instead of 250
        self.data_replies: list[str] = []  # replies to DATA, used up one by one
        self.hide: set[str] = set()  # EHLO keywords not to advertise ("8BITMIME", "STARTTLS")
        self.mail_options: list[list[str]] = []  # each transaction's MAIL FROM parameters
        self.tls_sessions = 0  # transactions that arrived over TLS
        # replaces handle_DATA while set (aiosmtpd binds handle_* methods per connection, so
        # replacing the method would not reach connections the client keeps open)
        self.data_hook = None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [r for r in responses if r[4:].split(" ")[0].upper() not in self.hide]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.mail_options.append(list(mail_options))
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_hook is not None:
            return await self.data_hook(server, session, envelope)
        return await self.take(server, session, envelope)

    async def take(self, server, session, envelope):
        """What handle_DATA does without a data_hook: the reply told, or keep and 250."""
        if self.data_replies:
            return self.data_replies.pop(0)
        if session.ssl is not None:
            self.tls_sessions += 1
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 OK taken"


class MXServers:
    """One aiosmtpd server (with its own Sink) per address, all on one port.

    ``tls`` maps an address to the server-side SSLContext it offers STARTTLS with; addresses
    not in it offer no STARTTLS."""

    def __init__(
        self,
        hosts: list[str],
        port: int | None = None,
        tls: dict[str, ssl.SSLContext] | None = None,
    ) -> None:
        self.hosts = hosts
        self.port = port or free_port_on(hosts)
        self.tls = tls or {}
        self.sinks: dict[str, Sink] = {}
        self._controllers: list[Controller] = []

    def start(self) -> MXServers:
        for host in self.hosts:
            sink = Sink()
            kwargs = {}
            if host in self.tls:
                kwargs = {"tls_context": self.tls[host], "require_starttls": False}
            c = Controller(
                sink, hostname=host, port=self.port, ready_timeout=10, enable_SMTPUTF8=True,
                **kwargs,
            )  # fmt: skip
            c.start()
            self._controllers.append(c)
            self.sinks[host] = sink
        return self

    def stop(self) -> None:
        for c in self._controllers:
            c.stop()
        self._controllers.clear()
