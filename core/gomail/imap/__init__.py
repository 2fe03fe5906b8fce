"""gomail's own IMAP4rev1/IMAP4rev2 server (issue 4).

- ``gomail.imap.parser`` — the command parser: pure code, no I/O, raises only ``ParseError``.
- ``gomail.imap.wire`` — response encoding: strings, literals, lists, modified UTF-7, dates, flags.
"""
