"""The admin CLI against a running server: changes take effect at once, status is accurate."""

from __future__ import annotations

import json

SENDER = "someone@sender.example"


def test_accounts_changed_while_running(gomail):
    g = gomail
    g.assert_reply(g.transact(SENDER, ["dave@example.org"])["rcpt"][0], 550, "5.1.1")

    g.cli("user", "add", "dave@example.org", "--password-stdin", input="dave-pw\n")
    msgid, data = g.make_message(SENDER, "dave@example.org")
    r = g.transact(SENDER, ["dave@example.org"], data)
    g.assert_reply(r["rcpt"][0], 250, "2.1.5")
    g.assert_reply(r["data"], 250, "2.0.0")
    assert g.message_ids("dave@example.org") == [msgid]
    with g.smtp("smtps") as s:
        s.ehlo("client.test")
        g.assert_reply(s.login("dave@example.org", "dave-pw"), 235, "2.7.0")

    # a new password works at once, the old one no longer
    g.cli("user", "passwd", "dave@example.org", "--password-stdin", input="new-dave-pw\n")
    with g.raw("smtps") as c:
        c.cmd("EHLO client.test")
        old = g.auth_plain("dave@example.org", "dave-pw")
        g.assert_reply(c.cmd(f"AUTH PLAIN {old}"), 535, "5.7.8")
    with g.smtp("smtps") as s:
        s.ehlo("client.test")
        g.assert_reply(s.login("dave@example.org", "new-dave-pw"), 235, "2.7.0")

    g.cli("alias", "add", "help@example.org", "dave@example.org")
    msgid2, data = g.make_message(SENDER, "help@example.org")
    g.assert_reply(g.transact(SENDER, ["help@example.org"], data)["data"], 250, "2.0.0")
    assert msgid2 in g.message_ids("dave@example.org")

    g.cli("alias", "remove", "help@example.org")
    g.assert_reply(g.transact(SENDER, ["help@example.org"])["rcpt"][0], 550, "5.1.1")
    g.cli("user", "remove", "dave@example.org", "--yes")
    g.assert_reply(g.transact(SENDER, ["dave@example.org"])["rcpt"][0], 550, "5.1.1")


def test_new_domain_while_running(gomail):
    g = gomail
    r = g.transact(SENDER, ["erin@new.example"])
    g.assert_reply(r["rcpt"][0], 554, "5.7.1")  # not ours yet: relaying
    g.cli("domain", "add", "new.example")
    g.cli("user", "add", "erin@new.example", "--password-stdin", input="erin-pw\n")
    msgid, data = g.make_message(SENDER, "erin@new.example")
    g.assert_reply(g.transact(SENDER, ["erin@new.example"], data)["data"], 250, "2.0.0")
    assert g.message_ids("erin@new.example") == [msgid]


def test_mailbox_status_counts_what_arrived(gomail):
    g = gomail
    sizes = []
    for i in range(3):
        _, data = g.make_message(SENDER, "carol@example.org", body=f"message {i}\r\n" * (i + 1))
        g.assert_reply(g.transact(SENDER, ["carol@example.org"], data)["data"], 250, "2.0.0")
    sizes = [len(m) for m in g.messages("carol@example.org")]
    folders = json.loads(g.cli("mailbox", "status", "carol@example.org", "--json").stdout)
    by_name = {f["name"]: f for f in folders}
    assert folders[0]["name"] == "INBOX"
    for name in ("INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert name in by_name, folders
    inbox = by_name["INBOX"]
    assert (inbox["messages"], inbox["unseen"], inbox["bytes"]) == (3, 3, sum(sizes))
    text = g.cli("mailbox", "status", "carol@example.org").stdout
    assert "INBOX" in text and str(sum(sizes)) in text, text


def test_quota_set_while_running(gomail):
    g = gomail
    # bob's mailbox is filled a little, then a quota below what he holds stops new mail
    _, data = g.make_message(SENDER, "bob@example.org", body="q" * 2000 + "\r\n")
    g.assert_reply(g.transact(SENDER, ["bob@example.org"], data)["data"], 250, "2.0.0")
    g.cli("user", "quota", "bob@example.org", "1000")
    r = g.transact(SENDER, ["bob@example.org"], data)
    refusal = r["rcpt"][0] if r["rcpt"][0][0] != 250 else r["data"]
    g.assert_reply(refusal, 452, "4.2.2")
