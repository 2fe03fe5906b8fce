"""Mail from the internet on the mx listener: local delivery, aliases, refusals, relay tricks."""

from __future__ import annotations

import re

import pytest

SENDER = "someone@sender.example"
IDN_ACE = "xn--bcher-kva.example"  # bücher.example


def test_delivered_to_inbox_with_trace_headers(shared_gomail):
    g = shared_gomail
    body = (
        "First line.\r\n"
        ".a line that starts with a dot\r\n"
        "..two dots\r\n"
        "Grüße, 8-bit UTF-8 body text\r\n"
        "\r\n"
        "last line\r\n"
    )
    msgid, data = g.make_message(SENDER, "alice@example.org", body=body)
    r = g.transact(SENDER, ["alice@example.org"], data)
    g.assert_reply(r["mail"], 250, "2.1.0")
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")

    stored = [m for m in g.messages("alice@example.org") if msgid.encode() in m]
    assert len(stored) == 1
    raw = stored[0]
    # The message itself is intact, byte for byte, after the headers the server added.
    assert raw.endswith(data)
    added = raw[: -len(data)]
    names = g.header_names(added + b"\r\n")
    assert names.count("Return-Path") == 1, names
    assert names[0] == "Return-Path", names
    assert "Received" in names
    assert raw.startswith(f"Return-Path: <{SENDER}>\r\n".encode())
    received = re.search(rb"^Received:(.*?)\r\n(?![ \t])", added, re.S | re.M).group(1)
    received = re.sub(rb"\r\n[ \t]+", b" ", received)
    assert b"from client.test" in received
    assert b"127.0.0.1" in received
    assert f"by {g.HOSTNAME}".encode() in received
    assert re.search(rb"with E?SMTP", received), received
    assert re.search(rb";\s*\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", received), (
        received
    )


def test_smtplib_sendmail_to_two_users(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "bob@example.org, carol@example.org")
    assert g.send(SENDER, ["bob@example.org", "carol@example.org"], data) == {}
    assert msgid in g.message_ids("bob@example.org")
    assert msgid in g.message_ids("carol@example.org")


