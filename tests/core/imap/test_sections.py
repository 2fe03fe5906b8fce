"""BODY[section], BINARY[section], partial fetches, and the decoded text SEARCH uses."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import random

import pytest
from gomail.imap.sections import (
    UnknownEncoding,
    binary_bytes,
    binary_size,
    decode_transfer,
    decode_words,
    header_values,
    partial,
    resolve,
    section_bytes,
    sent_date,
    text_for_index,
)
from gomail.imap.structure import part_map


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


SIMPLE = crlf(
    """Date: Tue, 03 Mar 2026 12:00:00 +0100
From: Alice <alice@example.org>
To: bob@example.net
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=
 =?utf-8?q?_aus_K=C3=B6ln?=
X-Long: first
\tsecond

Hello Bob,
see you.
"""
)

PDF = base64.b64encode(b"%PDF-1.4\n\x00\x01\x02binary\xff" * 10)
PDF_LINES = b"\r\n".join(PDF[i : i + 76] for i in range(0, len(PDF), 76))

COMPLEX = (
    crlf(
        """From: list@example.org
Subject: Fwd: report
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

preamble
--outer
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Caf=E9 au lait, s'il vous pla=EEt. A long line that is wrapped by the en=
coder.
--outer
Content-Type: application/pdf
Content-Transfer-Encoding: base64

"""
    )
    + PDF_LINES
    + crlf(
        """
--outer
Content-Type: message/rfc822

From: Frank <frank@example.net>
Subject: report
Date: Mon, 02 Mar 2026 08:00:00 +0000
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

plain text
--inner
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style><script>var x = "<b>";</script></head>
<body><p>Hello &amp; welcome, <b>Fr&auml;nk</b></p><!-- hidden --></body></html>
--inner--
--outer
Content-Type: message/rfc822

Subject: single part inner
X-Test: yes

just text
--outer
Content-Type: text/plain
Content-Transfer-Encoding: x-uuencode

