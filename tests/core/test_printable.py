"""Client text made printable: one function for headers, replies and log lines."""

from __future__ import annotations

import email
import logging
from types import SimpleNamespace

from gomail.config import Config
from gomail.context import Recipient, Session, Transaction
from gomail.logs import TextFormatter
from gomail.pipeline import Listener, Pipeline
from gomail.printable import printable
from gomail.smtp.handler import Handler


def test_printable_replaces_every_control_character():
    assert printable("mx.example.org") == "mx.example.org"
    assert printable("jürgen@bücher.example") == "jürgen@bücher.example"  # UTF-8 text stays
    assert printable("a\rb\nc\x00d\te\x7ff\x85g\u2028h") == "a?b?c?d?e?f?g?h"
    undecodable = b"x\xffy".decode("utf-8", "surrogateescape")
    assert printable(undecodable) == "x?y"


def _handler() -> Handler:
    app = SimpleNamespace(config=Config(hostname="mx.example.org"))
    return Handler(app, Listener("mx", "127.0.0.1", 25, "p"), Pipeline("p"))


def test_trace_headers_cannot_be_split_by_what_a_client_or_plugin_said():
    """Defence in depth: the protocol refuses control characters in commands, and the
    headers are safe even when such text reaches them another way (a plugin)."""
    ctx = Session(id="S1", listener="mx", pipeline="p", peer_ip="192.0.2.1", peer_port=1)
    ctx.helo = "inj1.test\rX-Injected-Ehlo: EVIL1"
    txn = Transaction(id="T1", sender="a@b.example")
    txn.recipients.append(Recipient(address="bob@example.org\r\nX-Injected-Rcpt: EVIL2"))
    txn.auth_results.append("spf=pass smtp.helo=a\nX-Injected-Ar: EVIL3")
    raw = _handler()._trace_headers(ctx, txn) + b"Subject: hi\r\n\r\nbody\r\n"
    msg = email.message_from_bytes(raw)
    assert [k for k in msg if k.startswith("X-")] == [], msg.keys()
    assert b"from inj1.test?X-Injected-Ehlo: EVIL1 ([192.0.2.1])" in raw
    assert raw.count(b"\r") == raw.count(b"\r\n")  # no bare CR
    assert raw.count(b"\n") == raw.count(b"\r\n")  # no bare LF


def test_text_log_lines_cannot_be_forged():
    record = logging.LogRecord(
        "gomail.test", logging.WARNING, __file__, 1, "refused %s", ("x\nFORGED",), None
    )
    record.fields = {"user": "bob\r\nFORGED", "peer": "192.0.2.1"}
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line, line
    assert "refused x?FORGED" in line and 'user="bob\\r\\nFORGED"' in line, line
