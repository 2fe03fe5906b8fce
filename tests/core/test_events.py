"""Events reach every plugin's gomail_event: received, delivered, queued, login failures."""

import asyncio
import smtplib
import socket

from gomail import hookimpl
from gomail.config import Config
from gomail.passwords import PasswordHasher
from gomail.server import Server
from gomail.store.sqlite import SqliteStore


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    async def gomail_event(self, event):  # a coroutine: run as a background task
        self.events.append((event.name, event.data))


async def test_events_of_a_delivery_and_a_failed_login(tmp_path):
    store = SqliteStore(tmp_path)
    await store.open()
    await store.add_domain("example.org")
    await store.add_user("alice@example.org", PasswordHasher().hash_sync("pw"), None)
    await store.close()
    ports = {name: _port() for name in ("mx", "submission", "smtps", "imap", "imaps")}
    config = Config(data_dir=tmp_path, hostname="mx.test", dns_nameservers=["127.0.0.1"],
                    dns_port=_port(), dns_timeout=1)  # fmt: skip
    config.listen = {name: ("127.0.0.1", port) for name, port in ports.items()}
    server = Server(config)
    recorder = Recorder()
    server.plugins.register(recorder, "recorder")
    await server.start()
    try:

        def client():
            with smtplib.SMTP("127.0.0.1", ports["mx"]) as s:
                s.sendmail("x@remote.example", ["alice@example.org"], b"Subject: hi\r\n\r\nhi\r\n")
            with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], context=_no_verify()) as s:
                try:
                    s.login("alice@example.org", "wrong")
                except smtplib.SMTPAuthenticationError:
                    pass
            with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], context=_no_verify()) as s:
                s.login("alice@example.org", "pw")
                s.sendmail("alice@example.org", ["bob@remote.example"], b"Subject: out\r\n\r\n")

        await asyncio.to_thread(client)
        await asyncio.sleep(0.1)
    finally:
        await server.stop()
    names = [name for name, _ in recorder.events]
    assert names[:3] == ["server.started", "email.received", "email.delivered"]
    delivered = dict(recorder.events)["email.delivered"]
    assert delivered["mailboxes"] == [("alice@example.org", "INBOX")]
    failed = [data for name, data in recorder.events if name == "security.login_failed"]
    assert failed and failed[0]["protocol"] == "smtp" and failed[0]["peer"] == "127.0.0.1"
    queued = [data for name, data in recorder.events if name == "email.queued"]
    assert [q["recipients"] for q in queued] == [["bob@remote.example"]]


def _no_verify():
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