def test_alias(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "sales@example.org")
    r = g.transact(SENDER, ["sales@example.org"], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids("alice@example.org").count(msgid) == 1


def test_alias_to_several_targets(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "team@example.org")
    r = g.transact(SENDER, ["team@example.org"], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids("alice@example.org").count(msgid) == 1
    assert g.message_ids("bob@example.org").count(msgid) == 1
    assert msgid not in g.message_ids("carol@example.org")


def test_catch_all(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "whoever-1234@catchall.example")
    r = g.transact(SENDER, ["whoever-1234@catchall.example"], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids("bob@example.org").count(msgid) == 1


def test_exact_alias_wins_over_catch_all(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "exact@catchall.example")
    r = g.transact(SENDER, ["exact@catchall.example"], data)
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids("alice@example.org").count(msgid) == 1
    assert msgid not in g.message_ids("bob@example.org")


@pytest.mark.parametrize(
    "rcpt", ["alice+tag@example.org", "alice+shop.news@example.org", "ALICE+Tag@Example.ORG"]
)
def test_plus_addressing(shared_gomail, rcpt):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, rcpt)
    r = g.transact(SENDER, [rcpt], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids("alice@example.org").count(msgid) == 1


def test_unknown_user_refused(shared_gomail):
    g = shared_gomail
    r = g.transact(SENDER, ["nobody@example.org"])
    g.assert_reply(r["rcpt"][0], 550, "5.1.1")
    # plus-addressing does not make an unknown user known
    r = g.transact(SENDER, ["nobody+tag@example.org"])
    g.assert_reply(r["rcpt"][0], 550, "5.1.1")


def test_unknown_recipient_among_good_ones(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "bob@example.org")
    r = g.transact(SENDER, ["nobody@example.org", "bob@example.org"], data)
    g.assert_reply(r["rcpt"][0], 550, "5.1.1")
    g.assert_reply(r["rcpt"][1], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids("bob@example.org").count(msgid) == 1


def test_case_of_our_domain_and_user(shared_gomail):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, "ALICE@EXAMPLE.ORG")
    r = g.transact(SENDER, ["ALICE@EXAMPLE.ORG"], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids("alice@example.org").count(msgid) == 1


def test_trailing_dot_is_local_or_refused_never_relayed(shared_gomail):
    g = shared_gomail
    queued_before = len(g.queue())
    msgid, data = g.make_message(SENDER, "alice@example.org.")
    r = g.transact(SENDER, ["alice@example.org."], data)
    code = r["rcpt"][0][0]
    if code == 250:
        g.assert_reply(r["data"], 250, "2.0.0")
        assert g.message_ids("alice@example.org").count(msgid) == 1
    else:
        assert 500 <= code < 600, r
    assert len(g.queue()) == queued_before, "a trailing-dot address went on the outbound queue"


@pytest.mark.parametrize(
    "rcpt",
    [
        "user@other.example",
        "alice@other.example",
        "user%other.example@example.org",
        "alice%other.example@example.org",
        '"user@other.example"@example.org',
        "<@example.org:user@other.example>",
        "<@example.org,@mx.example.org:user@other.example>",
        "other.example!user@example.org",
        "user@example.org.other.example",
        "USER@OTHER.EXAMPLE",
    ],
)
def test_relay_refused(shared_gomail, rcpt):
    g = shared_gomail
    queued_before = len(g.queue())
    _, data = g.make_message(SENDER, "user@other.example")
    r = g.transact(SENDER, [rcpt], data)
    g.assert_reply(r["rcpt"][0], 554, "5.7.1")
    assert r["data"] is None
    assert len(g.queue()) == queued_before


def test_trailing_dot_on_another_domain_refused(shared_gomail):
    """Refused as relaying or as bad syntax: either way, never accepted."""
    g = shared_gomail
    r = g.transact(SENDER, ["user@other.example."])
    code, text = r["rcpt"][0]
    if code == 554:
        g.assert_reply(r["rcpt"][0], 554, "5.7.1")
    else:
        assert code in (501, 553), r["rcpt"][0]
        assert text.startswith("5.1."), r["rcpt"][0]


def test_relay_refused_even_from_a_local_sender(shared_gomail):
    """Claiming to be one of our users on port 25 does not make one a sender."""
    g = shared_gomail
    r = g.transact("alice@example.org", ["user@other.example"])
    g.assert_reply(r["rcpt"][0], 554, "5.7.1")


@pytest.mark.parametrize(
    "rcpt",
    [f"anna@{IDN_ACE}", f"anna@{IDN_ACE.upper()}", "Anna@Xn--Bcher-Kva.Example"],
)
def test_idn_domain_in_ascii_form(shared_gomail, rcpt):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, rcpt)
    r = g.transact(SENDER, [rcpt], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids(f"anna@{IDN_ACE}").count(msgid) == 1


@pytest.mark.parametrize("rcpt", ["anna@bücher.example", "anna@BÜCHER.example"])
def test_idn_domain_in_unicode_form_with_smtputf8(shared_gomail, rcpt):
    g = shared_gomail
    msgid, data = g.make_message(SENDER, rcpt)
    r = g.transact(SENDER, [rcpt], data, mail_params="SMTPUTF8")
    g.assert_reply(r["mail"], 250, "2.1.0")
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids(f"anna@{IDN_ACE}").count(msgid) == 1


def test_quota_full(shared_gomail):
    """tiny@example.org has a 4,000-byte quota: a 3,000-byte message fits once, and then the
    mailbox is full (452 4.2.2, at RCPT or at the end of DATA)."""
    g = shared_gomail
    addr = "tiny@example.org"
    filler = "x" * 70 + "\r\n"
    body = filler * 40  # ~2,900 bytes
    first_id, data = g.make_message(SENDER, addr, body=body)
    r = g.transact(SENDER, [addr], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")

    refusal = None
    for _ in range(3):
        _, data = g.make_message(SENDER, addr, body=body)
        r = g.transact(SENDER, [addr], data)
        if r["rcpt"][0][0] != 250:
            refusal = r["rcpt"][0]
            break
        if r["data"][0] != 250:
            refusal = r["data"]
            break
    assert refusal is not None, "the quota was never enforced"
    g.assert_reply(refusal, 452, "4.2.2")
    stored = g.messages(addr)
    assert sum(len(m) for m in stored) <= 4000 + 3000, "quota overrun by more than a message"
    assert first_id in g.parse_message_ids(stored)


def test_quota_full_does_not_block_other_recipients(shared_gomail):
    g = shared_gomail
    addr = "tiny@example.org"
    body = ("y" * 70 + "\r\n") * 40
    # make sure tiny is full (this test may run on its own)
    for _ in range(3):
        _, data = g.make_message(SENDER, addr, body=body)
        r = g.transact(SENDER, [addr], data)
        if r["rcpt"][0][0] != 250 or r["data"][0] != 250:
            break
    msgid, data = g.make_message(SENDER, "bob@example.org", body=body)
    r = g.transact(SENDER, ["bob@example.org", addr], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    if r["rcpt"][1][0] == 250:
        # refused at DATA for one recipient only is not expressible in SMTP; then the
        # server must either accept for bob or tempfail the whole message
        assert r["data"][0] in (250, 452), r
    else:
        g.assert_reply(r["rcpt"][1], 452, "4.2.2")
        g.assert_reply(r["data"], 250, "2.0.0")
    if r["data"][0] == 250:
        assert g.message_ids("bob@example.org").count(msgid) == 1


def test_message_to_three_users_stored_once(shared_gomail):
    g = shared_gomail
    users = ["alice@example.org", "bob@example.org", "carol@example.org"]
    has_blobs = g.has_table("blobs")
    before = g.sql("SELECT count(*) FROM blobs")[0][0] if has_blobs else None
    # big enough that a per-recipient copy would be obvious
    msgid, data = g.make_message(SENDER, ", ".join(users), body=("z" * 76 + "\r\n") * 2000)
    r = g.transact(SENDER, users, data)
    assert [c for c, _ in r["rcpt"]] == [250, 250, 250]
    g.assert_reply(r["data"], 250, "2.0.0")
    for u in users:
        assert g.message_ids(u).count(msgid) == 1, u
    if has_blobs:
        after = g.sql("SELECT count(*) FROM blobs")[0][0]
        assert after - before == 1, f"{after - before} blobs for one message to three users"


def blob_files(data_dir):
    skip = {"tls"}
    return sorted(
        p
        for p in data_dir.rglob("*")
        if p.is_file()
        and not p.name.startswith("gomail.db")
        and p.relative_to(data_dir).parts[0] not in skip
    )


def test_large_message_to_three_users_is_one_file(gomail_factory):
    g = gomail_factory()
    g.start({"blob_inline_max": 4096})
    users = ["alice@example.org", "bob@example.org", "carol@example.org"]
    before = blob_files(g.data)
    msgid, data = g.make_message(SENDER, ", ".join(users), body=("f" * 76 + "\r\n") * 1000)
    r = g.transact(SENDER, users, data)
    g.assert_reply(r["data"], 250, "2.0.0")
    new = [p for p in blob_files(g.data) if p not in before]
    assert len(new) == 1, new
    assert new[0].stat().st_size >= len(data)
    for u in users:
        stored = [m for m in g.messages(u) if msgid.encode() in m]
        assert len(stored) == 1 and stored[0].endswith(data), u
    g.stop()


def test_bare_postmaster_is_accepted(gomail_factory):
    # RFC 5321 4.5.1: RCPT TO:<Postmaster> without a domain reaches the postmaster of the
    # server's own domain (here the parent of its host name).
    g = gomail_factory("pm").start({"hostname": "mail.example.org"})
    g.cli("alias", "add", "postmaster@example.org", "alice@example.org")
    _msgid, data = g.make_message(SENDER, "postmaster")
    r = g.transact(SENDER, ["Postmaster"], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert len(g.messages("alice@example.org")) == 1
