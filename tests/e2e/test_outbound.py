"""Outbound delivery through a real `gomail run`: submission -> queue -> the far side's MX.

remote.test is served by knot on loopback (MX -> 127.0.0.2); an aiosmtpd server there stands
in for the remote MX. The server under test polls its queue every fraction of a second
(``delivery.poll_interval``), so every wait below is short and bounded.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from knotbed import knot_fixture, requires_knot
from mxbed import Sink, free_port_on
from queuebed import run_config

pytestmark = requires_knot

MX_IP = "127.0.0.2"
ZONES = {"remote.test": "@ MX 10 mx\nmx A 127.0.0.2\n"}
WAIT = 15.0  # seconds, the most any delivery may take here


knot = knot_fixture(ZONES)


@pytest.fixture
def remote_mx():
    sink = Sink()
    port = free_port_on(MX_IP)
    controller = Controller(sink, hostname=MX_IP, port=port, ready_timeout=10)
    controller.start()
    yield port, sink
    controller.stop()


@pytest.fixture
def g(gomail_factory, knot, remote_mx):
    port, _sink = remote_mx
    return gomail_factory().start(run_config(knot.port, port))


def submit(g, subject: str) -> str:
    msgid, raw = g.make_message(sender="alice@example.org", to="bob@remote.test", subject=subject)
    with g.submission() as s:
        assert s.sendmail("alice@example.org", ["bob@remote.test"], raw) == {}
    return msgid


def queue_json(g) -> list[dict]:
    return json.loads(g.cli("queue", "list", "--json").stdout)


def test_submitted_mail_reaches_the_remote_mx(g, remote_mx):
    _port, sink = remote_mx
    msgid = submit(g, "outbound")
    assert g.wait_for(lambda: sink.messages, timeout=WAIT), (
        f"nothing reached the MX in {WAIT}s; queue: {queue_json(g)}\n{g.log[-3000:]}"
    )
    [(sender, rcpts, content)] = sink.messages
    assert sender == "alice@example.org"
    assert rcpts == ["bob@remote.test"]
    names = [n.lower() for n in g.header_names(content)]
    assert "return-path" not in names
    assert "received" in names
    assert msgid.encode() in content
    assert g.wait_for(lambda: queue_json(g) == [], timeout=WAIT), queue_json(g)


def test_550_at_rcpt_bounces_to_the_sender(g, remote_mx):
    _port, sink = remote_mx
    sink.rcpt_replies["bob@remote.test"] = "550 5.1.1 No such user bob here"
    submit(g, "will bounce")
    inbox = g.wait_for(lambda: g.messages("alice@example.org"), timeout=WAIT)
    assert inbox, f"no DSN in alice's INBOX in {WAIT}s\n{g.log[-3000:]}"
    [dsn] = inbox
    assert b"multipart/report" in dsn and b"report-type=delivery-status" in dsn
    assert b"Final-Recipient: rfc822; bob@remote.test" in dsn
    assert b"550 5.1.1 No such user bob here" in dsn
    assert sink.messages == []
    assert queue_json(g) == []


def test_451_defers_then_retry_delivers(g, remote_mx):
    _port, sink = remote_mx
    sink.rcpt_replies["bob@remote.test"] = "451 4.7.1 Greylisted, try again later"

    def deferred():
        entries = queue_json(g)
        return entries if entries and entries[0]["state"] == "deferred" else None

    submit(g, "greylisted")
    entries = g.wait_for(deferred, timeout=WAIT)
    assert entries, f"not deferred in {WAIT}s: {queue_json(g)}\n{g.log[-3000:]}"
    [entry] = entries
    assert entry["recipient"] == "bob@remote.test"
    assert "451 4.7.1 Greylisted" in entry["last_error"]
    assert entry["next_attempt"] > time.time() + 60  # not retried by itself soon
    assert sink.messages == []

    sink.rcpt_replies.clear()  # the far side now accepts
    g.cli("queue", "retry", "--all")
    assert g.wait_for(lambda: sink.messages, timeout=WAIT), (
        f"not delivered after retry in {WAIT}s: {queue_json(g)}\n{g.log[-3000:]}"
    )
    assert [m[1] for m in sink.messages] == [["bob@remote.test"]]
    assert g.wait_for(lambda: queue_json(g) == [], timeout=WAIT), queue_json(g)


def test_queued_mail_goes_out_without_waiting_for_the_poll(gomail_factory, knot, remote_mx):
    # The runner polls only every 60 s here; the SMTP handler wakes it when it queues mail.
    port, sink = remote_mx
    g = gomail_factory().start(
        {
            "dns": {"nameservers": ["127.0.0.1"], "port": knot.port, "timeout": 2},
            "delivery": {"port": port, "poll_interval": 60, "connect_timeout": 5,
                         "command_timeout": 5, "data_timeout": 5},
        }
    )  # fmt: skip
    time.sleep(0.5)  # the runner's first pass (empty queue) is over; it now sleeps 60 s
    submit(g, "woken")
    assert g.wait_for(lambda: sink.messages, timeout=5.0), (
        f"nothing reached the MX in 5s; queue: {queue_json(g)}\n{g.log[-3000:]}"
    )
    assert [m[1] for m in sink.messages] == [["bob@remote.test"]]


def test_kill9_mid_queue_loses_nothing_and_sends_nothing_twice(g, remote_mx):
    # Mail to slow* hangs in DATA at the far side; the rest is taken at once. gomail is killed
    # (-9) once the far side's 250s for the others are recorded, with the slow ones mid-DATA.
    _port, sink = remote_mx
    stall = threading.Event()
    stall.set()
    taken = sink.take

    async def data(server, session, envelope):
        if any(r.startswith("slow") for r in envelope.rcpt_tos):
            for _ in range(300):  # bounded: at most 30 s
                if not stall.is_set():
                    break
                await asyncio.sleep(0.1)
            return "451 4.3.0 not this time"  # the far side never took it
        return await taken(server, session, envelope)

    sink.data_hook = data
    rcpts = [f"fast{i}@remote.test" for i in range(6)] + ["slow0@remote.test", "slow1@remote.test"]
    for rcpt in rcpts:
        _msgid, raw = g.make_message(sender="alice@example.org", to=rcpt, subject=rcpt)
        with g.submission() as s:
            assert s.sendmail("alice@example.org", [rcpt], raw) == {}

    def only_slow_left():
        return sorted(e["recipient"] for e in queue_json(g)) == rcpts[-2:]

    assert g.wait_for(only_slow_left, timeout=WAIT), queue_json(g)
    g.kill9()
    stall.clear()
    sink.data_hook = None
    g.start()
    assert g.wait_for(lambda: queue_json(g) == [], timeout=WAIT), (
        f"{queue_json(g)}\n{g.log[-3000:]}"
    )
    delivered = sorted(r for m in sink.messages for r in m[1])
    assert delivered == sorted(rcpts)  # every one, each exactly once
