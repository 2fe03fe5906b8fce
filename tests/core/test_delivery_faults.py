"""Far sides that misbehave: garbage, a hang in DATA, a connection closed after the final dot, a
destination that never greets. Each is retried, none is stuck or sent twice, and a slow
destination does not hold up the others.

The misbehaving MX is a small hand-written SMTP server (aiosmtpd would not misbehave), on
127.0.0.6; a well-behaved aiosmtpd MX for other.test is on 127.0.0.7.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from gomail.delivery import QueueRunner
from gomail.store import Delivery
from knotbed import knot_fixture, requires_knot
from mxbed import MXServers, free_port_on
from queuebed import delivery_config, make_app, open_store

pytestmark = requires_knot

BAD_IP, GOOD_IP = "127.0.0.6", "127.0.0.7"
ZONES = {
    "bad.test": f"@ MX 10 mx\nmx A {BAD_IP}\n",
    "other.test": f"@ MX 10 mx\nmx A {GOOD_IP}\n",
}


class BadMX:
    """SMTP as far as ``mode`` allows: "good", "garbage", "hang_data", "close_after_dot",
    "silent" (never greets)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mode = "good"
        self.received: list[list[str]] = []  # recipients of each message answered 250
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, BAD_IP, self.port)

    async def stop(self) -> None:
        for w in list(self._writers):
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        mode = self.mode
        try:
            if mode == "silent":
                await reader.read()  # until the client gives up
                return
            if mode == "garbage":
                writer.write(b"\x00\xffHELLO?? not smtp\r\n")
                await writer.drain()
                while await reader.readline():
                    writer.write(b"what\r\n")
                    await writer.drain()
                return
            writer.write(b"220 bad.test ESMTP\r\n")
            rcpts: list[str] = []
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250 bad.test\r\n")
                elif verb == b"MAIL":
                    rcpts = []
                    writer.write(b"250 OK\r\n")
                elif verb == b"RCPT":
                    rcpts.append(line.split(b"<", 1)[1].split(b">", 1)[0].decode())
                    writer.write(b"250 OK\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    await writer.drain()
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                    if mode == "hang_data":
                        await reader.read()
                        return
                    if mode == "close_after_dot":
                        return
                    self.received.append(rcpts)
                    writer.write(b"250 2.0.0 taken\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"502 5.5.2 what\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


knot = knot_fixture(ZONES)


@pytest.fixture
async def env(tmp_path, knot):
    port = free_port_on([BAD_IP, GOOD_IP])
    bad = BadMX(port)
    await bad.start()
    good = MXServers([GOOD_IP], port).start()
    config = delivery_config(tmp_path, port, connect=2, command=2, data=2)
    store = await open_store(config, domains=(), users=())
    app = make_app(config, store, knot.port)
    app.emit = lambda name, **data: None
    runner = QueueRunner(app)
    yield app, runner, bad, good
    await runner.stop()
    await bad.stop()
    good.stop()
    await store.close()


async def enqueue(app, rcpt: str, qid: str) -> None:
    raw = f"From: <a@local.test>\r\nSubject: {qid}\r\n\r\nHi.\r\n".encode()
    await app.store.deliver(Delivery(qid, "a@local.test", raw, outbound=(rcpt,)))


async def received(good: MXServers) -> list[list[str]]:
    """The recipients of what the good MX got, once it got something (at most 2 s)."""
    sink = good.sinks[GOOD_IP]
    for _ in range(100):
        if sink.messages:
            break
        await asyncio.sleep(0.02)
    return [m[1] for m in sink.messages]


@pytest.mark.parametrize("mode", ["garbage", "hang_data", "close_after_dot", "silent"])
async def test_misbehaving_mx_is_retried_and_delivered_once(env, mode):
    app, runner, bad, _good = env
    bad.mode = mode
    await enqueue(app, "bob@bad.test", "Q1")
    t0 = time.time()
    await asyncio.wait_for(runner.run_once(t0), 15)  # bounded by the configured time-outs
    [entry] = await app.store.list_queue()
    assert entry.state == "deferred" and entry.attempts == 1
    assert entry.last_error.startswith("4")  # a deferral, not a bounce
    assert bad.received == []
    assert not runner._inflight  # nothing left claiming the entry
    bad.mode = "good"
    await asyncio.wait_for(runner.run_once(entry.next_attempt + 1), 15)
    assert bad.received == [["bob@bad.test"]]
    assert await app.store.list_queue() == []


async def test_slow_destination_does_not_hold_up_the_others(env):
    app, runner, bad, good = env
    bad.mode = "silent"  # connects, never greets: the runner waits its connect time-out
    await enqueue(app, "bob@bad.test", "Q1")
    await enqueue(app, "carol@other.test", "Q2")
    tasks = await runner._pass(time.time())
    assert await received(good) == [["carol@other.test"]]
    assert not all(t.done() for t in tasks)  # delivered while bad.test is still waiting
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    [entry] = await app.store.list_queue()
    assert entry.recipient == "bob@bad.test" and entry.state == "deferred"


async def test_a_full_batch_of_hanging_mail_does_not_starve_the_rest(env, monkeypatch):
    # The first pass is filled with mail for the silent destination; the second must skip
    # those (in flight) and reach other.test, queued last.
    app, runner, bad, good = env
    monkeypatch.setattr("gomail.delivery.runner.BATCH", 2)
    bad.mode = "silent"
    for i in range(3):
        await enqueue(app, f"u{i}@bad.test", f"Q{i}")
    await enqueue(app, "carol@other.test", "Q9")
    now = time.time() + 1
    first = await runner._pass(now)
    assert len(first) == 2 and runner._backlog
    second = await runner._pass(now)
    assert await received(good) == [["carol@other.test"]]
    assert not all(t.done() for t in first)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*first, *second), 15)


async def test_one_connection_serves_consecutive_messages_to_a_destination(env):
    app, runner, bad, _good = env
    for i in range(3):
        await enqueue(app, f"u{i}@bad.test", f"Q{i}")
        await runner.run_once()
    assert bad.received == [["u0@bad.test"], ["u1@bad.test"], ["u2@bad.test"]]
    assert bad.connections == 1  # kept open between the messages
    await runner.stop()  # says QUIT to the idle connection
    assert len(runner._pool) == 0


async def test_a_kept_connection_the_far_side_closed_is_replaced_without_a_deferral(env):
    app, runner, bad, _good = env
    await enqueue(app, "u0@bad.test", "Q0")
    await runner.run_once()
    for writer in list(bad._writers):  # the far side drops the idle connection
        writer.close()
    await asyncio.sleep(0.1)
    await enqueue(app, "u1@bad.test", "Q1")
    await runner.run_once()
    assert bad.received == [["u0@bad.test"], ["u1@bad.test"]]
    assert bad.connections == 2
    assert await app.store.list_queue() == []  # delivered at once, no retry needed
