"""Fuzz tests (hypothesis) for every parser that meets client bytes.

- test_fuzz_imap_parser: IMAP commands, literals, CommandBuffer, SASL lines (pure);
- test_fuzz_imap_session: the same commands against a logged-in session of a real server;
- test_fuzz_smtp: SMTP commands and parameters against the mx and smtps listeners;
- test_fuzz_address: MAIL FROM / RCPT TO paths, domains, local parts (pure);
- test_fuzz_mime: ENVELOPE/BODYSTRUCTURE, the part map, sections, header edits, and time
  bounds for sender-controlled input that was super-linear (pure).

LIST mailbox patterns have their own property and timing tests next to the matcher.

In CI every test runs a fixed, derandomized set of examples (the whole directory takes
about half a minute here). To fuzz longer, with fresh examples each run::

    GOMAIL_FUZZ_SCALE=50 uv run pytest -q tests/fuzz

(see budget.py).
"""
