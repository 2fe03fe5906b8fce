"""The queue runner against real DNS (knot) and real SMTP servers (aiosmtpd) on loopback.

Destination MX servers listen on 127.0.0.2, 127.0.0.3 … on one port (``delivery_port``);
127.0.0.4 has nothing listening (connection refused). The runner's passes are driven with
``run_once(now)``, so retries happen at once, without waiting minutes.
"""

from __future__ import annotations

import asyncio
import email
import time
from dataclasses import replace

import pytest
from aiosmtpd.controller import Controller
from gomail.app import App
from gomail.config import Config
from gomail.delivery import QueueRunner, strip_return_path
from gomail.store import Delivery, LocalDelivery
from gomail.store.sqlite import SqliteStore
from knotbed import knot_fixture, requires_knot
from mxbed import Sink, free_port_on
from queuebed import delivery_config, make_app, open_store

pytestmark = requires_knot

ZONES = {
    "dest.test": "@ MX 10 mx1\n@ MX 20 mx2\nmx1 A 127.0.0.2\nmx2 A 127.0.0.3\n",
    "fallback.test": "@ MX 5 dead\n@ MX 10 mx2\ndead A 127.0.0.4\nmx2 A 127.0.0.3\n",
    "nullmx.test": "@ MX 0 .\n",
    "down.test": "@ MX 10 dead\ndead A 127.0.0.4\n",
}


knot = knot_fixture(ZONES)


