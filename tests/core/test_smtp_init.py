"""Our connection set-up must leave a protocol object exactly as aiosmtpd's own would."""

import asyncio
from types import SimpleNamespace

from aiosmtpd.smtp import SMTP
from gomail.config import Config
from gomail.pipeline import Listener, Pipeline
from gomail.smtp.handler import Handler
from gomail.smtp.protocol import GomailSMTP

KWARGS = {
    "data_size_limit": 1000,
    "enable_SMTPUTF8": True,
    "hostname": "mx.example.org",
    "ident": "ESMTP gomail",
    "tls_context": None,
    "require_starttls": False,
    "auth_require_tls": True,
    "timeout": 300,
}


def _describe(value):
    if isinstance(value, dict):
        return {k: _describe(v) for k, v in value.items()}
    if hasattr(value, "__wrapped__"):  # our guard around each smtp_* command
        return _describe(value.__wrapped__)
    if hasattr(value, "method"):  # aiosmtpd's _AuthMechAttr
        return ("auth", value.method.__func__, value.is_builtin)
    if hasattr(value, "__func__"):
        return ("bound", value.__func__)
    if isinstance(value, asyncio.StreamReader):
        return ("reader", value._limit)
    if isinstance(value, asyncio.Future | asyncio.AbstractEventLoop):
        return type(value)
    if type(value).__name__ in ("ReferenceType", "deque"):
        return type(value)
    return value


async def test_fast_init_matches_aiosmtpd():
    handler = Handler.__new__(Handler)
    handler.listener = Listener("mx", "127.0.0.1", 25, "p")
    handler.pipeline = Pipeline("p")
    Handler.__init__(handler, SimpleNamespace(config=Config()), handler.listener, handler.pipeline)

    ours = GomailSMTP(handler, line_length_limit=5000, **KWARGS)

    reference = GomailSMTP.__new__(GomailSMTP)
    reference.line_length_limit = 5000
    reference.__dict__.update(
        {k: v for k, v in vars(ours).items() if k in ("ctx", "txn", "implicit_tls", "_in_ehlo",
                                                     "_bdat", "_bdat_failed", "busy",
                                                     "_line_too_long", "errors", "_junk",
                                                     "_last_reply", "_hang_up", "_admitted",
                                                     "command_size_limits")}
    )  # fmt: skip
    SMTP.__init__(reference, handler, **KWARGS)
    reference.handler = handler

    assert set(vars(ours)) == set(vars(reference))
    # HELP still finds each command's syntax through our guard
    assert ours._smtp_methods["MAIL"].__smtp_syntax__ == "MAIL FROM: <address>"
    for key in vars(reference):
        assert _describe(getattr(ours, key)) == _describe(getattr(reference, key)), key
