"""A gomail server for the session-level fuzz tests: the test accounts, and error limits
high enough that a long fuzz run is not cut off by the junk-command and error limits."""

from __future__ import annotations

import pytest

FUZZ_LIMITS = {
    "smtp_soft_error_limit": 1_000_000,
    "smtp_hard_error_limit": 1_000_000,
    "smtp_error_delay": 0.001,
    "smtp_junk_command_limit": 1_000_000,
    "unknown_recipients_per_session": 1_000_000,
    "unknown_recipients_per_ip": 1_000_000,
    "imap_sessions_per_user_ip": 1000,
}


@pytest.fixture(scope="module")
def fuzz_gomail(tmp_path_factory, gomail_template):
    from conftest import Gomail  # tests/conftest.py, loaded by pytest under that name

    g = Gomail(tmp_path_factory.mktemp("fuzz"), template=gomail_template)
    g.start({"limits": FUZZ_LIMITS})
    yield g
    if g.running:
        g.stop()
    g.kill9()
