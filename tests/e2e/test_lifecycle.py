"""The server process: SIGTERM, in-flight transactions, kill -9 under load, restart."""

from __future__ import annotations

import contextlib
import json
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


def test_json_log_has_one_line_per_transaction(gomail_factory):
    g = gomail_factory()
    g.start({"log_format": "json"})
    msgid, data = g.make_message("json@sender.example", "alice@example.org")
    r = g.transact("json@sender.example", ["alice@example.org", "nobody@example.org"], data)
    g.assert_reply(r["data"], 250, "2.0.0")
    g.stop()
    records = []
    for line in g.log.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))  # every log line is JSON
        else:
            assert line.startswith("=== gomail run") or not line.strip(), line
    tx = [
        rec
        for rec in records
        if rec.get("sender") == "json@sender.example" and "alice@example.org" in str(rec)
    ]
    assert len(tx) == 1, tx or records
    rec = tx[0]
    assert rec.get("queue_id") and rec.get("peer") == "127.0.0.1", rec
    assert rec.get("recipients") == ["alice@example.org"], rec
    assert rec.get("size", 0) >= len(data), rec
    assert any(k.startswith("duration") for k in rec), rec
    assert rec.get("verdict"), rec


def test_backup_while_receiving_is_a_working_copy(gomail_factory, tmp_path):
    g = gomail_factory("live").start()
    first = []
    for _ in range(20):
        msgid, data = g.make_message(SENDER, "bob@example.org")
        g.assert_reply(g.transact(SENDER, ["bob@example.org"], data)["data"], 250, "2.0.0")
        first.append(msgid)
    stop = threading.Event()

    def keep_sending():
        while not stop.is_set():
            _, data = g.make_message(SENDER, "bob@example.org")
            with contextlib.suppress(OSError, smtplib.SMTPException):
                g.send(SENDER, ["bob@example.org"], data)

    t = threading.Thread(target=keep_sending, daemon=True)
    t.start()
    try:
        dest = tmp_path / "copy" / "data"
        g.cli("backup", str(dest))
    finally:
        stop.set()
        t.join(20)
    g.stop()
    # a server started on the copy has the accounts and the mail
    copy = gomail_factory("copy")  # its data directory exists: the template is not copied
    try:
        copy.start()
        ids = copy.message_ids("bob@example.org")
        assert all(ids.count(m) == 1 for m in first), "messages before the backup are missing"
        assert len(ids) == len(set(ids))
        with copy.smtp("smtps") as s:
            s.ehlo("client.test")
            g.assert_reply(s.login("bob@example.org", g.PASSWORD), 235, "2.7.0")
        copy.stop()
    finally:
        copy.kill9()