begin 644 f
--outer--
epilogue
"""
    )
)


def sec(raw, section=(), spec=None, fields=None, not_=False, pm=True):
    return section_bytes(raw, part_map(raw) if pm else None, section, spec, fields, not_)


# ---------------------------------------------------------------------------------------------
# BODY[...] of a single-part message


def test_whole_header_text():
    head, _, body = SIMPLE.partition(b"\r\n\r\n")
    assert sec(SIMPLE) == SIMPLE
    assert sec(SIMPLE, (), "HEADER") == head + b"\r\n\r\n"
    assert sec(SIMPLE, (), "TEXT") == body == b"Hello Bob,\r\nsee you.\r\n"
    assert sec(SIMPLE, (), "header", pm=False) == head + b"\r\n\r\n"


def test_header_fields_keep_folding_and_order():
    assert sec(SIMPLE, (), "HEADER.FIELDS", ["x-long", "FROM"]) == (
        b"From: Alice <alice@example.org>\r\nX-Long: first\r\n\tsecond\r\n\r\n"
    )
    assert sec(SIMPLE, (), "HEADER.FIELDS", ["No-Such"]) == b"\r\n"
    assert sec(SIMPLE, (), "HEADER.FIELDS", ["date", "subject", "x-long", "from"], True) == (
        b"To: bob@example.net\r\n\r\n"
    )
    assert sec(SIMPLE, (), "HEADER.FIELDS.NOT", ["date", "subject", "x-long", "from"]) == (
        b"To: bob@example.net\r\n\r\n"
    )


def test_single_part_is_part_one():
    assert sec(SIMPLE, (1,)) == b"Hello Bob,\r\nsee you.\r\n"
    # the MIME header of part 1 of a non-multipart message is the message header (Dovecot)
    assert sec(SIMPLE, (1,), "MIME") == sec(SIMPLE, (), "HEADER")
    assert sec(SIMPLE, (2,)) == b""
    assert sec(SIMPLE, (1, 1)) == b""
    assert sec(SIMPLE, (0,)) == b""
    assert sec(SIMPLE, (1,), "HEADER") == b""  # part 1 is not a message/rfc822


def test_headers_only_message():
    raw = b"Subject: x\r\nFrom: a@b"
    assert sec(raw, (), "HEADER") == raw
    assert sec(raw, (), "TEXT") == b""
    assert sec(raw, (), "HEADER.FIELDS", ["from"]) == b"From: a@b\r\n\r\n"


# ---------------------------------------------------------------------------------------------
# Parts of a multipart, nested messages


def test_multipart_parts():
    assert sec(COMPLEX, (1,)) == (
        b"Caf=E9 au lait, s'il vous pla=EEt. A long line that is wrapped by the en=\r\ncoder."
    )
    assert sec(COMPLEX, (1,), "MIME") == (
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    assert sec(COMPLEX, (2,)) == PDF_LINES
    assert sec(COMPLEX, (7,)) == b""
    assert sec(COMPLEX, (), "TEXT").startswith(b"preamble\r\n--outer\r\n")
    assert sec(COMPLEX, (), "TEXT").endswith(b"--outer--\r\nepilogue\r\n")


def test_nested_message_sections():
    msg = sec(COMPLEX, (3,))
    assert msg.startswith(b"From: Frank <frank@example.net>\r\n")
    assert msg.endswith(b"</html>\r\n--inner--")
    assert sec(COMPLEX, (3,), "MIME") == b"Content-Type: message/rfc822\r\n\r\n"
    header = sec(COMPLEX, (3,), "HEADER")
    assert header.startswith(b"From: Frank") and header.endswith(b"boundary=inner\r\n\r\n")
    assert header + sec(COMPLEX, (3,), "TEXT") == msg
    assert sec(COMPLEX, (3,), "HEADER.FIELDS", ["Subject"]) == b"Subject: report\r\n\r\n"
    assert sec(COMPLEX, (3, 1)) == b"plain text"
    assert sec(COMPLEX, (3, 1), "MIME") == b"Content-Type: text/plain\r\n\r\n"
    assert sec(COMPLEX, (3, 2)).startswith(b"<html>")
    assert sec(COMPLEX, (3, 3)) == b""
    assert sec(COMPLEX, (3, 1), "HEADER") == b""


def test_nested_single_part_message():
    assert sec(COMPLEX, (4,), "HEADER") == b"Subject: single part inner\r\nX-Test: yes\r\n\r\n"
    assert sec(COMPLEX, (4,), "TEXT") == b"just text"
    assert sec(COMPLEX, (4, 1)) == b"just text"
    assert sec(COMPLEX, (4, 1), "MIME") == sec(COMPLEX, (4,), "HEADER")
    assert sec(COMPLEX, (4, 2)) == b""


def test_resolve_paths():
    pm = part_map(COMPLEX)
    assert resolve(pm, ()) is pm
    assert resolve(pm, (3,))["t"] == "message/rfc822"
    assert resolve(pm, (3, 2))["t"] == "text/html"
    assert resolve(pm, (3, 2, 1)) is None
    assert resolve(pm, (9,)) is None


def test_partial():
    data = b"0123456789"
    assert partial(data, 0, 4) == b"0123"
    assert partial(data, 8, 10) == b"89"
    assert partial(data, 10, 1) == b""
    assert partial(data, 3) == b"3456789"
    assert partial(data, 2, 0) == b""


# ---------------------------------------------------------------------------------------------
# BINARY (RFC 3516)


def test_binary_decodes_transfer_encodings():
    assert binary_bytes(COMPLEX, None, (2,)) == b"%PDF-1.4\n\x00\x01\x02binary\xff" * 10
    assert binary_bytes(COMPLEX, part_map(COMPLEX), (1,)) == (
        b"Caf\xe9 au lait, s'il vous pla\xeet. A long line that is wrapped by the encoder."
    )
    assert binary_bytes(COMPLEX, None, (3, 1)) == b"plain text"
    assert binary_bytes(COMPLEX, None, ()) == COMPLEX
    assert binary_bytes(COMPLEX, None, (3,)) == sec(COMPLEX, (3,))  # a message part as it is
    assert binary_bytes(COMPLEX, None, (8,)) == b""


def test_binary_size():
    pm = part_map(COMPLEX)
    assert binary_size(COMPLEX, pm, (2,)) == 190 == len(b"%PDF-1.4\n\x00\x01\x02binary\xff" * 10)
    assert binary_size(COMPLEX, pm, (3, 1)) == len(b"plain text")
    assert binary_size(COMPLEX, pm, ()) == len(COMPLEX)
    assert binary_size(COMPLEX, pm, (9,)) == 0


def test_unknown_encoding():
    with pytest.raises(UnknownEncoding) as err:
        binary_bytes(COMPLEX, None, (5,))
    assert err.value.encoding == "x-uuencode"
    with pytest.raises(UnknownEncoding):
        binary_size(COMPLEX, None, (5,))
    # BODY[] does not decode, so it does not care
    assert sec(COMPLEX, (5,)) == b"begin 644 f"


def test_lenient_decoding():
    assert decode_transfer(b"aGVs\r\nbG8", "BASE64") == b"hello"
    assert decode_transfer(b"aGVsbG8=!!garbage", "base64")[:5] == b"hello"
    assert decode_transfer(b"a", "base64") == b""
    assert decode_transfer(b"soft=\r\nbreak=3D", " Quoted-Printable ") == b"softbreak="
    assert decode_transfer(b"\xff", "8bit") == b"\xff"
    assert decode_transfer(b"x", None) == b"x"


# ---------------------------------------------------------------------------------------------
# SEARCH helpers


def test_header_values_decoded():
    assert header_values(SIMPLE, "subject") == ["Grüße aus Köln"]
    assert header_values(SIMPLE, "X-LONG") == ["first\tsecond"]
    assert header_values(SIMPLE, "cc") == []
    raw = crlf("To: a@b\nTo: =?iso-8859-1?b?SvZyZw==?= <j@x>\n\nbody\nTo: not a header\n")
    assert header_values(raw, "to") == ["a@b", "Jörg <j@x>"]
    assert header_values("Subject: Grüße roh\r\n\r\n".encode(), "subject") == ["Grüße roh"]


def test_decode_words():
    assert decode_words("=?utf-8?q?a?= =?utf-8?q?b?=") == "ab"
    assert decode_words("=?utf-8?q?a?= plain =?utf-8?q?b?=") == "a plain b"
    # a character split across two encoded words
    assert decode_words("=?utf-8?b?w6k=?= =?utf-8?q?=C3?= =?utf-8?q?=A9?=") == "éé"
    assert decode_words("=?x-unknown?q?caf=C3=A9?=") == "café"
    assert decode_words("=?utf-8*en?q?hi?=") == "hi"
    assert decode_words("=?utf-8?q?broken") == "=?utf-8?q?broken"
    assert decode_words("no words") == "no words"
    assert decode_words("=?iso-8859-1?q?caf=E9?=, =?utf-8?q?ok?=") == "café, ok"


def test_sent_date():
    assert sent_date(SIMPLE) == dt.datetime(2026, 3, 3, 11, 0, tzinfo=dt.UTC)
    raw = b"Date: Mon, 2 Mar 2026 08:00:00 -0000\r\n\r\n"
    assert sent_date(raw) == dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    # the date as written, not as in UTC (SENTON compares dates, zone disregarded)
    raw = b"Date: Tue, 3 Mar 2026 00:30:00 +0100\r\n\r\n"
    assert sent_date(raw).date() == dt.date(2026, 3, 3)
    assert sent_date(raw).astimezone(dt.UTC).date() == dt.date(2026, 3, 2)
    assert sent_date(b"Date: yesterday\r\n\r\n") is None
    assert sent_date(b"Subject: none\r\n\r\n") is None
    assert sent_date(b"") is None


def test_text_for_index():
    text = text_for_index(COMPLEX)
    assert "Café au lait, s'il vous plaît. A long line that is wrapped by the encoder." in text
    assert "plain text" in text
    assert "Hello & welcome" not in text  # the alternative's plain part is taken
    assert "just text" in text
    assert "PDF" not in text
    assert "preamble" not in text and "epilogue" not in text


def test_text_for_index_alternative_with_related_html():
    raw = crlf(
        "Content-Type: multipart/alternative; boundary=a\n\n"
        "--a\nContent-Type: multipart/related; boundary=r\n\n"
        "--r\nContent-Type: text/html\n\n<p>rich</p>\n--r\nContent-Type: image/png\n\nPNG\n--r--\n"
        "--a--\n"
    )
    assert text_for_index(raw) == "rich"
    raw = raw.replace(
        b"--a\r\nContent-Type: multipart/related",
        b"--a\r\n\r\nplain\r\n--a\r\nContent-Type: multipart/related",
    )
    assert text_for_index(raw) == "plain"


def test_text_for_index_html():
    raw = crlf(
        "Content-Type: text/html; charset=utf-8\n\n"
        '<html><head><style>p {color: red}</style><script>var x = "<b>";</script></head>\n'
        "<body><p>Hello &amp; welcome, <b>Fr&auml;nk</b></p><!-- hidden --></body></html>\n"
    )
    text = text_for_index(raw)
    assert "Hello & welcome, Fränk" in text
    assert "color" not in text and "var x" not in text and "hidden" not in text
    assert "<" not in text


def test_text_for_index_charsets():
    assert text_for_index("Subject: x\r\n\r\nGrüße\r\n".encode()).strip() == "Grüße"
    assert text_for_index(b"Subject: x\r\n\r\ncaf\xe9\r\n").strip() == "café"
    raw = b"Content-Type: text/plain; charset=koi8-r\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4\r\n"
    assert text_for_index(raw).strip() == "Привет"
    raw = b"Content-Type: text/plain; charset=no-such\r\n\r\nplain\r\n"
    assert text_for_index(raw).strip() == "plain"
    for charset in ("base64", "zlib", "rot13", "idna", "punycode", "undefined", "uu"):
        raw = b"Content-Type: text/plain; charset=%s\r\n\r\nok\xff\r\n" % charset.encode()
        assert text_for_index(raw).startswith("ok"), charset
        assert decode_words(f"=?{charset}?q?ok=FF?=").startswith("ok"), charset
    raw = b"Content-Type: image/png\r\n\r\n\x89PNG"
    assert text_for_index(raw) == ""


# ---------------------------------------------------------------------------------------------
# Never raise (other than UnknownEncoding), on any input


def test_random_sections_never_raise():
    rng = random.Random(7)
    corpus = [SIMPLE, COMPLEX, b"", b"\r\n", b"x"]
    for _ in range(400):
        raw = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(0, 5)):
            pos = rng.randrange(len(raw) + 1)
            raw[pos:pos] = rng.choice([b"\r\n", b"--outer\r\n", b"--inner--", b"\xff", b"=?"])
        raw = bytes(raw)
        pm = part_map(raw)
        path = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 3)))
        for spec in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS"):
            out = section_bytes(raw, pm, path, spec, ["subject"], rng.random() < 0.5)
            assert isinstance(out, bytes)
        try:
            binary_bytes(raw, pm, path)
            binary_size(raw, pm, path)
        except UnknownEncoding:
            pass
        text_for_index(raw, pm)
        header_values(raw, "subject")
        sent_date(raw)


def _leaves(node, out):
    if "p" in node:
        for c in node["p"]:
            _leaves(c, out)
    elif "m" in node:
        _leaves(node["m"], out)
    else:
        out.append(node)
    return out


@pytest.mark.parametrize("raw", [SIMPLE, COMPLEX.replace(b"x-uuencode", b"7bit")])
def test_parts_agree_with_the_email_package(raw):
    """On well-formed MIME our scanner and the stdlib parser find the same decoded parts."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    theirs = [p.get_payload(decode=True) for p in msg.walk() if not p.is_multipart()]
    ours = [
        decode_transfer(raw[n["b"][0] : n["b"][1]], n.get("e")) for n in _leaves(part_map(raw), [])
    ]
    assert len(ours) == (1 if raw is SIMPLE else 6)
    assert ours == theirs


def test_hypothesis_helpers_never_raise():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    charsets = st.sampled_from(["utf-8", "base64", "idna", "x-none", "koi8-r", "utf-16", ""])

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(st.binary(max_size=600), charsets, st.text(max_size=60))
    def run(body, charset, word):
        raw = b"Subject: =?%s?q?%s?=\r\nContent-Type: text/html; charset=%s\r\n\r\n" % (
            charset.encode(),
            word.encode("utf-8", "replace"),
            charset.encode(),
        )
        raw += body
        header_values(raw, "subject")
        text_for_index(raw)
        sent_date(raw)
        decode_words(word)

    run()
