"""Bad input: each gets a protocol-correct reply, leaves nothing half-written, and the server
keeps answering."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

SENDER = "someone@sender.example"


def still_answers(g, listener="mx"):
    with g.raw(listener) as c:
        assert c.greeting[0] == 220, c.greeting
        g.assert_reply(c.cmd("EHLO client.test"), 250)
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")


def test_unknown_command(shared_gomail):
    g = shared_gomail
    with g.raw() as c:
        c.cmd("EHLO client.test")
        code, text = c.cmd("FROBNICATE now")
        assert code in (500, 502), (code, text)
        g.assert_reply((code, text), code, "5.5.1")
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")


def test_commands_out_of_order(shared_gomail):
    g = shared_gomail
    with g.raw() as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd("RCPT TO:<alice@example.org>"), 503, "5.5.1")
        g.assert_reply(c.cmd("DATA"), 503, "5.5.1")
        g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")
        g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 503, "5.5.1")  # nested MAIL
        g.assert_reply(c.cmd("DATA"), 503, "5.5.1")  # no recipient yet
        g.assert_reply(c.cmd("RCPT TO:<alice@example.org>"), 250, "2.1.5")
        g.assert_reply(c.cmd("RSET"), 250, "2.0.0")
        g.assert_reply(c.cmd("RCPT TO:<alice@example.org>"), 503, "5.5.1")


def test_mail_before_helo(shared_gomail):
    g = shared_gomail
    with g.raw() as c:
        g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 503, "5.5.1")


@pytest.mark.parametrize(
    "line",
    [
        "MAIL FROM:alice",
        "MAIL FROM:<unterminated@example.org",
        "MAIL FROM:<a@b@example.org>",
        "MAIL TO:<someone@example.org>",
    ],
)
def test_malformed_mail(shared_gomail, line):
    g = shared_gomail
    with g.raw() as c:
        c.cmd("EHLO client.test")
        code, text = c.cmd(line)
        assert code in (501, 553), (code, text)
        assert text.startswith(("5.5.", "5.1.")), text
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")


@pytest.mark.parametrize(
    "params", ["BODY=8BITMIME BODY=7BIT", "SIZE=10 SIZE=10", "body=8bitmime SMTPUTF8 BODY=8BITMIME"]
)
def test_repeated_esmtp_parameter(shared_gomail, params):
    """RFC 5321: an ESMTP parameter appears once; a repeated one is refused, not the last
    one taken."""
    g = shared_gomail
    with g.raw() as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}> {params}"), 501, "5.5.4")
        g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}> BODY=8BITMIME SIZE=10"), 250, "2.1.0")
        code, text = c.cmd("RCPT TO:<alice@example.org> NOTIFY=NEVER NOTIFY=NEVER")
        g.assert_reply((code, text), 501, "5.5.4")
        assert "NOTIFY" in text, text
        g.assert_reply(c.cmd("RCPT TO:<alice@example.org>"), 250, "2.1.5")


def test_over_long_command_line(shared_gomail):
    g = shared_gomail
    with g.raw() as c:
        c.cmd("EHLO client.test")
        code, text = c.cmd("MAIL FROM:<" + "a" * 5000 + "@example.org>")
        assert code == 500, (code, text)
        assert text.startswith("5.5."), text
    still_answers(g)


def test_over_long_line_in_data_refused_whole_or_stored_whole(shared_gomail):
    g = shared_gomail
    long_line = "L" * 5000 + "\r\n"
    msgid, data = g.make_message(SENDER, "bob@example.org", body="short\r\n" + long_line)
    r = g.transact(SENDER, ["bob@example.org"], data)
    stored = [m for m in g.messages("bob@example.org") if msgid.encode() in m]
    if r["data"][0] == 250:
        assert len(stored) == 1 and stored[0].endswith(data)
    else:
        assert 500 <= r["data"][0] < 600, r["data"]
        assert r["data"][1][:2] == "5.", r["data"]
        assert stored == []
    still_answers(g)


def test_nul_byte_in_command(shared_gomail):
    g = shared_gomail
    with g.raw() as c:
        c.cmd("EHLO client.test")
        code, text = c.cmd(b"MAIL FROM:<ev\x00il@sender.example>")
        assert code in (500, 501, 553), (code, text)
        assert text.startswith(("5.5.", "5.1.", "5.6.")), text
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")
    still_answers(g)


def test_nul_byte_in_message_refused_whole_or_stored_whole(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "bob@example.org", body="before\r\nnul:\x00:here\r\n")
    r = g.transact(SENDER, ["bob@example.org"], data)
    stored = [m for m in g.messages("bob@example.org") if msgid.encode() in m]
    if r["data"][0] == 250:
        assert len(stored) == 1 and stored[0].endswith(data)
    else:
        assert 500 <= r["data"][0] < 600 and r["data"][1][:2] == "5.", r["data"]
        assert stored == []
    still_answers(g)


@pytest.mark.parametrize("where", ["mail", "rcpt"])
def test_non_ascii_address_without_smtputf8(shared_gomail, where):
    g = shared_gomail
    with g.raw() as c:
        c.cmd("EHLO client.test")
        if where == "mail":
            reply = c.cmd("MAIL FROM:<jürgen@sender.example>")
        else:
            g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")
            reply = c.cmd("RCPT TO:<anna@bücher.example>")
        code, text = reply
        assert code in (553, 501, 550), reply
        assert text.startswith(("5.6.7", "5.1.")), reply
        if code == 553:
            g.assert_reply(reply, 553, ("5.6.7", "5.1.7", "5.1.3"))
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")


def test_non_ascii_sender_with_smtputf8_accepted(shared_gomail):
    g = shared_gomail
    sender = "jürgen@sender.example"
    msgid, data = g.make_message(sender, "bob@example.org")
    r = g.transact(sender, ["bob@example.org"], data, mail_params="SMTPUTF8")
    g.assert_reply(r["mail"], 250, "2.1.0")
    g.assert_reply(r["data"], 250, "2.0.0")
    stored = [m for m in g.messages("bob@example.org") if msgid.encode() in m]
    assert len(stored) == 1
    assert stored[0].startswith("Return-Path: <jürgen@sender.example>\r\n".encode())


def test_disconnect_mid_data_stores_nothing(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "bob@example.org", body="partial\r\n" * 1000)
    c = g.raw()
    c.cmd("EHLO client.test")
    g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")
    g.assert_reply(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    assert c.cmd("DATA")[0] == 354
    c.send(data[: len(data) // 2])
    time.sleep(0.2)
    # close hard: an RST, as a client that dies does
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    time.sleep(0.5)
    assert msgid not in g.message_ids("bob@example.org")
    still_answers(g)


def test_disconnect_after_final_dot_without_waiting(shared_gomail):
    """A client that sends the whole message and leaves before the reply: the server either
    stores it (once) or not at all, and never half."""
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "bob@example.org")
    c = g.raw()
    c.cmd("EHLO client.test")
    c.cmd(f"MAIL FROM:<{SENDER}>")
    c.cmd("RCPT TO:<bob@example.org>")
    assert c.cmd("DATA")[0] == 354
    c.send(data + b".\r\n")
    c.close()
    ids = g.wait_for(lambda: g.message_ids("bob@example.org").count(msgid), timeout=2)
    assert ids in (0, 1)
    still_answers(g)


def test_message_over_size_stores_nothing_even_for_several_recipients(shared_gomail):
    g = shared_gomail
    users = ["alice@example.org", "bob@example.org"]
    msgid, data = g.make_message(SENDER, "x", body=("o" * 98 + "\r\n") * (g.MAX_SIZE // 100 + 10))
    r = g.transact(SENDER, users, data)
    g.assert_reply(r["data"], 552, "5.3.4")
    for u in users:
        assert msgid not in g.message_ids(u)
    still_answers(g)


def test_repeated_bad_auth_is_delayed_and_the_server_keeps_answering(shared_gomail):
    g = shared_gomail
    user = "bob@example.org"
    durations = []
    with g.raw("smtps") as c:
        c.cmd("EHLO client.test")
        for _ in range(3):
            t0 = time.monotonic()
            reply = c.cmd(f"AUTH PLAIN {g.auth_plain(user, 'wrong-' + uuid.uuid4().hex)}")
            durations.append(time.monotonic() - t0)
            if reply[0] == 421:  # the server may hang up on a repeat offender
                g.assert_reply(reply, 421, "4.7.0")
                break
            g.assert_reply(reply, 535, "5.7.8")
        else:
            # not logged in: sending is refused, so nothing can be stored
            g.assert_reply(c.cmd(f"MAIL FROM:<{user}>"), 530, "5.7.0")
    assert len(durations) >= 2
    assert max(durations[1:]) > durations[0] + 0.3, (
        f"failed logins not slowed down: {[round(d, 3) for d in durations]}"
    )
    # others are not locked out of the server, and the right password still works for bob
    still_answers(g, "smtps")
    with g.smtp("smtps") as s:
        s.ehlo("client.test")
        g.assert_reply(s.login(user, g.PASSWORD), 235, "2.7.0")


def test_bdat_if_chunking_offered(shared_gomail):
    g = shared_gomail
    with g.smtp("mx") as s:
        s.ehlo("client.test")
        chunking = s.has_extn("chunking")
    if not chunking:
        pytest.skip("CHUNKING not offered")
    msgid, data = g.make_message(SENDER, "bob@example.org")
    with g.raw() as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")
        g.assert_reply(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
        half = len(data) // 2
        c.send(f"BDAT {half}\r\n".encode() + data[:half])
        g.assert_reply(c.reply(), 250)
        c.send(f"BDAT {len(data) - half} LAST\r\n".encode() + data[half:])
        g.assert_reply(c.reply(), 250, "2.0.0")
    stored = [m for m in g.messages("bob@example.org") if msgid.encode() in m]
    assert len(stored) == 1 and stored[0].endswith(data)


def test_zz_no_traceback_in_the_log(shared_gomail):
    """Runs last in this module (pytest keeps file order): all the bad input above was
    answered without a traceback in the server's log."""
    assert "Traceback" not in shared_gomail.log, shared_gomail.log[-6000:]
