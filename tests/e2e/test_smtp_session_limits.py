"""What one SMTP client may do to a session (issue 10, findings 5, 7, 10, 11): each attack as a
client would make it, against a real server with small limits, and the server's answer."""

from __future__ import annotations

import base64
import socket
import ssl
import time

import pytest

SENDER = "someone@sender.example"
LIMITS = {
    "smtp_soft_error_limit": 3,
    "smtp_hard_error_limit": 6,
    "smtp_error_delay": 0.1,
    "smtp_junk_command_limit": 5,
    "unknown_recipients_per_session": 3,
    "unknown_recipients_per_ip": 1000,
}


@pytest.fixture(scope="module")
def limited(_module_gomail):
    """The module's server, restarted with small session limits."""
    g = _module_gomail
    g.stop()
    return g.start({"limits": LIMITS})


def closed(c) -> bool:
    """The server hung up (nothing more to read) within a few seconds."""
    c.sock.settimeout(5)
    try:
        return c.sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def timed(c, line: str) -> tuple[tuple[int, str], float]:
    t0 = time.monotonic()
    reply = c.cmd(line)
    return reply, time.monotonic() - t0


# --- finding 7: client text never reaches a header, a reply or a log line as a line break ----


def test_bare_cr_in_ehlo_is_refused_and_never_reaches_a_header(limited):
    g = limited
    with g.raw() as c:
        g.assert_reply(c.cmd(b"EHLO inj1.test\rX-Injected-Ehlo: EVIL1"), 501, "5.5.2")
        g.assert_reply(c.cmd(b"HELO inj1.test\rX-Injected-Helo: EVIL2"), 501, "5.5.2")
        g.assert_reply(c.cmd(b"EHLO nul\x00.test"), 501, "5.5.2")
        # no HELO was taken: the session still needs one
        g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 503, "5.5.1")
    with g.raw() as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd(b"MAIL FROM:<a@b.test>\rX-Injected-Mail: EVIL3"), 501, "5.5.2")
        g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")
        g.assert_reply(c.cmd(b"RCPT TO:<bob@example.org>\rX-Injected-Rcpt: EVIL4"), 501, "5.5.2")
        g.assert_reply(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
        msgid, data = g.make_message(SENDER, "bob@example.org")
        g.assert_reply(c.data(data), 250, "2.0.0")
    stored = [m for m in g.messages("bob@example.org") if msgid.encode() in m]
    assert len(stored) == 1
    assert b"X-Injected" not in stored[0]
    assert b"Received: from client.test ([127.0.0.1])" in stored[0]


def test_replies_never_echo_a_control_character(limited):
    g = limited
    with g.raw() as c:
        c.cmd("EHLO client.test")
        c.send(b"NO\rOP\x01X\r\n")  # an unknown verb is echoed back in the 500 reply
        raw = b""
        while not raw.endswith(b"\r\n"):
            raw += c.sock.recv(4096)
        assert raw.startswith(b"500 5.5.1"), raw
        assert b"\r" not in raw[:-2] and b"\x01" not in raw, raw
        assert b"NO?OP?X" in raw, raw


def test_login_name_with_line_breaks_cannot_forge_a_log_line(limited):
    g = limited
    # no space, quote or "=": the text log format would not quote it
    login = "nobody@example.org\r\n2099-01-01T00:00:00.000Z-FORGED-LOG-LINE"
    blob = base64.b64encode(f"\0{login}\0wrong".encode()).decode()
    with g.raw("smtps") as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd(f"AUTH PLAIN {blob}"), 535, "5.7.8")
    g.wait_for(lambda: "FORGED-LOG-LINE" in g.log)
    lines = [line for line in g.log.splitlines() if "FORGED-LOG-LINE" in line]
    assert lines and all(not line.startswith("2099") for line in lines), lines
    assert all("authentication failed" in line for line in lines), lines


# --- finding 11: STARTTLS only once ---------------------------------------------------------


def test_second_starttls_is_refused(limited):
    g = limited
    with g.raw("submission") as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.starttls(), 220)
        ehlo = c.cmd("EHLO client.test")
        assert "STARTTLS" not in ehlo[1], ehlo
        g.assert_reply(c.cmd("STARTTLS"), 503, "5.5.1")
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")  # still the same, working TLS session


def test_starttls_on_implicit_tls_is_refused(limited):
    g = limited
    with g.raw("smtps") as c:
        ehlo = c.cmd("EHLO client.test")
        assert "STARTTLS" not in ehlo[1], ehlo
        g.assert_reply(c.cmd("STARTTLS"), 503, "5.5.1")
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")


