"""The core's own small pipeline pieces: ratelimit, mailbox, queue."""

import types

from gomail.builtins import mailbox, queue
from gomail.builtins.ratelimit import RateLimit
from gomail.config import Config
from gomail.context import Recipient, Session, Transaction
from gomail.verdict import Action

OPTS = {"rate": 60.0, "burst": 3, "exempt_loopback": True}


def session(ip):
    return Session("S", "mx", "inbound", ip, 1)


def test_ratelimit_allows_a_burst_then_refuses_with_421():
    rl = RateLimit()
    verdicts = [rl.gomail_connect(session("192.0.2.1"), OPTS) for _ in range(4)]
    assert verdicts[:3] == [None, None, None]
    assert (verdicts[3].action, verdicts[3].code, verdicts[3].enhanced) == (
        Action.TEMPFAIL,
        421,
        "4.7.0",
    )
    # another address has its own bucket
    assert rl.gomail_connect(session("192.0.2.2"), OPTS) is None


def test_ratelimit_groups_ipv6_by_64_and_exempts_loopback():
    rl = RateLimit()
    for i in range(3):
        assert rl.gomail_connect(session(f"2001:db8::{i + 1}"), OPTS) is None
    assert rl.gomail_connect(session("2001:db8::ffff"), OPTS) is not None
    for _ in range(10):
        assert rl.gomail_connect(session("127.0.0.1"), OPTS) is None
    strict = OPTS | {"exempt_loopback": False}
    assert [rl.gomail_connect(session("::1"), strict) for _ in range(4)][3] is not None


def _txn(quarantined=False):
    t = Transaction("T", "s@remote.example")
    t.recipients = [
        Recipient("team@example.org", route="local", mailboxes=["a@example.org", "b@example.org"],
                  forward=["x@other.example"]),
        Recipient("a@example.org", route="local", mailboxes=["a@example.org"]),
        Recipient("y@other.example", route="relay", forward=["y@other.example"]),
    ]  # fmt: skip
    t.quarantined = quarantined
    return t


class _Domains:
    async def has_domain(self, domain):
        return domain == "example.org"


def _app(tmp_path):
    return types.SimpleNamespace(store=_Domains(), config=Config(data_dir=tmp_path))


async def test_mailbox_and_queue_fill_the_plan_once_per_target(tmp_path):
    t = _txn()
    await mailbox.gomail_deliver(t, {"folder": "INBOX", "quarantine_folder": "Junk"})
    await queue.gomail_deliver(t, _app(tmp_path))
    assert [(d.user, d.folder) for d in t.plan.local] == [
        ("a@example.org", "INBOX"),
        ("b@example.org", "INBOX"),
    ]
    assert t.plan.outbound == ["x@other.example", "y@other.example"]


async def test_quarantine_goes_to_junk_and_is_never_relayed(tmp_path):
    t = _txn(quarantined=True)
    await mailbox.gomail_deliver(t, {"folder": "INBOX", "quarantine_folder": "Junk"})
    await queue.gomail_deliver(t, _app(tmp_path))
    assert {d.folder for d in t.plan.local} == {"Junk"}
    assert t.plan.outbound == []


async def test_sink_accepts_and_discards():
    from gomail.builtins import sink

    assert (await sink.gomail_rcpt()).action is Action.ACCEPT
    assert (await sink.gomail_data()).action is Action.DISCARD
