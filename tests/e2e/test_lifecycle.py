"""The server process: SIGTERM, in-flight transactions, kill -9 under load, restart."""

from __future__ import annotations

import random
import smtplib
import socket
import threading
import time
import uuid
from collections import Counter

USERS = ["alice@example.org", "bob@example.org", "carol@example.org"]
SENDER = "load@sender.example"


def test_sigterm_exits_zero(gomail):
    g = gomail
    msgid, data = g.make_message(SENDER, "alice@example.org")
    g.assert_reply(g.transact(SENDER, ["alice@example.org"], data)["data"], 250, "2.0.0")
    g.stop()  # asserts exit code 0 within 15 s
    assert g.message_ids("alice@example.org").count(msgid) == 1


def test_sigterm_while_idle_clients_are_connected(gomail):
    g = gomail
    idle = [g.raw() for _ in range(3)]
    for c in idle:
        c.cmd("EHLO client.test")
    try:
        t0 = time.monotonic()
        g.stop()
        assert time.monotonic() - t0 < 15
    finally:
        for c in idle:
            c.close()


def test_sigterm_finishes_the_transaction_in_flight(gomail):
    g = gomail
    msgid, data = g.make_message(SENDER, "bob@example.org", body="in flight\r\n" * 100)
    c = g.raw()
    c.cmd("EHLO client.test")
    g.assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")
    g.assert_reply(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    assert c.cmd("DATA")[0] == 354
    c.send(data[:100])
    time.sleep(0.2)
    g.proc.terminate()  # SIGTERM mid-DATA
    time.sleep(0.5)
    assert g.proc.poll() is None, "exited with a transaction in flight"
    # no new connections once stopping
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", g.ports["mx"])) != 0, "still accepting after SIGTERM"
    c.send(data[100:] + b".\r\n")
    g.assert_reply(c.reply(), 250, "2.0.0")
    c.send(b"QUIT\r\n")
    c.close()
    g.stop()
    assert g.message_ids("bob@example.org").count(msgid) == 1


def test_restart_keeps_mail_and_accounts(gomail):
    g = gomail
    msgid, data = g.make_message(SENDER, "carol@example.org")
    g.assert_reply(g.transact(SENDER, ["carol@example.org"], data)["data"], 250, "2.0.0")
    cert = sorted(p.name for p in (g.data / "tls").iterdir())
    assert cert, "no self-signed certificate under DATA/tls"
    g.restart()
    assert sorted(p.name for p in (g.data / "tls").iterdir()) == cert
    assert g.message_ids("carol@example.org").count(msgid) == 1
    with g.smtp("smtps") as s:
        s.ehlo("client.test")
        g.assert_reply(s.login("carol@example.org", g.PASSWORD), 235, "2.7.0")


CLIENTS = 20
LOAD_SECONDS = 3.0
MAX_MESSAGES = 2000


def test_kill9_under_load_loses_nothing_and_duplicates_nothing(gomail):
    g = gomail
    accepted: dict[str, str] = {}  # Message-ID -> recipient, for every 250 after DATA
    lock = threading.Lock()
    stop = threading.Event()
    sent = [0]
    errors: list[str] = []
    body = "x" * 76 + "\r\n"

    def client(n: int) -> None:
        rnd = random.Random(n)
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", g.ports["mx"], timeout=10) as s:
                    s.ehlo("load.test")
                    for _ in range(rnd.randint(1, 20)):  # reuse connections, sometimes not
                        with lock:
                            if stop.is_set() or sent[0] >= MAX_MESSAGES:
                                return
                            sent[0] += 1
                        rcpt = rnd.choice(USERS)
                        msgid, data = g.make_message(
                            SENDER, rcpt, body=body * rnd.randint(1, 30), msgid=None
                        )
                        s.mail(SENDER)
                        code, _ = s.rcpt(rcpt)
                        if code != 250:
                            with lock:
                                errors.append(f"RCPT {code}")
                            s.rset()
                            continue
                        code, text = s.data(data)
                        if code == 250:
                            with lock:
                                accepted[msgid] = rcpt
                        else:
                            with lock:
                                errors.append(f"DATA {code} {text!r}")
            except (OSError, smtplib.SMTPException):
                if stop.is_set() or g.proc.poll() is not None:
                    return
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    # kill while the load is still running: after LOAD_SECONDS, or earlier if the message
    # budget is nearly spent
    deadline = time.monotonic() + LOAD_SECONDS
    while time.monotonic() < deadline and sent[0] < MAX_MESSAGES * 3 // 4:
        time.sleep(0.05)
    in_flight_at_kill = sent[0] - len(accepted)
    g.kill9()
    stop.set()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert len(accepted) >= 20, f"too little got through before the kill: {len(accepted)}"
    assert not [e for e in errors if not e.startswith("DATA 4")], errors[:10]

    print(f"sent {sent[0]}, accepted {len(accepted)}, in flight at kill ~{in_flight_at_kill}")
    g.start()
    found = {u: Counter(g.message_ids(u)) for u in USERS}
    missing = [m for m, u in accepted.items() if found[u][m] == 0]
    twice = {u: [m for m, n in c.items() if n > 1] for u, c in found.items()}
    assert not missing, f"{len(missing)} of {len(accepted)} accepted messages lost: {missing[:5]}"
    assert not any(twice.values()), f"stored twice: {twice}"
    # nothing but what was sent, and nothing where it was not sent
    for u in USERS:
        for m in found[u]:
            if m in accepted:
                assert accepted[m] == u, (m, u, accepted[m])
    # the server works after the crash
    msgid, data = g.make_message(SENDER, "alice@example.org", msgid=f"{uuid.uuid4().hex}@after")
    g.assert_reply(g.transact(SENDER, ["alice@example.org"], data)["data"], 250, "2.0.0")
    g.stop()
