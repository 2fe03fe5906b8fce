"""An address that keeps failing logins is locked out, on SMTP and IMAP alike."""

import imaplib
import smtplib

import pytest


def test_lockout_after_failures_across_connections_and_protocols(gomail_factory):
    g = gomail_factory("lockout").start({"login_max_failures": 3, "login_window": 600})
    # smtplib's login() tries PLAIN, then LOGIN: two failures; then one on IMAP.
    s = g.smtp("smtps")
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        s.login("alice@example.org", "wrong")
    assert err.value.smtp_code == 535
    s.close()
    imap = imaplib.IMAP4("127.0.0.1", g.ports["imap"])
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("alice@example.org", "wrong")
    imap.logout()
    # Now even the right password is refused, with a reply that says why.
    s = g.smtp("smtps")
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        s.login("alice@example.org", "secret-pw")
    assert err.value.smtp_code == 454
    assert err.value.smtp_error.startswith(b"4.7.0 Too many failed logins")
    s.close()
    imap = imaplib.IMAP4("127.0.0.1", g.ports["imap"])
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        imap.login("alice@example.org", "secret-pw")
    imap.logout()
    assert "address locked out" in g.log
    g.stop()
