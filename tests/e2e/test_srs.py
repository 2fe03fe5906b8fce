"""SRS through a real `gomail run`: forwarding by an alias, the bounce coming back, forgeries.

fwd@example.org is an alias for bob@remote.test. remote.test's MX (knot on loopback) is an
aiosmtpd sink on 127.0.0.2, and sender.test's (the original sender's domain) one on
127.0.0.3, on the same port (delivery.port). Mail from alice@sender.test to the alias must
reach remote.test with an SRS0 envelope sender of example.org; a null-sender bounce to that
address, arriving on port 25 like any bounce, must go on to alice@sender.test; a forged SRS
address is refused at RCPT.
"""

from __future__ import annotations

import pytest
from knotbed import knot_fixture, requires_knot
from mxbed import MXServers, Sink
from queuebed import run_config

pytestmark = requires_knot

REMOTE_MX, SENDER_MX = "127.0.0.2", "127.0.0.3"
ZONES = {
    "remote.test": "@ MX 10 mx\nmx A 127.0.0.2\n",
    "sender.test": "@ MX 10 mx\nmx A 127.0.0.3\n",
}
WAIT = 15.0  # seconds, the most any delivery may take here


knot = knot_fixture(ZONES)


@pytest.fixture
def mxs():
    servers = MXServers([REMOTE_MX, SENDER_MX]).start()
    yield servers.port, servers.sinks
    servers.stop()


@pytest.fixture
def g(gomail_factory, knot, mxs):
    port, _sinks = mxs
    server = gomail_factory()
    server.cli("alias", "add", "fwd@example.org", "bob@remote.test")
    return server.start(run_config(knot.port, port))


def forward_one(g, sink: Sink) -> tuple[str, list[str], bytes]:
    """alice@sender.test -> fwd@example.org on port 25; what remote.test's MX got."""
    msgid, raw = g.make_message(sender="alice@sender.test", to="fwd@example.org", subject="fw")
    assert g.send("alice@sender.test", ["fwd@example.org"], raw) == {}
    assert g.wait_for(lambda: sink.messages, timeout=WAIT), (
        f"nothing reached remote.test in {WAIT}s; queue: {g.queue()}\n{g.log[-3000:]}"
    )
    [got] = sink.messages
    assert msgid.encode() in got[2]
    return got


def test_forwarded_mail_has_an_srs0_sender_of_our_domain(g, mxs):
    _port, sinks = mxs
    sender, rcpts, content = forward_one(g, sinks[REMOTE_MX])
    assert rcpts == ["bob@remote.test"]
    local, _, domain = sender.rpartition("@")
    assert domain == "example.org"
    assert local.startswith("SRS0=") and local.endswith("=sender.test=alice"), sender
    hash_, stamp = local.split("=")[1:3]
    assert len(hash_) == 4 and len(stamp) == 2
    # The header From and the message are untouched; only the envelope changed.
    assert b"alice@sender.test" in content


def test_null_sender_bounce_to_the_srs_address_goes_to_the_original_sender(g, mxs):
    _port, sinks = mxs
    srs_address, _rcpts, _content = forward_one(g, sinks[REMOTE_MX])
    bounce = (
        b"From: MAILER-DAEMON@remote.test\r\nTo: " + srs_address.encode() + b"\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n\r\nbob is gone\r\n"
    )
    # As a remote MTA sends it: port 25, no AUTH, MAIL FROM:<>.
    reply = g.transact("", [srs_address], bounce)
    assert reply["mail"][0] == 250
    assert [code for code, _ in reply["rcpt"]] == [250], reply
    assert reply["data"][0] == 250, reply
    sender_sink = sinks[SENDER_MX]
    assert g.wait_for(lambda: sender_sink.messages, timeout=WAIT), (
        f"the bounce did not reach sender.test in {WAIT}s; queue: {g.queue()}\n{g.log[-3000:]}"
    )
    [(mail_from, rcpts, content)] = sender_sink.messages
    assert rcpts == ["alice@sender.test"]
    assert mail_from in ("", "<>")  # still a bounce: no DSN may answer it
    assert b"bob is gone" in content
    assert len(sinks[REMOTE_MX].messages) == 1  # nothing else went to remote.test


def test_forged_srs_addresses_are_refused_with_550(g, mxs):
    _port, sinks = mxs
    srs_address, _rcpts, _content = forward_one(g, sinks[REMOTE_MX])
    local = srs_address.rpartition("@")[0]
    hash_ = local.split("=")[1]
    forged_hash = "SRS0=" + ("AAAA" if hash_.upper() != "AAAA" else "BBBB") + local[9:]
    forged = {
        local.replace("=alice", "=mallory") + "@example.org": "invalid signature",
        forged_hash + "@example.org": "invalid signature",
        "SRS0=abcd=ZZ@example.org": "malformed SRS address",
    }
    reply = g.transact("", list(forged), b"Subject: x\r\n\r\nx\r\n")
    assert reply["mail"][0] == 250
    for (code, text), (address, reason) in zip(reply["rcpt"], forged.items(), strict=True):
        assert code == 550, (address, code, text)
        assert "5.1.1" in text and reason in text, text
    assert reply["data"] is None
    assert "refused SRS recipient" in g.log
    assert sinks[SENDER_MX].messages == []


def test_our_own_bounce_of_a_forwarded_copy_goes_to_the_original_sender(g, mxs):
    # remote.test refuses bob: the DSN the queue writes is addressed to the SRS sender, which
    # is ours, and must go on to alice@sender.test, not be dropped.
    _port, sinks = mxs
    sinks[REMOTE_MX].rcpt_replies["bob@remote.test"] = "550 5.1.1 bob is gone"
    _msgid, raw = g.make_message(sender="alice@sender.test", to="fwd@example.org", subject="fw")
    assert g.send("alice@sender.test", ["fwd@example.org"], raw) == {}
    sender_sink = sinks[SENDER_MX]
    assert g.wait_for(lambda: sender_sink.messages, timeout=WAIT), (
        f"no bounce reached sender.test in {WAIT}s; queue: {g.queue()}\n{g.log[-3000:]}"
    )
    [(mail_from, rcpts, content)] = sender_sink.messages
    assert rcpts == ["alice@sender.test"] and mail_from in ("", "<>")
    assert b"multipart/report" in content and b"550 5.1.1 bob is gone" in content
    assert sinks[REMOTE_MX].messages == []