@pytest.fixture
def mx():
    port = free_port_on(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    sinks = {}
    controllers = []
    for host in ("127.0.0.2", "127.0.0.3"):
        sink = Sink()
        c = Controller(sink, hostname=host, port=port, ready_timeout=10, enable_SMTPUTF8=True)
        c.start()
        controllers.append(c)
        sinks[host] = sink
    yield port, sinks
    for c in controllers:
        c.stop()


class Env:
    def __init__(self, app: App, runner: QueueRunner, sinks: dict[str, Sink]) -> None:
        self.app, self.runner, self.sinks = app, runner, sinks
        self.store = app.store
        self.events: list[tuple[str, dict]] = []
        app.emit = lambda name, **data: self.events.append((name, data))

    async def enqueue(self, recipients, sender="alice@local.test", qid="Q1", body=b"Hi.\r\n"):
        raw = (
            f"Return-Path: <{sender}>\r\nFrom: <{sender}>\r\nTo: someone\r\n"
            f"Subject: test {qid}\r\nMessage-ID: <{qid}@local.test>\r\n\r\n"
        ).encode() + body
        await self.store.deliver(Delivery(qid, sender, raw, outbound=tuple(recipients)))


@pytest.fixture
async def env(tmp_path, knot, mx):
    port, sinks = mx
    config = delivery_config(tmp_path, port)
    store = await open_store(config)
    app = make_app(config, store, knot.port)
    runner = QueueRunner(app)
    e = Env(app, runner, sinks)
    yield e
    await runner.stop()
    await store.close()


def test_strip_return_path():
    raw = b"Return-Path: <a@b>\r\nFrom: x\r\n\r\nReturn-Path: body\r\n"
    assert strip_return_path(raw) == b"From: x\r\n\r\nReturn-Path: body\r\n"
    assert strip_return_path(b"From: x\r\n\r\n") == b"From: x\r\n\r\n"


async def test_delivers_to_the_preferred_mx(env):
    await env.enqueue(["bob@dest.test", "carol@dest.test"])
    await env.runner.run_once()
    [(sender, rcpts, content)] = env.sinks["127.0.0.2"].messages
    assert sender == "alice@local.test"
    assert sorted(rcpts) == ["bob@dest.test", "carol@dest.test"]  # one transaction
    assert b"Return-Path" not in content and b"Subject: test Q1" in content
    assert await env.store.list_queue() == []
    assert [n for n, _d in env.events] == ["email.sent"]


async def test_falls_back_when_first_mx_refuses(env):
    await env.enqueue(["bob@fallback.test"])
    await env.runner.run_once()
    assert [m[1] for m in env.sinks["127.0.0.3"].messages] == [["bob@fallback.test"]]
    assert await env.store.list_queue() == []


async def test_4xx_then_success_on_retry(env):
    env.sinks["127.0.0.2"].data_replies = ["451 4.7.1 Greylisted, try again later"]
    await env.enqueue(["bob@dest.test"])
    t0 = time.time()
    await env.runner.run_once(t0)
    [entry] = await env.store.list_queue()
    assert entry.state == "deferred" and entry.attempts == 1
    assert "451 4.7.1 Greylisted" in entry.last_error
    assert 299 <= entry.next_attempt - t0 <= 301  # 5 minutes
    await env.runner.run_once(t0 + 100)  # not due yet
    assert env.sinks["127.0.0.2"].messages == []
    await env.runner.run_once(t0 + 301)
    assert len(env.sinks["127.0.0.2"].messages) == 1
    assert await env.store.list_queue() == []


async def test_retry_schedule_and_expiry(env):
    await env.enqueue(["bob@down.test"])  # its only MX refuses connections
    [entry] = await env.store.list_queue()
    now = entry.created
    delays = []
    for _ in range(4):
        await env.runner.run_once(now)
        [entry] = await env.store.list_queue()
        delays.append(round(entry.next_attempt - now))
        now = entry.next_attempt
    assert delays == [300, 600, 1800, 3600]
    # after max_age, the message bounces to alice's INBOX
    await env.runner.run_once(entry.created + 5 * 86400 + 1)
    assert await env.store.list_queue() == []
    [(_uid, dsn)] = await env.store.list_messages("alice@local.test")
    assert b"gave up after 5 days" in dsn


def test_delay_notice_config(tmp_path):
    from gomail.config import load_config

    assert Config().delivery_delay_notice == 4 * 3600
    path = tmp_path / "gomail.yaml"
    path.write_text("delivery:\n  delay_notice: 7200\n")
    cfg = load_config(path)
    assert cfg.delivery_delay_notice == 7200.0 and isinstance(cfg.delivery_delay_notice, float)


async def test_delay_notice_once_then_bounce_at_expiry(env):
    env.sinks["127.0.0.2"].rcpt_replies["bob@dest.test"] = "451 4.7.1 Mailbox busy, try later"
    await env.enqueue(["bob@dest.test"])
    [entry] = await env.store.list_queue()
    created = entry.created
    await env.runner.run_once(created + 3600)  # 1 h: too early for a notice
    assert await env.store.list_messages("alice@local.test") == []
    [entry] = await env.store.list_queue()
    assert not entry.delay_notified
    await env.runner.run_once(created + 4 * 3600 + 1)  # 4 h: one notice
    [(_uid, notice)] = await env.store.list_messages("alice@local.test")
    assert notice.startswith(b"Return-Path: <>\r\n")
    assert b"Action: delayed" in notice and b"Action: failed" not in notice
    assert b"Status: 4.7.1" in notice
    assert b"451 4.7.1 Mailbox busy, try later" in notice
    assert b"Will-Retry-Until: " in notice
    assert b"Final-Recipient: rfc822; bob@dest.test" in notice
    [entry] = await env.store.list_queue()
    assert entry.delay_notified and entry.state == "deferred"
    await env.runner.run_once(created + 5 * 3600)  # 5 h: deferred again, no second notice
    [entry] = await env.store.list_queue()
    assert entry.attempts == 3
    assert len(await env.store.list_messages("alice@local.test")) == 1
    await env.runner.run_once(created + 5 * 86400 + 1)  # expiry: the bounce still comes
    assert await env.store.list_queue() == []
    [(_u1, first), (_u2, bounce)] = await env.store.list_messages("alice@local.test")
    assert first == notice
    assert b"Action: failed" in bounce and b"gave up after 5 days" in bounce


async def test_no_delay_notice_for_null_sender(env):
    env.sinks["127.0.0.2"].rcpt_replies["bob@dest.test"] = "451 4.7.1 later"
    await env.enqueue(["bob@dest.test"], sender="")
    [entry] = await env.store.list_queue()
    await env.runner.run_once(entry.created + 4 * 3600 + 1)
    [entry] = await env.store.list_queue()
    assert entry.state == "deferred"
    assert await env.store.list_messages("alice@local.test") == []


async def test_5xx_bounces_to_local_sender_with_remote_answer(env):
    env.sinks["127.0.0.2"].rcpt_replies["nobody@dest.test"] = "550 5.1.1 No such user here"
    await env.enqueue(["nobody@dest.test", "bob@dest.test"])
    await env.runner.run_once()
    assert [m[1] for m in env.sinks["127.0.0.2"].messages] == [["bob@dest.test"]]
    assert await env.store.list_queue() == []
    [(_uid, dsn)] = await env.store.list_messages("alice@local.test")
    assert dsn.startswith(b"Return-Path: <>\r\n")
    assert b"multipart/report; report-type=delivery-status" in dsn
    assert b"Final-Recipient: rfc822; nobody@dest.test" in dsn
    assert b"Status: 5.1.1" in dsn
    assert b"Diagnostic-Code: smtp; 550 5.1.1 No such user here" in dsn
    assert b"Remote-MTA: dns; mx1.dest.test" in dsn
    assert b"Subject: test Q1" in dsn  # the original header
    assert b"bob@dest.test" not in dsn.split(b"text/rfc822-headers")[0]
    names = [n for n, _d in env.events]
    assert sorted(names) == ["email.bounced", "email.sent"]


async def test_8bit_body_sent_with_body_8bitmime(env):
    body = "Grüße aus Köln\r\n".encode()
    await env.enqueue(["bob@dest.test"], body=body)
    await env.runner.run_once()
    sink = env.sinks["127.0.0.2"]
    [(_s, _r, content)] = sink.messages
    assert content.endswith(body)
    assert sink.mail_options == [["BODY=8BITMIME"]]
    assert await env.store.list_queue() == []


async def test_ascii_message_sends_no_parameters(env):
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    assert env.sinks["127.0.0.2"].mail_options == [[]]


async def test_8bit_body_without_8bitmime_goes_as_quoted_printable(env):
    sink = env.sinks["127.0.0.2"]
    sink.hide = {"8BITMIME"}
    await env.enqueue(["bob@dest.test"], body="Grüße\r\n".encode())
    await env.runner.run_once()
    [(_sender, _rcpts, content)] = sink.messages
    assert sink.mail_options == [[]]  # no BODY=8BITMIME
    assert content.isascii()
    parsed = email.message_from_bytes(content)
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    assert parsed.get_payload(decode=True) == "Grüße\r\n".encode()
    assert await env.store.list_queue() == []


async def test_8bit_header_without_8bitmime_bounces_5_6_3(env):
    sink = env.sinks["127.0.0.2"]
    sink.hide = {"8BITMIME"}
    raw = "From: <alice@local.test>\r\nSubject: Grüße\r\n\r\nHi.\r\n".encode()
    await env.store.deliver(Delivery("Q8", "alice@local.test", raw, outbound=("bob@dest.test",)))
    await env.runner.run_once()
    assert sink.messages == [] and sink.mail_options == []
    assert await env.store.list_queue() == []
    [(_uid, dsn)] = await env.store.list_messages("alice@local.test")
    assert b"Status: 5.6.3" in dsn
    assert b"Conversion required but not supported" in dsn


async def test_utf8_recipient_sent_with_smtputf8(env):
    await env.enqueue(["bob@dest.test", "jürgen@dest.test"])
    await env.runner.run_once()
    sink = env.sinks["127.0.0.2"]
    [(_s, rcpts, _c)] = sink.messages
    assert rcpts == ["bob@dest.test", "jürgen@dest.test"]
    assert sink.mail_options == [["SMTPUTF8"]]
    assert await env.store.list_queue() == []


async def test_utf8_recipient_without_smtputf8_bounces_only_that_one(env):
    sink = env.sinks["127.0.0.2"]
    sink.hide = {"SMTPUTF8"}
    await env.enqueue(["bob@dest.test", "jürgen@dest.test"])
    await env.runner.run_once()
    assert [m[1] for m in sink.messages] == [["bob@dest.test"]]
    assert sink.mail_options == [[]]
    assert await env.store.list_queue() == []
    [(_uid, dsn)] = await env.store.list_messages("alice@local.test")
    assert b"Status: 5.6.7" in dsn
    assert b"does not support SMTPUTF8" in dsn
    assert b"bob@dest.test" not in dsn.split(b"text/rfc822-headers")[0]
    assert sorted(n for n, _d in env.events) == ["email.bounced", "email.sent"]


async def test_utf8_sender_without_smtputf8_bounces_all(env):
    sink = env.sinks["127.0.0.2"]
    sink.hide = {"SMTPUTF8"}
    await env.enqueue(["bob@dest.test"], sender="jürgen@local.test")
    await env.runner.run_once()
    assert sink.messages == [] and sink.mail_options == []
    assert await env.store.list_queue() == []
    [(name, data)] = env.events
    assert name == "email.bounced" and "5.6.7" in data["error"]


async def test_null_mx_bounces(env):
    await env.enqueue(["x@nullmx.test"])
    await env.runner.run_once()
    assert await env.store.list_queue() == []
    [(_uid, dsn)] = await env.store.list_messages("alice@local.test")
    assert b"556 5.1.10" in dsn and b"Final-Recipient: rfc822; x@nullmx.test" in dsn


async def test_null_sender_never_bounced(env):
    env.sinks["127.0.0.2"].rcpt_replies["nobody@dest.test"] = "550 5.1.1 No such user"
    await env.enqueue(["nobody@dest.test"], sender="")
    await env.enqueue(["x@nullmx.test"], sender="", qid="Q2")
    await env.runner.run_once()
    assert await env.store.list_queue() == []
    assert await env.store.list_messages("alice@local.test") == []
    assert all(d["dsn"] is False for n, d in env.events if n == "email.bounced")


async def test_remote_sender_gets_dsn_queued(env):
    env.sinks["127.0.0.2"].rcpt_replies["nobody@dest.test"] = "550 5.1.1 No such user"
    await env.enqueue(["nobody@dest.test"], sender="someone@fallback.test")
    await env.runner.run_once()
    [entry] = await env.store.list_queue()
    assert (entry.sender, entry.recipient) == ("", "someone@fallback.test")
    await env.runner.run_once()  # the DSN goes to fallback.test's MX
    [(sender, rcpts, content)] = env.sinks["127.0.0.3"].messages
    assert (sender, rcpts) == ("<>", ["someone@fallback.test"])  # aiosmtpd keeps <>
    assert b"Final-Recipient: rfc822; nobody@dest.test" in content


async def test_restart_mid_queue_no_loss_no_duplicate(env, tmp_path):
    # The first recipient's 250 is recorded; the server then hangs in DATA for the second
    # transaction until the runner is stopped (as at a shutdown or crash).
    await env.enqueue(["bob@dest.test"], qid="Q1")
    await env.runner.run_once()
    assert len(env.sinks["127.0.0.2"].messages) == 1
    gate = asyncio.Event()
    sink = env.sinks["127.0.0.2"]
    orig = sink.take

    async def slow_data(server, session, envelope):
        await asyncio.wait_for(gate.wait(), 10)  # runs on the controller's own loop
        return await orig(server, session, envelope)

    sink.data_hook = slow_data
    await env.enqueue(["carol@dest.test"], qid="Q2")
    await env.runner.start()
    for _ in range(100):
        if env.runner._inflight:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    await env.runner.stop()
    # restart: close and reopen the store, a new runner
    await env.store.close()
    store = SqliteStore(env.app.config.data_dir)
    await store.open()
    env.app.store = env.store = store
    [entry] = await store.list_queue()
    assert entry.recipient == "carol@dest.test"
    sink.data_hook = None
    runner = QueueRunner(env.app)
    await runner.run_once(time.time() + 1)
    await runner.stop()
    env.runner = runner
    delivered = [r for m in sink.messages for r in m[1]]
    assert delivered.count("bob@dest.test") == 1
    assert "carol@dest.test" in delivered
    assert await store.list_queue() == []


async def test_queue_store_methods(env):
    await env.enqueue(["a@dest.test", "b@dest.test"])
    entries = await env.store.list_queue()
    now = time.time()
    assert [e.id for e in await env.store.due_queue(now + 1)] == [e.id for e in entries]
    await env.store.queue_defer([entries[0].id], now + 600, "451 later")
    assert [e.id for e in await env.store.due_queue(now + 1)] == [entries[1].id]
    assert await env.store.queue_retry(None, now) == 1
    assert len(await env.store.due_queue(now + 1)) == 2
    raw = await env.store.queue_message(entries[0].id)
    assert raw.startswith(b"Return-Path: <alice@local.test>")
    assert await env.store.queue_delete([entries[0].id]) == 1
    await env.store.queue_sent([entries[1].id])
    assert await env.store.list_queue() == []


def test_local_delivery_import():
    assert LocalDelivery("a@b").folder == "INBOX"


async def test_queue_cli(env, tmp_path):
    from click.testing import CliRunner
    from gomail.cli import main

    env.sinks["127.0.0.2"].data_replies = ["451 4.7.1 later"]
    await env.enqueue(["bob@dest.test"])
    await env.enqueue(["x@fallback.test"], qid="Q2")
    await env.runner.run_once()  # Q1 deferred, Q2 sent
    data = str(env.app.config.data_dir)

    def cli(*args):
        return CliRunner().invoke(main, ["--data", data, "queue", *args])

    def run_cli(*args):
        return asyncio.to_thread(cli, *args)

    r = await run_cli("list", "--domain", "dest.test", "--state", "deferred")
    assert r.exit_code == 0 and "bob@dest.test" in r.output and "451 4.7.1" in r.output
    [entry] = await env.store.list_queue()
    r = await run_cli("show", entry.id)
    assert r.exit_code == 0 and "Subject: test Q1" in r.output
    r = await run_cli("retry", "--all")
    assert r.exit_code == 0 and "1 entry due now" in r.output
    r = await run_cli("flush")
    assert r.exit_code == 0
    r = await run_cli("delete", entry.id)
    assert r.exit_code == 0
    assert await env.store.list_queue() == []
    r = await run_cli("delete", entry.id)
    assert r.exit_code == 1 and "no queue entry" in r.output


# --- smarthost ------------------------------------------------------------------------------

SMART_USER, SMART_PASS = "relayuser", "s3cret-pass"


def _authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMART_USER.encode()
        and auth_data.password == SMART_PASS.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class AuthSink(Sink):
    """A Sink that also notes who logged in for each transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.logins: list[bytes | None] = []

    async def handle_DATA(self, server, session, envelope):
        self.logins.append(session.auth_data.login if session.auth_data else None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smart(tmp_path):
    """Two smarthosts with AUTH on 127.0.0.5 (plaintext allowed; and STARTTLS with a
    self-signed certificate)."""
    import ssl

    from gomail.tls import ensure_self_signed

    cert, key = ensure_self_signed(tmp_path / "smarttls", "smart.test")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    out = {}
    controllers = []
    for name, extra in (
        ("plain", {"auth_require_tls": False}),
        ("other", {"auth_require_tls": False}),
        ("starttls", {"tls_context": ctx, "require_starttls": True}),
    ):
        sink = AuthSink()
        port = free_port_on(["127.0.0.5"])
        c = Controller(
            sink, hostname="127.0.0.5", port=port, ready_timeout=10,
            authenticator=_authenticator, **extra,
        )  # fmt: skip
        c.start()
        controllers.append(c)
        out[name] = (port, sink)
    yield out
    for c in controllers:
        c.stop()


def _smarthost(port, **kw):
    from gomail.config import Smarthost

    kw.setdefault("tls", "none")
    return Smarthost(
        "127.0.0.5", port, username=SMART_USER, password=kw.pop("password", SMART_PASS), **kw
    )


async def test_smarthost_takes_all_mail_with_auth(env, smart):
    port, sink = smart["plain"]
    env.app.config.delivery_smarthost = _smarthost(port)
    await env.enqueue(["bob@dest.test", "x@nullmx.test", "y@nowhere.invalid"])
    await env.runner.run_once()
    assert sorted(r for m in sink.messages for r in m[1]) == [
        "bob@dest.test", "x@nullmx.test", "y@nowhere.invalid",
    ]  # fmt: skip
    assert set(sink.logins) == {SMART_USER.encode()}
    assert env.sinks["127.0.0.2"].messages == []  # no MX used
    assert await env.store.list_queue() == []
    sent = [d for n, d in env.events if n == "email.sent"]
    assert sent and all(d["remote"] == "127.0.0.5[127.0.0.5]" for d in sent)


async def test_smarthost_wrong_password_defers_with_535(env, smart, caplog):
    port, sink = smart["plain"]
    env.app.config.delivery_smarthost = _smarthost(port, password="wrong")
    await env.enqueue(["bob@dest.test"])
    with caplog.at_level("ERROR", logger="gomail.delivery"):
        await env.runner.run_once()
    assert sink.messages == []
    [entry] = await env.store.list_queue()
    assert entry.state == "deferred" and "535" in entry.last_error
    assert "AUTH as relayuser" in entry.last_error
    assert await env.store.list_messages("alice@local.test") == []  # no bounce
    assert any("535" in r.getMessage() for r in caplog.records)
    assert all("wrong" not in r.getMessage() for r in caplog.records)


async def test_per_domain_smarthost_overrides_global(env, smart):
    (gport, gsink), (dport, dsink) = smart["plain"], smart["other"]
    env.app.config.delivery_smarthost = _smarthost(gport)
    env.app.config.delivery_smarthosts = {"dest.test": _smarthost(dport)}
    await env.enqueue(["bob@dest.test", "z@fallback.test"])
    await env.runner.run_once()
    assert [m[1] for m in dsink.messages] == [["bob@dest.test"]]
    assert [m[1] for m in gsink.messages] == [["z@fallback.test"]]
    assert await env.store.list_queue() == []


async def test_per_domain_smarthost_only(env, smart):
    port, sink = smart["plain"]
    env.app.config.delivery_smarthosts = {"fallback.test": _smarthost(port)}
    await env.enqueue(["bob@dest.test", "z@fallback.test"])
    await env.runner.run_once()
    assert [m[1] for m in sink.messages] == [["z@fallback.test"]]
    assert [m[1] for m in env.sinks["127.0.0.2"].messages] == [["bob@dest.test"]]


async def test_smarthost_rcpt_5xx_bounces(env, smart):
    port, sink = smart["plain"]
    sink.rcpt_replies["nobody@dest.test"] = "550 5.1.1 No such user"
    env.app.config.delivery_smarthost = _smarthost(port)
    await env.enqueue(["nobody@dest.test"])
    await env.runner.run_once()
    assert await env.store.list_queue() == []
    [(_uid, dsn)] = await env.store.list_messages("alice@local.test")
    assert b"550 5.1.1 No such user" in dsn


async def test_smarthost_starttls(env, smart):
    port, sink = smart["starttls"]
    env.app.config.delivery_smarthost = _smarthost(port, tls="starttls", tls_verify=False)
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    assert [m[1] for m in sink.messages] == [["bob@dest.test"]]
    assert sink.logins == [SMART_USER.encode()]


async def test_smarthost_starttls_verified_by_default(env, smart):
    port, sink = smart["starttls"]  # a self-signed certificate: refused when verifying
    env.app.config.delivery_smarthost = _smarthost(port, tls="starttls")
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    assert sink.messages == []
    [entry] = await env.store.list_queue()
    assert entry.state == "deferred" and "STARTTLS" in entry.last_error


async def test_smarthost_required_starttls_not_offered_defers(env, smart):
    port, sink = smart["plain"]
    env.app.config.delivery_smarthost = _smarthost(port, tls="starttls", tls_verify=False)
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    assert sink.messages == []
    [entry] = await env.store.list_queue()
    assert "does not offer STARTTLS" in entry.last_error


async def test_smarthost_by_name_through_dns(env, smart, knot):
    from dataclasses import replace

    port, _sink = smart["plain"]
    # a name not in the zones: deferred (our configuration), never bounced
    env.app.config.delivery_smarthost = replace(_smarthost(port), host="relay.nowhere.test")
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    [entry] = await env.store.list_queue()
    assert entry.state == "deferred" and "smarthost relay.nowhere.test" in entry.last_error


def test_smarthost_config(tmp_path):
    from gomail.config import load_config
    from gomail.yamlfile import ConfigError

    (tmp_path / "pass").write_text("hunter2\n")
    path = tmp_path / "gomail.yaml"
    path.write_text(
        "delivery:\n"
        "  smarthost:\n"
        "    host: smtp.provider.example\n"
        "    username: user\n"
        "    password_file: pass\n"
        "  smarthosts:\n"
        "    Example.COM: {host: 192.0.2.1, port: 465, tls: implicit, tls_verify: false}\n"
    )
    cfg = load_config(path)
    sh = cfg.delivery_smarthost
    assert (sh.host, sh.port, sh.tls, sh.tls_verify) == (
        "smtp.provider.example",
        587,
        "starttls",
        True,
    )
    assert (sh.username, sh.password) == ("user", "hunter2")
    assert "hunter2" not in repr(sh) and "hunter2" not in repr(cfg)
    ex = cfg.delivery_smarthosts["example.com"]
    assert (ex.host, ex.port, ex.tls, ex.tls_verify, ex.username) == (
        "192.0.2.1", 465, "implicit", False, None,
    )  # fmt: skip

    def bad(block: str, needle: str) -> None:
        path.write_text("delivery:\n" + block)
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert needle in str(e.value), str(e.value)

    bad("  smarthost: {port: 25}\n", "delivery.smarthost.host is required")
    bad("  smarthost: {host: a.example, tls: ssl}\n", "delivery.smarthost.tls")
    bad("  smarthost: {host: a.example, port: 0}\n", "delivery.smarthost.port")
    bad("  smarthost: {host: a.example, user: x}\n", "unknown setting delivery.smarthost.user")
    bad("  smarthost: {host: a.example, username: x}\n", "username and password_file")
    bad("  smarthost: {host: a.example, username: x, password_file: nope}\n", "password_file")
    bad("  smarthost: {host: a.example, tls_verify: 1}\n", "delivery.smarthost.tls_verify")
    bad("  smarthosts: {a.example: 5}\n", "delivery.smarthosts.a.example is a mapping")
    bad("  smarthosts: {a.example: {port: 25}}\n", "delivery.smarthosts.a.example.host")
    bad("  smarthost: 5\n", "delivery.smarthost has the wrong type")


async def test_copies_with_different_senders_go_in_separate_transactions(env):
    # forwarded copies of one message may carry different SRS senders (aliases in two of
    # our domains); each must go out with its own
    raw = b"From: <x@remote.example>\r\nSubject: fw\r\n\r\nHi.\r\n"
    senders = {"bob@dest.test": "SRS0=a@one.test", "carol@dest.test": "SRS0=b@two.test"}
    delivery = Delivery("Q1", "x@remote.example", raw, outbound=tuple(senders))
    await env.store.deliver(replace(delivery, outbound_senders=senders))
    await env.runner.run_once()
    got = sorted((m[0], m[1]) for m in env.sinks["127.0.0.2"].messages)
    assert got == [("SRS0=a@one.test", ["bob@dest.test"]), ("SRS0=b@two.test", ["carol@dest.test"])]


async def test_delay_notice_goes_to_each_sender_of_a_transaction(env):
    # copies of one message with their own envelope senders (as SRS gives forwarded copies):
    # each sender is told once
    await env.store.add_user("dave@local.test", "x", None)
    for rcpt in ("bob@dest.test", "carol@dest.test"):
        env.sinks["127.0.0.2"].rcpt_replies[rcpt] = "451 4.7.1 Mailbox busy, try later"
    raw = b"From: <alice@local.test>\r\nSubject: two senders\r\n\r\nHi.\r\n"
    senders = {"bob@dest.test": "alice@local.test", "carol@dest.test": "dave@local.test"}
    delivery = Delivery("Q1", "alice@local.test", raw, outbound=tuple(senders))
    await env.store.deliver(replace(delivery, outbound_senders=senders))
    created = (await env.store.list_queue())[0].created
    await env.runner.run_once(created + 4 * 3600 + 1)
    await env.runner.run_once(created + 5 * 3600)  # deferred again: no second notice
    for user, rcpt in (("alice@local.test", b"bob"), ("dave@local.test", b"carol")):
        [(_uid, notice)] = await env.store.list_messages(user)
        assert b"Action: delayed" in notice and b"Final-Recipient: rfc822; " + rcpt in notice
