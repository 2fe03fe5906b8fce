"""Implicit TLS (465, 993): a client that opens connections and never finishes the TLS
handshake is held to the listener's connection limits, and to the handshake timeout, like
any other connection (issue 10, finding 5), while other clients keep being served."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import time

import pytest
from conftest import tls_client_context

LIMITS = {"connections": 30, "connections_per_ip": 5, "tls_handshake_timeout": 2}


@pytest.fixture(scope="module")
def g(tmp_path_factory, gomail_template):
    from conftest import module_server

    with module_server(tmp_path_factory, gomail_template, "tlsgate", {"limits": LIMITS}) as server:
        yield server


def silent(port: int, source: str) -> socket.socket:
    """A TCP connection that never says anything (no ClientHello)."""
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def refused(sock: socket.socket, wait: float = 1.0) -> bool:
    """True when the server drops the connection within ``wait`` seconds (reset or EOF)."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("listener", ["smtps", "imaps"])
def test_unfinished_handshakes_count_per_address(g, listener):
    port = g.ports[listener]
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(silent(port, "127.0.0.7")) for _ in range(5)]
        extra = stack.enter_context(silent(port, "127.0.0.7"))
        assert refused(extra), "a sixth silent connection from one address was kept"
        assert not refused(held[0], 0.3), "the first ones should wait for their handshake"
        # Another address is not held up by the first one's handshakes.
        raw = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        with tls_client_context().wrap_socket(raw) as tls:
            greeting = tls.recv(200)
        assert greeting.startswith(b"220 " if listener == "smtps" else b"* OK")


def test_handshakes_finished_in_time_work_and_count_as_connections(g):
    port = g.ports["smtps"]
    with smtplib.SMTP_SSL(
        "127.0.0.1", port, timeout=10, context=tls_client_context(), source_address=("127.0.0.8", 0)
    ) as client:
        assert client.ehlo()[0] == 250
        assert client.noop()[0] == 250


def test_a_silent_connection_is_dropped_after_the_handshake_timeout(g):
    timeout = LIMITS["tls_handshake_timeout"]
    port = g.ports["imaps"]
    with silent(port, "127.0.0.9") as sock:
        sock.settimeout(timeout + 10)
        started = time.monotonic()
        try:
            data = sock.recv(1)
        except ConnectionResetError:
            data = b""
        waited = time.monotonic() - started
    assert data == b""
    assert timeout - 1 < waited < timeout + 5
    assert "Traceback" not in g.log
