"""Response encoding: strings, literals, modified UTF-7, dates and flags."""

from __future__ import annotations

import datetime as dt

import pytest
from gomail.imap import wire
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("INBOX", b'"INBOX"'),
        ("", b'""'),
        ('say "hi"', b'"say \\"hi\\""'),
        ("back\\slash", b'"back\\\\slash"'),
        ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        ("nul\0", b"{4}\r\nnul\0"),
        ("Grüße", b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),
        (b"raw", b'"raw"'),
    ],
)
def test_quote(value, expected):
    assert wire.quote(value) == expected


def test_quote_utf8_session_quotes_8bit_and_long_values_become_literals():
    assert wire.quote("Grüße", utf8=True) == '"Grüße"'.encode()
    long = "x" * 5000
    assert wire.quote(long) == b"{5000}\r\n" + long.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("INBOX", b"INBOX"),
        ("foo]", b"foo]"),
        ("NIL", b'"NIL"'),
        ("nil", b'"nil"'),
        ("", b'""'),
        ("a b", b'"a b"'),
        ("50%", b'"50%"'),
        ("a*", b'"a*"'),
        ("(x)", b'"(x)"'),
        ("{3}", b'"{3}"'),
    ],
)
def test_astring(value, expected):
    assert wire.astring(value) == expected


def test_nstring_literal_and_lists():
    assert wire.nstring(None) == b"NIL"
    assert wire.nstring("x") == b'"x"'
    assert wire.literal(b"abc") == b"{3}\r\nabc"
    assert wire.literal(b"a\0c", binary=True) == b"~{3}\r\na\0c"
    assert wire.paren_list([b"\\Seen", b"$Junk"]) == b"(\\Seen $Junk)"
    assert wire.paren_list([]) == b"()"


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("&", "&-"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
        ("😀", "&2D3eAA-"),
        ("tab\there", "tab&AAk-here"),
        ("é&", "&AOk-&-"),
    ],
)
def test_mutf7(text, encoded):
    assert wire.mutf7_encode(text) == encoded
    assert wire.mutf7_decode(encoded) == text
    assert wire.mutf7_decode(encoded.encode()) == text


@pytest.mark.parametrize(
    "bad",
    [
        "&",  # unterminated
        "&Jjo",  # unterminated
        "&Jjo!-",  # bad base64 character
        "&AGE-",  # encodes printable ASCII "a"
        "&AOk-&AOk-",  # adjacent encoded runs
        "&A-",  # bad length
        "&AO-",  # not whole UTF-16
        "&AOl-",  # non-zero padding bits
        "&2D0-",  # lone surrogate
        "caf\u00e9",  # raw 8-bit
        "tab\there",  # raw control character
        b"\xc3\xa9",  # raw 8-bit bytes
    ],
)
def test_mutf7_decode_rejects(bad):
    with pytest.raises(ValueError):
        wire.mutf7_decode(bad)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_mutf7_round_trip(text):
    encoded = wire.mutf7_encode(text)
    assert encoded.isascii()
    assert wire.mutf7_decode(encoded) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_mutf7_decode_only_value_error(text):
    try:
        decoded = wire.mutf7_decode(text)
    except ValueError:
        return
    assert wire.mutf7_encode(decoded) == text  # what is accepted is canonical


def test_mailbox_encoding():
    assert wire.mailbox("inbox") == b"INBOX"
    assert wire.mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert wire.mailbox("Entwürfe", utf8=True) == '"Entwürfe"'.encode()
    assert wire.mailbox("My Folder") == b'"My Folder"'


def test_datetime_format_and_parse():
    when = dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7)))
    assert wire.format_datetime(when) == "17-Jul-1996 02:44:25 -0700"
    assert wire.internaldate(when) == b'"17-Jul-1996 02:44:25 -0700"'
    assert wire.parse_datetime("17-Jul-1996 02:44:25 -0700") == when
    assert wire.parse_datetime(" 7-jul-1996 02:44:25 +0530").day == 7
    naive = dt.datetime(2024, 1, 5, 9, 0, 0)
    assert wire.format_datetime(naive) == "05-Jan-2024 09:00:00 +0000"
    assert wire.format_datetime(
        dt.datetime(2024, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45)))
    ).endswith("+0545")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "17-Jul-1996",
        "17-Jux-1996 02:44:25 -0700",
        "32-Jul-1996 02:44:25 -0700",
        "17-Jul-1996 25:44:25 -0700",
        "17-Jul-1996 02:44:25 -0799",
        "17-Jul-1996 02:44:25 0700",
        "17-Jul-1996  02:44:25 -0700",
    ],
)
def test_parse_datetime_rejects(bad):
    with pytest.raises(ValueError):
        wire.parse_datetime(bad)


@pytest.mark.parametrize(
    ("flag", "ok"),
    [
        ("\\Seen", True),
        ("\\Recent", True),
        ("\\XExtension", True),
        ("$Forwarded", True),
        ("NonJunk", True),
        ("", False),
        ("\\", False),
        ("two words", False),
        ("a(b", False),
        ("a]", False),
        ("\\*", False),
        ("ümlaut", False),
    ],
)
def test_is_valid_flag(flag, ok):
    assert wire.is_valid_flag(flag) is ok


def test_flag_helpers():
    assert not wire.is_valid_flag("\\Recent", allow_recent=False)
    assert wire.canonical_flag("\\SEEN") == "\\Seen"
    assert wire.canonical_flag("\\deleted") == "\\Deleted"
    assert wire.canonical_flag("$Label1") == "$Label1"


# --- the fast paths against the per-character code they replaced ---------------------------
# mutf7_encode, is_atom and quote's 8-bit test once looped in Python per character: LIST over
# 10,000 folders of 1.5 KB names took seconds of CPU. Their answers must not have changed.


def _reference_mutf7_encode(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append("&" + wire._b64_encode("".join(pending)) + "-")
                pending = []
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append("&" + wire._b64_encode("".join(pending)) + "-")
    return "".join(out)


def _reference_is_atom(value: str | bytes, astring: bool = False) -> bool:
    data = value.encode("utf-8") if isinstance(value, str) else value
    allowed = wire.ASTRING_CHARS if astring else wire.ATOM_CHARS
    return bool(data) and all(c in allowed for c in data)


_MOSTLY_ASCII = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.sampled_from("&]-\0\r\n\x7f\x80é€😀\ud800"),
        st.characters(blacklist_categories=("Cs",)),
    )
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_MOSTLY_ASCII, st.text()))
def test_mutf7_encode_as_before(text):
    try:
        expected = _reference_mutf7_encode(text)
    except UnicodeEncodeError:  # a lone surrogate has no UTF-16: both refuse it
        with pytest.raises(UnicodeEncodeError):
            wire.mutf7_encode(text)
        return
    assert wire.mutf7_encode(text) == expected


@settings(max_examples=500, deadline=None)
@given(st.one_of(_MOSTLY_ASCII, st.binary()), st.booleans())
def test_is_atom_as_before(value, astring):
    try:
        expected = _reference_is_atom(value, astring)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            wire.is_atom(value, astring=astring)
        return
    assert wire.is_atom(value, astring=astring) is expected


@settings(max_examples=300, deadline=None)
@given(st.binary(), st.booleans())
def test_quote_8bit_test_as_before(data, utf8):
    quoted = wire.quote(data, utf8=utf8)
    as_literal = len(data) > 1024 or any(c in data for c in b"\r\n\0")
    as_literal = as_literal or (not utf8 and any(c > 0x7F for c in data))
    assert quoted.startswith(b"{") is as_literal
