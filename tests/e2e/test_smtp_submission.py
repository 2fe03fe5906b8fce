"""Submission on 587 (STARTTLS, then AUTH) and 465 (implicit TLS); extensions; SIZE; swaks."""

from __future__ import annotations

import base64
import re
import smtplib
import uuid

import pytest


def ehlo_features(s: smtplib.SMTP) -> dict[str, str]:
    code, _ = s.ehlo("client.test")
    assert code == 250
    return dict(s.esmtp_features)


# --- what EHLO says -----------------------------------------------------------------------


def test_ehlo_on_mx(shared_gomail):
    g = shared_gomail
    with g.smtp("mx") as s:
        f = ehlo_features(s)
    assert f.get("size") == str(g.MAX_SIZE), f
    for ext in ("8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes", "starttls"):
        assert ext in f, (ext, f)


def test_ehlo_on_submission_before_and_after_starttls(shared_gomail):
    g = shared_gomail
    with g.smtp("submission") as s:
        f = ehlo_features(s)
        assert f.get("size") == str(g.MAX_SIZE), f
        for ext in ("8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes", "starttls"):
            assert ext in f, (ext, f)
        assert "auth" not in f, f"AUTH offered before STARTTLS on 587: {f}"
        code, _ = s.starttls(context=g.tls_client_context())
        assert code == 220
        f = ehlo_features(s)
        assert "starttls" not in f, f
        mechanisms = f.get("auth", "").upper().split()
        assert "PLAIN" in mechanisms and "LOGIN" in mechanisms, f


def test_ehlo_on_smtps(shared_gomail):
    g = shared_gomail
    with g.smtp("smtps") as s:
        f = ehlo_features(s)
    assert "starttls" not in f, f"STARTTLS offered on implicit TLS: {f}"
    mechanisms = f.get("auth", "").upper().split()
    assert "PLAIN" in mechanisms and "LOGIN" in mechanisms, f
    assert f.get("size") == str(g.MAX_SIZE), f
    for ext in ("8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes"):
        assert ext in f, (ext, f)


# --- SIZE ---------------------------------------------------------------------------------


def test_size_declared_too_big_refused_at_mail(shared_gomail):
    g = shared_gomail
    r = g.transact("someone@sender.example", [], mail_params=f"SIZE={g.MAX_SIZE + 1}")
    g.assert_reply(r["mail"], 552, "5.3.4")
    r = g.transact("someone@sender.example", ["alice@example.org"], mail_params="SIZE=1000")
    g.assert_reply(r["mail"], 250, "2.1.0")


