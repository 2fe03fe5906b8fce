"""Events reach every plugin's gomail_event: received, delivered, queued, login failures."""

import asyncio
import smtplib

from gomail.passwords import PasswordHasher
from serverbed import Recorder, prepare_store, running_server


async def test_events_of_a_delivery_and_a_failed_login(tmp_path):
    users = {"alice@example.org": PasswordHasher().hash_sync("pw")}
    await prepare_store(tmp_path, "example.org", users)
    recorder = Recorder()
    async with running_server(tmp_path, recorder) as (_server, ports):

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
