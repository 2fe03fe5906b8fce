"""Keywords a client may create (issue 10 follow-up): a folder holds at most
MAX_KEYWORDS_PER_FOLDER of them, each at most MAX_KEYWORD_LENGTH characters. STORE, APPEND and
COPY that would pass the cap get ``NO [LIMIT]`` and change nothing; a folder at its cap stops
advertising ``\\*`` in PERMANENTFLAGS (RFC 3501 section 7.1).

Before the cap, 8 STOREs of 6,000 new keywords each gave one message 48,000 keywords and a
FETCH FLAGS answer of 11 MB.
"""

from __future__ import annotations

from gomail.store import MAX_KEYWORD_LENGTH, MAX_KEYWORDS_PER_FOLDER

from . import test_session_basic as _base
from .test_session_basic import Client, Imap, message

imap = _base.imap

CAP = MAX_KEYWORDS_PER_FOLDER


def keywords(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def permanent_flags(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line.startswith(b"* OK [PERMANENTFLAGS ")]


async def flags_of(c: Client, seq: int) -> bytes:
    out = await c.cmd(f"FETCH {seq} FLAGS")
    assert out[-1].split()[1] == b"OK", out
    return out[0]


async def test_store_past_the_folder_cap_is_refused_and_changes_nothing(imap: Imap):
    await imap.deliver(message(1))
    await imap.deliver(message(2))
    c = await imap.client()
    out = await c.cmd("SELECT INBOX")
    assert permanent_flags(out)[0].endswith(b" \\*)] Flags permitted")
    # The attack: thousands of new keywords in one STORE.
    out = await c.cmd(f"STORE 1 +FLAGS ({keywords('k', 6000)})")
    assert out[-1].startswith(f"a{c.n} NO [LIMIT] at most {CAP} keywords".encode()), out[-1]
    assert await flags_of(c, 1) == b"* 1 FETCH (FLAGS (\\Recent))"
    # Up to the cap is fine; reaching it withdraws \* at once, with the new FLAGS.
    out = await c.cmd(f"STORE 1 +FLAGS.SILENT ({keywords('k', CAP)})")
    assert out[-1] == f"a{c.n} OK STORE completed".encode(), out
    assert not permanent_flags(out)[-1].endswith(b" \\*)] Flags permitted")
    assert b"k0" in permanent_flags(out)[-1]
    # One more new keyword, on any message, is refused; those in use are not.
    out = await c.cmd("STORE 2 +FLAGS (one-more)")
    assert out[-1].startswith(f"a{c.n} NO [LIMIT] ".encode()), out[-1]
    out = await c.cmd("STORE 2 +FLAGS (K5 \\Seen)")  # keywords compare case-insensitively
    assert out[-1] == f"a{c.n} OK STORE completed".encode(), out
    assert await flags_of(c, 2) == b"* 2 FETCH (FLAGS (\\Seen K5 \\Recent))"
    # A new SELECT sees the folder at its cap too.
    out = await c.cmd("SELECT INBOX")
    assert permanent_flags(out)[0].startswith(b"* OK [PERMANENTFLAGS (\\Answered")
    assert b"\\*" not in permanent_flags(out)[0]
    # Once the keywords are no longer in use, there is room again.
    out = await c.cmd(f"STORE 1 -FLAGS.SILENT ({keywords('k', CAP)})")
    assert out[-1] == f"a{c.n} OK STORE completed".encode(), out
    out = await c.cmd("STORE 2 +FLAGS (one-more)")
    assert out[-1] == f"a{c.n} OK STORE completed".encode(), out


async def test_a_keyword_too_long_is_refused(imap: Imap):
    await imap.deliver(message(1))
    c = await imap.client()
    await c.cmd("SELECT INBOX")
    longest = "x" * MAX_KEYWORD_LENGTH
    out = await c.cmd(f"STORE 1 +FLAGS ({longest}y)")
    assert out[-1] == (
        f"a{c.n} NO [LIMIT] keywords are at most {MAX_KEYWORD_LENGTH} characters long".encode()
    )
    raw = message(2)
    out = await c.cmd(b"APPEND INBOX (%sy) {%d+}\r\n%s" % (longest.encode(), len(raw), raw))
    assert out[-1].startswith(f"a{c.n} NO [LIMIT] ".encode()), out[-1]
    out = await c.cmd(f"STORE 1 +FLAGS ({longest})")
    assert out[-1] == f"a{c.n} OK STORE completed".encode(), out
    out = await c.cmd("STATUS INBOX (MESSAGES)")
    assert out[0] == b"* STATUS INBOX (MESSAGES 1)"


async def test_append_and_copy_into_a_full_folder(imap: Imap):
    await imap.store.create_folder("alice@example.org", "Full")
    await imap.deliver(message(1))
    c = await imap.client()
    raw = message(2)
    # An APPEND that would pass the cap stores none of its messages.
    out = await c.cmd(
        b"APPEND Full (a) {%d+}\r\n%s (%s) {%d+}\r\n%s"
        % (len(raw), raw, keywords("k", CAP).encode(), len(raw), raw)
    )
    assert out[-1].startswith(f"a{c.n} NO [LIMIT] ".encode()), out[-1]
    out = await c.cmd("STATUS Full (MESSAGES)")
    assert out[0] == b"* STATUS Full (MESSAGES 0)"
    out = await c.cmd(
        b"APPEND Full (%s) {%d+}\r\n%s" % (keywords("k", CAP).encode(), len(raw), raw)
    )
    assert out[-1].startswith(f"a{c.n} OK [APPENDUID ".encode()), out[-1]
    # COPY and MOVE bring their messages' keywords along: not past the target's cap.
    await c.cmd("SELECT INBOX")
    out = await c.cmd("STORE 1 +FLAGS.SILENT (fresh)")
    assert out[-1] == f"a{c.n} OK STORE completed".encode(), out
    for verb in ("COPY", "MOVE"):
        out = await c.cmd(f"{verb} 1 Full")
        assert out[-1].startswith(f"a{c.n} NO [LIMIT] ".encode()), out[-1]
    out = await c.cmd("STATUS Full (MESSAGES)")
    assert out[0] == b"* STATUS Full (MESSAGES 1)"
    out = await c.cmd("STORE 1 -FLAGS.SILENT (fresh)")
    out = await c.cmd("STORE 1 +FLAGS.SILENT (k7)")
    out = await c.cmd("COPY 1 Full")
    assert out[-1].startswith(f"a{c.n} OK [COPYUID ".encode()), out[-1]