def test_message_over_size_refused_and_not_stored(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(
        "someone@sender.example", "bob@example.org", body=("b" * 78 + "\r\n") * 14000
    )
    assert len(data) > g.MAX_SIZE
    r = g.transact("someone@sender.example", ["bob@example.org"], data)
    g.assert_reply(r["data"], 552, "5.3.4")
    assert msgid not in g.message_ids("bob@example.org")
    # the server is fine afterwards
    msgid, data = g.make_message("someone@sender.example", "bob@example.org")
    r = g.transact("someone@sender.example", ["bob@example.org"], data)
    g.assert_reply(r["data"], 250, "2.0.0")


# --- authentication -----------------------------------------------------------------------


def test_auth_before_starttls_refused_on_587(shared_gomail):
    g = shared_gomail
    with g.raw("submission") as c:
        c.cmd("EHLO client.test")
        code, text = c.cmd(f"AUTH PLAIN {g.auth_plain('alice@example.org', g.PASSWORD)}")
        assert code != 235, "AUTH accepted in clear text on 587"
        g.assert_reply((code, text), 530, "5.7.0")


def test_mail_without_auth_refused_on_587(shared_gomail):
    g = shared_gomail
    # before STARTTLS
    with g.raw("submission") as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
    # after STARTTLS, still not authenticated
    with g.raw("submission") as c:
        c.cmd("EHLO client.test")
        assert c.starttls()[0] == 220
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
    # implicit TLS, not authenticated
    with g.raw("smtps") as c:
        c.cmd("EHLO client.test")
        g.assert_reply(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_wrong_password(shared_gomail, mechanism):
    g = shared_gomail
    with g.smtp("submission") as s:
        s.ehlo("client.test")
        s.starttls(context=g.tls_client_context())
        s.ehlo("client.test")
        s.user, s.password = "alice@example.org", "wrong-pw"
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            if mechanism == "PLAIN":
                s.auth("PLAIN", s.auth_plain)
            else:
                s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        g.assert_reply((e.value.smtp_code, e.value.smtp_error), 535, "5.7.8")


def test_unknown_user_is_a_wrong_password(shared_gomail):
    g = shared_gomail
    with g.raw("smtps") as c:
        c.cmd("EHLO client.test")
        reply = c.cmd(f"AUTH PLAIN {g.auth_plain('nobody@example.org', g.PASSWORD)}")
        g.assert_reply(reply, 535, "5.7.8")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_and_send_to_local_user_on_587(shared_gomail, mechanism):
    g = shared_gomail
    msgid, data = g.make_message("alice@example.org", "bob@example.org")
    with g.smtp("submission") as s:
        s.ehlo("client.test")
        s.starttls(context=g.tls_client_context())
        s.ehlo("client.test")
        s.user, s.password = "alice@example.org", g.PASSWORD
        if mechanism == "PLAIN":
            reply = s.auth("PLAIN", s.auth_plain)
        else:
            reply = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        g.assert_reply(reply, 235, "2.7.0")
        g.assert_reply(s.mail("alice@example.org"), 250, "2.1.0")
        g.assert_reply(s.rcpt("bob@example.org"), 250, "2.1.5")
        g.assert_reply(s.data(data), 250, "2.0.0")
    stored = [m for m in g.messages("bob@example.org") if msgid.encode() in m]
    assert len(stored) == 1
    assert stored[0].endswith(data)
    assert stored[0].startswith(b"Return-Path: <alice@example.org>\r\n")


def test_auth_and_send_on_465(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message("alice@example.org", "carol@example.org")
    with g.smtp("smtps") as s:
        s.ehlo("client.test")
        s.login("alice@example.org", g.PASSWORD)
        assert s.sendmail("alice@example.org", ["carol@example.org"], data) == {}
    assert g.message_ids("carol@example.org").count(msgid) == 1


def test_sender_not_owned_refused(shared_gomail):
    g = shared_gomail
    with g.submission("alice@example.org") as s:
        g.assert_reply(s.mail("bob@example.org"), 553, "5.7.1")
        g.assert_reply(s.mail("someone@other.example"), 553, "5.7.1")
        g.assert_reply(s.mail("team@example.org.evil.example"), 553, "5.7.1")
        # a refused MAIL leaves no transaction open
        g.assert_reply(s.rcpt("bob@example.org"), 503, "5.5.1")


@pytest.mark.parametrize("sender", ["sales@example.org", "ALICE@Example.ORG"])
def test_sender_owned_alias_or_case_allowed(shared_gomail, sender):
    g = shared_gomail
    msgid, data = g.make_message(sender, "bob@example.org")
    with g.submission("alice@example.org") as s:
        g.assert_reply(s.mail(sender), 250, "2.1.0")
        g.assert_reply(s.rcpt("bob@example.org"), 250, "2.1.5")
        g.assert_reply(s.data(data), 250, "2.0.0")
    assert g.message_ids("bob@example.org").count(msgid) == 1


def test_send_to_other_domain_goes_on_queue(shared_gomail):
    g = shared_gomail
    rcpt = f"friend-{uuid.uuid4().hex[:8]}@other.example"
    msgid, data = g.make_message("alice@example.org", rcpt)
    with g.submission("alice@example.org") as s:
        g.assert_reply(s.mail("alice@example.org"), 250, "2.1.0")
        g.assert_reply(s.rcpt(rcpt), 250, "2.1.5")
        g.assert_reply(s.rcpt("bob@example.org"), 250, "2.1.5")
        g.assert_reply(s.data(data), 250, "2.0.0")
    entries = [e for e in g.queue() if e.recipient == rcpt]
    assert len(entries) == 1, g.queue()
    assert entries[0].sender == "alice@example.org"
    assert entries[0].size >= len(data)
    assert g.message_ids("bob@example.org").count(msgid) == 1
    if g.has_table("queue"):
        assert g.sql("SELECT count(*) FROM queue")[0][0] >= 1


# --- swaks --------------------------------------------------------------------------------


def swaks_ok(result, msgid, g):
    assert result.returncode == 0, f"swaks exited {result.returncode}:\n{result.stdout}"
    return [m for m in g.messages("bob@example.org") if msgid.encode() in m]


def test_swaks_pipelining_on_mx(shared_gomail):
    g = shared_gomail
    msgid = f"{uuid.uuid4().hex}@swaks.test"
    r = g.swaks(
        "--pipeline",
        "--from",
        "someone@sender.example",
        "--to",
        "bob@example.org,alice@example.org",
        "--header",
        f"Message-Id: <{msgid}>",
        "--body",
        "pipelined body",
    )
    stored = swaks_ok(r, msgid, g)
    assert len(stored) == 1
    assert b"pipelined body" in stored[0]
    assert g.message_ids("alice@example.org").count(msgid) == 1
    # swaks pipelined MAIL, both RCPTs and DATA in one write
    assert re.search(r"^ -> MAIL FROM.*\n -> RCPT TO.*\n -> RCPT TO.*\n -> DATA", r.stdout, re.M), (
        r.stdout
    )


def test_swaks_pipelining_with_a_refused_recipient(shared_gomail):
    g = shared_gomail
    msgid = f"{uuid.uuid4().hex}@swaks.test"
    r = g.swaks(
        "--pipeline",
        "--from",
        "someone@sender.example",
        "--to",
        "nobody@example.org,bob@example.org",
        "--header",
        f"Message-Id: <{msgid}>",
    )
    # swaks reports the partial failure, the good recipient still gets the message
    assert "550 5.1.1" in r.stdout, r.stdout
    assert g.message_ids("bob@example.org").count(msgid) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth_on_587(shared_gomail, mechanism):
    g = shared_gomail
    msgid = f"{uuid.uuid4().hex}@swaks.test"
    r = g.swaks(
        "--tls",
        "--auth",
        mechanism,
        "--auth-user",
        "alice@example.org",
        "--auth-password",
        g.PASSWORD,
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--header",
        f"Message-Id: <{msgid}>",
        listener="submission",
    )
    assert len(swaks_ok(r, msgid, g)) == 1
    assert "<~  235 2.7.0" in r.stdout, r.stdout


def test_swaks_implicit_tls_on_465(shared_gomail):
    g = shared_gomail
    msgid = f"{uuid.uuid4().hex}@swaks.test"
    r = g.swaks(
        "--tlsc",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.org",
        "--auth-password",
        g.PASSWORD,
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--header",
        f"Message-Id: <{msgid}>",
        listener="smtps",
    )
    assert len(swaks_ok(r, msgid, g)) == 1


def test_swaks_wrong_password_on_587(shared_gomail):
    g = shared_gomail
    r = g.swaks(
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "bob@example.org",
        "--auth-password",
        "not-the-password",
        "--from",
        "bob@example.org",
        "--to",
        "alice@example.org",
        listener="submission",
    )
    assert r.returncode != 0
    assert "<~* 535 5.7.8" in r.stdout, r.stdout


def test_auth_plain_with_initial_response_split(shared_gomail):
    """AUTH PLAIN without an initial response: the credentials follow a 334."""
    g = shared_gomail
    with g.raw("smtps") as c:
        c.cmd("EHLO client.test")
        code, _ = c.cmd("AUTH PLAIN")
        assert code == 334
        g.assert_reply(c.cmd(g.auth_plain("alice@example.org", g.PASSWORD)), 235, "2.7.0")
        g.assert_reply(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")


def test_auth_login_by_steps(shared_gomail):
    g = shared_gomail
    with g.raw("smtps") as c:
        c.cmd("EHLO client.test")
        code, text = c.cmd("AUTH LOGIN")
        assert code == 334 and base64.b64decode(text).lower().startswith(b"user"), text
        code, text = c.cmd(base64.b64encode(b"alice@example.org").decode())
        assert code == 334 and base64.b64decode(text).lower().startswith(b"password"), text
        g.assert_reply(c.cmd(base64.b64encode(g.PASSWORD.encode()).decode()), 235, "2.7.0")