def test_commands_pipelined_after_starttls_are_discarded(limited):
    """CVE-2011-0411 style injection: what was sent in clear after STARTTLS must not be run
    inside the TLS session."""
    g = limited
    with g.raw("submission") as c:
        c.cmd("EHLO client.test")
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\nNOOP\r\n")
        g.assert_reply(c.reply(), 220)
        c.sock = g.tls_client_context().wrap_socket(c.sock, server_hostname="localhost")
        # the first reply inside TLS answers our EHLO, not an injected command
        code, text = c.cmd("EHLO client.test")
        assert code == 250 and "PIPELINING" in text, (code, text)
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")


# --- finding 10: error limits, junk commands, unknown recipients -----------------------------


def test_errors_are_slowed_past_the_soft_limit_and_cut_at_the_hard_limit(limited):
    g = limited
    with g.raw() as c:
        c.cmd("EHLO client.test")
        times = []
        for _ in range(5):  # errors 1..5: the 4th and 5th are delayed 0.1 and 0.2 s
            reply, took = timed(c, "RCPT TO:<bob@example.org>")
            g.assert_reply(reply, 503, "5.5.1")
            times.append(took)
        assert max(times[:3]) < 0.09, times
        assert 0.09 <= times[3] < 1.0 and times[4] >= 0.19, times
        reply, took = timed(c, "RCPT TO:<bob@example.org>")  # the 6th error: the hard limit
        g.assert_reply(reply, 503, "5.5.1")
        bye = c.reply()
        g.assert_reply(bye, 421, "4.7.0")
        assert "Too many errors" in bye[1], bye
        assert closed(c)


def test_a_delivered_message_restarts_the_error_count(limited):
    g = limited
    with g.raw() as c:
        c.cmd("EHLO client.test")
        for _ in range(3):
            g.assert_reply(c.cmd("RCPT TO:<bob@example.org>"), 503, "5.5.1")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        c.cmd("RCPT TO:<bob@example.org>")
        _, data = g.make_message(SENDER, "bob@example.org")
        g.assert_reply(c.data(data), 250, "2.0.0")
        for _ in range(5):  # five more errors: the session is not cut nor delayed much
            reply, took = timed(c, "RCPT TO:<bob@example.org>")
            g.assert_reply(reply, 503, "5.5.1")
        assert took < 0.5
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")


@pytest.mark.parametrize("junk", ["NOOP", "VRFY <bob@example.org>", "RSET", "HELP"])
def test_junk_commands_past_the_limit_count_as_errors(limited, junk):
    g = limited
    with g.raw() as c:
        c.cmd("EHLO client.test")
        replies = [c.cmd(junk) for _ in range(5)]  # within the junk limit: no error
        assert all(r[0] < 400 for r in replies), replies
        for _ in range(20):  # 6 errors at most (fewer when the command itself fails)
            reply = c.cmd(junk)
            if reply[0] == 421:
                break
        else:
            pytest.fail(f"{junk} was never limited")
        g.assert_reply(reply, 421, "4.7.0")
        assert closed(c)


def test_a_pipelined_flood_of_commands_is_cut_short(limited):
    """Thousands of commands sent at once, replies unread: the server reads only while it
    answers, stops at the error limits, and keeps answering everyone else."""
    g = limited
    with g.raw() as c:
        c.cmd("EHLO client.test")
        c.send(b"RCPT TO:<bob@example.org>\r\n" * 5000)
        replies = []
        while True:
            reply = c.reply()
            replies.append(reply)
            if reply[0] == 421:
                break
            assert len(replies) < 20, replies
        assert [r[0] for r in replies] == [503] * 6 + [421], replies
        assert closed(c)
    with g.raw() as c:
        g.assert_reply(c.cmd("EHLO client.test"), 250)


def test_unknown_recipients_close_the_session(limited):
    g = limited
    with g.raw() as c:
        c.cmd("EHLO client.test")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        for i in range(3):
            g.assert_reply(c.cmd(f"RCPT TO:<nobody{i}@example.org>"), 550, "5.1.1")
        # the cap reached: even a real user is not told apart any more
        g.assert_reply(c.cmd("RCPT TO:<bob@example.org>"), 421, "4.7.0")
        assert closed(c)


def test_unknown_recipients_are_counted_per_address_across_sessions(gomail_factory):
    g = gomail_factory("harvest").start(
        {"limits": {"unknown_recipients_per_ip": 4, "smtp_error_delay": 0.01}}
    )
    with g.raw() as c:
        c.cmd("EHLO client.test")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        for i in range(3):
            g.assert_reply(c.cmd(f"RCPT TO:<nobody{i}@example.org>"), 550, "5.1.1")
        g.assert_reply(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    with g.raw() as c:
        c.cmd("EHLO client.test")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        g.assert_reply(c.cmd("RCPT TO:<nobody9@example.org>"), 550, "5.1.1")
        g.assert_reply(c.cmd("RCPT TO:<bob@example.org>"), 421, "4.7.0")
        assert closed(c)
    with g.raw() as c:  # a new session from the same address: still refused
        c.cmd("EHLO client.test")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        g.assert_reply(c.cmd("RCPT TO:<alice@example.org>"), 421, "4.7.0")
    with g.raw(source="127.0.0.2") as c:  # another address is not
        c.cmd("EHLO client.test")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        g.assert_reply(c.cmd("RCPT TO:<alice@example.org>"), 250, "2.1.5")


# --- finding 5 (SMTP): connection limits -----------------------------------------------------


def test_connection_limits_per_address_and_in_all(gomail_factory):
    g = gomail_factory("connlimit").start({"limits": {"connections": 4, "connections_per_ip": 3}})
    port = g.ports["mx"]

    def connect(source: str) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        opened.append(s)
        return s

    def first_line(s: socket.socket) -> bytes:
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def hold(source: str, n: int) -> list[socket.socket]:
        """n connections from source, all greeted; retried while the probes that
        g.start() made are still being counted out."""
        deadline = time.monotonic() + 5
        while True:
            held = [connect(source) for _ in range(n)]
            if all(first_line(s).startswith(b"220 ") for s in held):
                return held
            assert time.monotonic() < deadline, "connections within the limits refused"
            for s in held:
                s.close()
            time.sleep(0.1)

    opened: list[socket.socket] = []
    try:
        held = hold("127.0.0.1", 3)
        over = connect("127.0.0.1")
        line = first_line(over)
        assert line.startswith(b"421 4.7.0 ") and b"your address" in line, line
        assert over.recv(1) == b"", "closed after the 421"
        other = connect("127.0.0.2")  # the 4th connection in all
        assert first_line(other).startswith(b"220 ")
        line = first_line(connect("127.0.0.3"))
        assert line.startswith(b"421 4.7.0 ") and b"too many connections" in line, line
        for _ in range(20):  # a flood of refusals writes one log line, not one each
            first_line(connect("127.0.0.1"))
        held[0].close()
        deadline = time.monotonic() + 5
        while True:  # the closed connection is counted out (asynchronously)
            line = first_line(connect("127.0.0.1"))
            if line.startswith(b"220 ") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert line.startswith(b"220 "), line
        # other listeners count their own connections
        with g.raw("smtps") as c:
            assert c.greeting[0] == 220
    finally:
        for s in opened:
            s.close()
    assert g.log.count("connections refused: limit reached") == 1, g.log[-3000:]
    assert "Traceback" not in g.log


def test_idle_clients_are_dropped_fast_under_stress(gomail_factory):
    """A slow-drip client holds a slot 300 s per command; once a listener holds 3/4 of its
    connections, the command timeout is the short stress timeout instead."""
    g = gomail_factory("stress").start(
        {"limits": {"connections": 4, "connections_per_ip": 4, "smtp_stress_timeout": 0.5}}
    )
    with g.raw() as c:  # the probes of g.start() are counted out by the time this is
        g.assert_reply(c.cmd("QUIT"), 221)
    time.sleep(0.2)
    with g.raw() as first, g.raw() as second:
        g.assert_reply(first.cmd("EHLO client.test"), 250)
        with g.raw() as third:  # 3 of 4 open: under stress from now on
            t0 = time.monotonic()
            assert closed(third)  # idle: dropped after the stress timeout
            assert 0.3 < time.monotonic() - t0 < 4
        g.assert_reply(second.cmd("NOOP"), 250, "2.0.0")  # armed before the stress: kept
        time.sleep(0.8)
        g.assert_reply(first.cmd("NOOP"), 250, "2.0.0")  # no stress any more: normal timeout
        time.sleep(0.8)
        g.assert_reply(first.cmd("NOOP"), 250, "2.0.0")
    assert "Traceback" not in g.log


# --- the same family: AUTH responses, command sizes -----------------------------------------


def test_over_long_auth_response_is_refused_without_a_traceback(limited):
    g = limited
    with g.raw("smtps") as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd("AUTH PLAIN"), 334)
        g.assert_reply(c.cmd("QUFB" * 20_000), 500, "5.5.6")
        g.assert_reply(c.cmd("AUTH LOGIN"), 334)
        g.assert_reply(c.cmd("QUFB" * 20_000), 500, "5.5.6")
        g.assert_reply(c.cmd("NOOP"), 250, "2.0.0")
    assert "Traceback" not in g.log, g.log[-3000:]


def test_repeated_ehlo_does_not_raise_the_command_size_limit(limited):
    g = limited
    long_mail = "MAIL FROM:<" + "a" * 600 + "@example.org>"
    with g.raw() as c:
        for _ in range(40):
            g.assert_reply(c.cmd("EHLO client.test"), 250)
        g.assert_reply(c.cmd(long_mail), 500, "5.5.2")
    with g.raw() as c:  # nor for another connection
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd(long_mail), 500, "5.5.2")


def test_zz_no_traceback_in_the_log(limited):
    assert "Traceback" not in limited.log, limited.log[-6000:]
