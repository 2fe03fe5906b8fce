"""ENVELOPE, BODY, BODYSTRUCTURE and the part map, on a corpus of realistic messages.

Expected texts come from RFC 3501's examples where it has them, and otherwise follow what
Dovecot answers for the same input (its rules are in the module docstring of
gomail.imap.structure).
"""

from __future__ import annotations

import json
import random
import time

import pytest
from gomail.imap.structure import (
    analyse,
    bodystructure,
    envelope,
    parse_address_list,
    parse_params,
    part_map,
)


def crlf(text: str) -> bytes:
    """Test messages are written with \\n; the store keeps CRLF."""
    return text.replace("\n", "\r\n").encode("utf-8")


def body_of(raw: bytes, node: dict) -> bytes:
    return raw[node["b"][0] : node["b"][1]]


def header_of(raw: bytes, node: dict) -> bytes:
    return raw[node["h"][0] : node["h"][1]]


# ---------------------------------------------------------------------------------------------
# The RFC 3501 examples

RFC3501_HEADER = crlf(
    """Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
"""
)


def test_rfc3501_envelope_example():
    raw = RFC3501_HEADER + b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHi\r\n"
    assert envelope(raw) == (
        '("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        '((NIL NIL "imap" "cac.washington.edu")) '
        '((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )


def test_rfc3501_simple_bodystructure_example():
    # RFC 3501 6.4.5: ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)
    body = b"x" * 30 + b"\r\n"
    text = body * 91 + b"y" * (3028 - 91 * 32 - 2) + b"\r\n"
    assert len(text) == 3028 and text.count(b"\n") == 92
    raw = (
        RFC3501_HEADER
        + b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\nContent-Transfer-Encoding: 7BIT\r\n\r\n"
        + text
    )
    assert bodystructure(raw, extended=False) == (
        '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    )
    assert bodystructure(raw) == (
        '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)'
    )


def test_rfc3501_multipart_body_example():
    # RFC 3501 7.4.2, BODYSTRUCTURE example (the non-extended form):
    # (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)("TEXT" "PLAIN"
    # ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>"
    # "Compiler diff" "BASE64" 4554 73) "MIXED")
    part1 = (b"A" * 48 + b"\r\n") * 23 + b"ok"
    part2 = (b"QUJD" * 15 + b"\r\n") * 73 + b"QUJD" * 7
    assert (len(part1), part1.count(b"\n"), len(part2), part2.count(b"\n")) == (1152, 23, 4554, 73)
    raw = (
        RFC3501_HEADER
        + b'Content-Type: MULTIPART/MIXED; BOUNDARY="--=_b"\r\n\r\n'
        + b"This is a multi-part message.\r\n"
        + b"----=_b\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
        + b"Content-Transfer-Encoding: 7BIT\r\n\r\n"
        + part1
        + b"\r\n----=_b\r\n"
        + b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n"
        + b"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
        + b"Content-Description: Compiler diff\r\n"
        + b"Content-Transfer-Encoding: BASE64\r\n\r\n"
        + part2
        + b"\r\n----=_b--\r\n"
    )
    assert bodystructure(raw, extended=False) == (
        '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        '("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        '"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )
    assert bodystructure(raw).endswith(' "MIXED" ("BOUNDARY" "--=_b") NIL NIL NIL)')
    pm = part_map(raw)
    assert body_of(raw, pm["p"][0]) == part1
    assert body_of(raw, pm["p"][1]) == part2
    assert pm["p"][1]["e"] == "base64"


# ---------------------------------------------------------------------------------------------
# A corpus of everyday messages

ALTERNATIVE = crlf(
    """From: "Alice Example" <alice@example.org>
To: Bob <bob@example.net>
Subject: Lunch?
Date: Tue, 03 Mar 2026 12:00:00 +0100
Message-ID: <alt-1@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Shall we have lunch at caf=C3=A9 Pr=C3=BCfer?
--alt
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body><p>Shall we have lunch at <b>caf=C3=A9</b>?</p></body></html>
--alt--
"""
)


def test_multipart_alternative():
    s = analyse(ALTERNATIVE)
    assert s.bodystructure == (
        '(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 45 0 NIL NIL NIL NIL)'
        '("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 73 0 NIL NIL NIL NIL)'
        ' "alternative" ("boundary" "alt") NIL NIL NIL)'
    )
    assert s.body == (
        '(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 45 0)'
        '("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 73 0) "alternative")'
    )
    assert s.envelope == (
        '("Tue, 03 Mar 2026 12:00:00 +0100" "Lunch?" '
        '(("Alice Example" NIL "alice" "example.org")) '
        '(("Alice Example" NIL "alice" "example.org")) '
        '(("Alice Example" NIL "alice" "example.org")) '
        '(("Bob" NIL "bob" "example.net")) NIL NIL NIL "<alt-1@example.org>")'
    )
    plain = s.part_map["p"][0]
    assert body_of(ALTERNATIVE, plain) == b"Shall we have lunch at caf=C3=A9 Pr=C3=BCfer?"
    assert plain == {
        "h": plain["h"],
        "b": plain["b"],
        "t": "text/plain",
        "e": "quoted-printable",
        "c": "utf-8",
    }
    assert header_of(ALTERNATIVE, plain) == (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )


MIXED = crlf(
    """From: Carol <carol@example.com>
To: dave@example.com
Subject: Report attached
Message-ID: <mixed-1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed;
 boundary="----=_Part_1_2.3"
Content-Language: en

This is a multi-part message in MIME format.

------=_Part_1_2.3
Content-Type: text/plain; charset="us-ascii"

See the report.

--\x20
Carol

------=_Part_1_2.3
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"; size=12
Content-Transfer-Encoding: base64
Content-Location: http://example.com/report.pdf
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

JVBERi0xLjQK
------=_Part_1_2.3
Content-Type: image/png
Content-Disposition: inline;
 filename*0*=utf-8''gr%C3%BC;
 filename*1*=%C3%9Fe.png
Content-ID: <img1@example.com>
Content-Transfer-Encoding: base64
Content-Language: de, en-GB

iVBORw0KGgo=
------=_Part_1_2.3--

epilogue
"""
)


def test_multipart_mixed_with_attachments():
    s = analyse(MIXED)
    assert s.bodystructure == (
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 31 4 NIL NIL NIL NIL)'
        '("application" "pdf" ("name" "report.pdf") NIL NIL "base64" 12 '
        '"Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename" "report.pdf" "size" "12")) NIL '
        '"http://example.com/report.pdf")'
        '("image" "png" NIL "<img1@example.com>" NIL "base64" 12 NIL '
        '("inline" ("filename*" "utf-8\'\'gr%C3%BC%C3%9Fe.png")) ("de" "en-GB") NIL)'
        ' "mixed" ("boundary" "----=_Part_1_2.3") NIL ("en") NIL)'
    )
    pm = s.part_map
    assert body_of(MIXED, pm["p"][0]) == b"See the report.\r\n\r\n-- \r\nCarol\r\n"
    assert body_of(MIXED, pm["p"][1]) == b"JVBERi0xLjQK"
    assert [p["t"] for p in pm["p"]] == ["text/plain", "application/pdf", "image/png"]
    assert MIXED[pm["b"][0] :].startswith(b"This is a multi-part")
    assert pm["b"][1] == len(MIXED)


NESTED = crlf(
    """From: list@example.org
To: eve@example.org
Subject: Fwd: original
Message-ID: <outer@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: text/plain

See below.
--outer
Content-Type: message/rfc822
Content-Description: forwarded message

From: Frank <frank@example.net>
To: list@example.org
Subject: original
Date: Mon, 02 Mar 2026 08:00:00 +0000
Message-ID: <inner@example.net>
In-Reply-To: <earlier@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=us-ascii

plain
--inner
Content-Type: text/html; charset=us-ascii

<p>html</p>
--inner--
--outer--
"""
)


def test_nested_message_rfc822():
    s = analyse(NESTED)
    inner_env = (
        '("Mon, 02 Mar 2026 08:00:00 +0000" "original" '
        '(("Frank" NIL "frank" "example.net")) (("Frank" NIL "frank" "example.net")) '
        '(("Frank" NIL "frank" "example.net")) ((NIL NIL "list" "example.org")) NIL NIL '
        '"<earlier@example.net>" "<inner@example.net>")'
    )
    pm = s.part_map
    msg_part = pm["p"][1]
    inner = msg_part["m"]
    size = msg_part["b"][1] - msg_part["b"][0]
    lines = body_of(NESTED, msg_part).count(b"\n")
    assert body_of(NESTED, msg_part).startswith(b"From: Frank")
    assert body_of(NESTED, msg_part).endswith(b"--inner--")
    assert s.bodystructure == (
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL)'
        f'("message" "rfc822" NIL NIL "forwarded message" "7bit" {size} {inner_env} '
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)'
        '("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 11 0 NIL NIL NIL NIL)'
        ' "alternative" ("boundary" "inner") NIL NIL NIL)'
        f" {lines} NIL NIL NIL NIL)"
        ' "mixed" ("boundary" "outer") NIL NIL NIL)'
    )
    assert lines == 17  # 9 header lines (with the empty one), 8 body lines
    assert header_of(NESTED, inner).startswith(b"From: Frank")
    assert header_of(NESTED, inner).endswith(b"boundary=inner\r\n\r\n")
    assert [body_of(NESTED, p) for p in inner["p"]] == [b"plain", b"<p>html</p>"]


DIGEST = crlf(
    """From: digest@example.org
Subject: Digest
Content-Type: multipart/digest; boundary=d

--d

From: a@example.org
Subject: one

first
--d
Content-Type: text/plain

not a message
--d--
"""
)


def test_digest_parts_default_to_message_rfc822():
    s = analyse(DIGEST)
    assert s.bodystructure.startswith(
        '(("message" "rfc822" NIL NIL NIL "7bit" 42 (NIL "one" ((NIL NIL "a" "example.org"))'
    )
    assert '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 0' in s.bodystructure
    assert s.part_map["p"][0]["t"] == "message/rfc822"
    assert body_of(DIGEST, s.part_map["p"][0]["m"]) == b"first"


# ---------------------------------------------------------------------------------------------
# Addresses


def addrs(value: str):
    return parse_address_list(value)


def test_group_syntax():
    assert addrs("undisclosed-recipients:;") == [
        (None, None, "undisclosed-recipients", None),
        (None, None, None, None),
    ]
    assert addrs('Friends: a@example.org, "C. D." <c@example.org>;, e@example.org') == [
        (None, None, "Friends", None),
        (None, None, "a", "example.org"),
        ("C. D.", None, "c", "example.org"),
        (None, None, None, None),
        (None, None, "e", "example.org"),
    ]
    raw = crlf("From: a@example.org\nTo: undisclosed-recipients:;\n\nbody\n")
    assert '((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))' in envelope(raw)


def test_address_forms():
    assert addrs("john@example.com (John Doe)") == [("John Doe", None, "john", "example.com")]
    assert addrs("<@relay1.example,@relay2.example:joe@example.com>") == [
        (None, "@relay1.example,@relay2.example", "joe", "example.com")
    ]
    assert addrs('"joe q. public"@example.com') == [(None, None, '"joe q. public"', "example.com")]
    assert addrs("Mary Smith <mary@x.test>, jdoe@example.org") == [
        ("Mary Smith", None, "mary", "x.test"),
        (None, None, "jdoe", "example.org"),
    ]
    assert addrs('"Giant; \\"Big\\" Box" <sysservices@example.net>') == [
        ('Giant; "Big" Box', None, "sysservices", "example.net")
    ]
    assert addrs("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>") == [
        ("Pete", None, "pete", "silly.test")
    ]
    assert addrs("a@b.c (Name (nested)) , c@d.e (Other)") == [
        ("Name (nested)", None, "a", "b.c"),
        ("Other", None, "c", "d.e"),
    ]
    assert addrs("a@b.c (unterminated") == [("unterminated", None, "a", "b.c")]
    assert addrs("user@[192.0.2.1]") == [(None, None, "user", "[192.0.2.1]")]
    # broken addresses never look like group markers
    assert addrs("localonly") == [(None, None, "localonly", "MISSING_DOMAIN")]
    assert addrs("Name <@example.org>") == [("Name", None, "MISSING_MAILBOX", "example.org")]
    assert addrs(", ,") == []
    assert addrs("") == []


def test_envelope_defaults_and_nil():
    raw = crlf("From: a@example.org\nSender:\nReply-To: \nSubject:\n\nbody\n")
    env = envelope(raw)
    a = '((NIL NIL "a" "example.org"))'
    # sender and reply-to fall back to from when absent or empty; an empty subject is ""
    assert env == f'(NIL "" {a} {a} {a} NIL NIL NIL NIL NIL)'
    assert envelope(b"") == "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    raw = crlf("From: a@example.org\nSender: s@example.org\nReply-To: r@example.org\n\n")
    assert envelope(raw) == (
        f'(NIL NIL {a} ((NIL NIL "s" "example.org")) ((NIL NIL "r" "example.org")) '
        "NIL NIL NIL NIL NIL)"
    )


def test_envelope_encoded_words_kept_and_folding_removed():
    raw = crlf(
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n =?utf-8?q?_aus_K=C3=B6ln?=\n"
        'From: =?iso-8859-1?q?J=F6rg?= <joerg@example.de>\nTo: "say \\"hi\\"" <x@y.z>\n\n.\n'
    )
    env = envelope(raw)
    assert env.startswith(
        '(NIL "=?utf-8?q?Gr=C3=BC=C3=9Fe?= =?utf-8?q?_aus_K=C3=B6ln?=" '
        '(("=?iso-8859-1?q?J=F6rg?=" NIL "joerg" "example.de"))'
    )
    # as Dovecot: a display name or subject with a quote goes out as a literal, not escaped
    assert '(({8}\r\nsay "hi" NIL "x" "y.z"))' in env


def test_envelope_subject_whitespace_for_humans():
    raw = crlf('Subject:  tabs\tand   runs \n\tfolded  \nMessage-ID: <a\\"b@c>\n\n')
    # subjects and names have white space runs collapsed (Dovecot); other strings are escaped
    assert (
        envelope(raw) == '(NIL "tabs and runs folded" NIL NIL NIL NIL NIL NIL NIL "<a\\\\\\"b@c>")'
    )


def test_envelope_utf8_header_is_a_literal():
    raw = crlf("Subject: Grüße\nFrom: Jörg <jörg@bücher.example>\n\nhi\n")
    env = envelope(raw)
    assert env.startswith(
        "(NIL {7}\r\nGrüße (({5}\r\nJörg NIL {5}\r\njörg {15}\r\nbücher.example))"
    )
    assert len("Grüße".encode()) == 7
    # not UTF-8 at all: replaced, so the text is still valid UTF-8 that can be stored
    env = envelope(b"Subject: caf\xe9\r\n\r\n")
    assert env.startswith("(NIL {6}\r\ncaf\ufffd NIL")


def test_envelope_first_field_wins_and_headers_only_message():
    raw = b"Subject: one\r\nSubject: two\r\nMessage-ID: <x@y>"
    assert envelope(raw) == '(NIL "one" NIL NIL NIL NIL NIL NIL NIL "<x@y>")'


# ---------------------------------------------------------------------------------------------
# Malformed MIME: Dovecot's fallbacks, never an exception

TEXT_DEFAULT = (
    '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" {size} {lines} NIL NIL NIL NIL)'
)


def test_no_content_type():
    raw = crlf("From: a@b.c\nSubject: plain\n\nline one\nline two\n")
    assert bodystructure(raw) == TEXT_DEFAULT.format(size=20, lines=2)
    assert part_map(raw) == {"h": [0, 31], "b": [31, 51], "t": "text/plain"}


def test_empty_body_and_empty_message():
    raw = crlf("From: a@b.c\n\n")
    assert bodystructure(raw) == TEXT_DEFAULT.format(size=0, lines=0)
    assert part_map(raw) == {"h": [0, 15], "b": [15, 15], "t": "text/plain"}
    assert bodystructure(b"") == TEXT_DEFAULT.format(size=0, lines=0)
    assert part_map(b"") == {"h": [0, 0], "b": [0, 0], "t": "text/plain"}
    # a header without the empty line: all header, no body
    raw = b"From: a@b.c\r\nSubject: x\r\n"
    assert part_map(raw) == {"h": [0, len(raw)], "b": [len(raw), len(raw)], "t": "text/plain"}
    # no header at all
    raw = b"\r\nbody\r\n"
    assert part_map(raw) == {"h": [0, 2], "b": [2, 8], "t": "text/plain"}


def test_text_charset_default_added_to_other_params():
    raw = crlf("Content-Type: text/plain; format=flowed\n\nx\n")
    assert bodystructure(raw, False) == (
        '("text" "plain" ("format" "flowed" "charset" "us-ascii") NIL NIL "7bit" 3 1)'
    )


def test_unparsable_content_type_is_text_plain():
    for ct in ("garbage", "text", "/plain", "", "text/"):
        raw = crlf(f"Content-Type: {ct}\n\nx\n")
        assert bodystructure(raw) == TEXT_DEFAULT.format(size=3, lines=1), ct


def test_bad_cte_is_7bit():
    raw = crlf("Content-Transfer-Encoding: base64 garbage\n\nx\n")
    assert '"7bit" 3 1' in bodystructure(raw)


def test_missing_closing_boundary_runs_to_end():
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n")
    pm = part_map(raw)
    assert [body_of(raw, p) for p in pm["p"]] == [b"one", b"two\r\n"]
    assert bodystructure(raw, False) == (
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)'
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 1) "mixed")'
    )


def test_multipart_without_boundary_lines_shows_empty_part():
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\njust text\n")
    assert bodystructure(raw) == (
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
        ' "mixed" ("boundary" "b") NIL NIL NIL)'
    )
    assert bodystructure(raw, False) == (
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    )
    assert part_map(raw)["p"] == []


def test_multipart_without_boundary_parameter_is_a_leaf():
    raw = crlf("Content-Type: multipart/mixed\n\n--b\n\ntext\n--b--\n")
    body = b"--b\r\n\r\ntext\r\n--b--\r\n"
    assert raw.endswith(b"\r\n\r\n" + body)
    assert bodystructure(raw, False) == f'("multipart" "mixed" NIL NIL NIL "7bit" {len(body)})'
    assert "p" not in part_map(raw)


def test_unterminated_inner_multipart_ended_by_outer_boundary():
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=outer\n\n"
        "--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
        "--inner\n\ninner text\n"
        "--outer\n\nsecond\n--outer--\n"
    )
    pm = part_map(raw)
    assert len(pm["p"]) == 2
    assert [body_of(raw, p) for p in pm["p"][0]["p"]] == [b"inner text"]
    assert body_of(raw, pm["p"][1]) == b"second"


def test_longest_boundary_wins():
    # the inner boundary has the outer one as a prefix (RFC 2046 forbids it; it happens)
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=abc\n\n"
        "--abc\nContent-Type: multipart/alternative; boundary=abcdef\n\n"
        "--abcdef\n\none\n--abcdef\n\ntwo\n--abcdef--\n"
        "--abc\n\nthree\n--abc--\n"
    )
    pm = part_map(raw)
    assert [body_of(raw, p) for p in pm["p"][0]["p"]] == [b"one", b"two"]
    assert body_of(raw, pm["p"][1]) == b"three"


def test_boundary_in_part_header_ends_the_part():
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n--b\n\nx\n--b--\n"
    )
    pm = part_map(raw)
    first, second = pm["p"]
    assert body_of(raw, first) == b""
    assert header_of(raw, first) == b"Content-Type: text/plain"
    assert body_of(raw, second) == b"x"


def test_empty_parts_and_boundary_as_first_body_line():
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\nx\n--b--")
    pm = part_map(raw)
    assert [body_of(raw, p) for p in pm["p"]] == [b"", b"x"]
    assert [header_of(raw, p) for p in pm["p"]] == [b"", b"\r\n"]


def test_bare_lf_message():
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n--b--\n"
    pm = part_map(raw)
    assert [body_of(raw, p) for p in pm["p"]] == [b"one", b"two"]


def test_message_rfc822_truncated_and_nested_deep():
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n--b--\n"
    )
    bs = bodystructure(raw)
    assert (
        '("message" "rfc822" NIL NIL NIL "7bit" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (' in bs
    )
    deep = b"Content-Type: message/rfc822\r\n\r\n" * 200 + b"Subject: bottom\r\n\r\nhi\r\n"
    s = analyse(deep)
    assert s.bodystructure.count('"message" "rfc822"') >= 50
    json.dumps(s.part_map)


def test_many_parts_are_capped():
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 20000
    pm = part_map(raw)
    assert 1000 < len(pm["p"]) <= 5000


def test_params_rfc2231_and_odd_forms():
    assert parse_params('; name="a b"; Q=x (comment); z') == [("name", "a b"), ("Q", "x")]
    assert parse_params("; filename*=utf-8'en'%E2%82%AC.txt") == [
        ("filename*", "utf-8'en'%E2%82%AC.txt")
    ]
    assert parse_params('; title*0="abc"; title*1="def"') == [("title", "abcdef")]
    assert parse_params("; name=a/b.pdf; x=1") == [("name", "a/b.pdf"), ("x", "1")]
    assert parse_params('; a=1; a=2; b="unterminated') == [
        ("a", "1"),
        ("a", "2"),
        ("b", "unterminated"),
    ]


def test_boundary_given_with_rfc2231_and_quotes():
    raw = crlf("Content-Type: multipart/mixed; boundary*=''%3Dx\n\n--=x\n\none\n--=x--\n")
    assert [body_of(raw, p) for p in part_map(raw)["p"]] == [b"one"]


# ---------------------------------------------------------------------------------------------
# Properties: the part map is consistent and JSON-serialisable; nothing raises


def walk(node, out):
    out.append(node)
    for c in node.get("p", ()):
        walk(c, out)
    if "m" in node:
        walk(node["m"], out)
    return out


def check_consistent(raw: bytes) -> None:
    s = analyse(raw)
    assert s.body.startswith("(") and s.bodystructure.startswith("(")
    assert s.body.count("(") <= s.bodystructure.count("(")
    assert json.loads(json.dumps(s.part_map)) == s.part_map
    assert len(parse_imap(s.envelope)) == 10
    check_body(parse_imap(s.body), False)
    check_body(parse_imap(s.bodystructure), True)
    for node in walk(s.part_map, []):
        hs, he = node["h"]
        bs, be = node["b"]
        assert 0 <= hs <= he == bs <= be <= len(raw)


CORPUS = [ALTERNATIVE, MIXED, NESTED, DIGEST, RFC3501_HEADER]


@pytest.mark.parametrize("raw", CORPUS)
def test_corpus_consistent(raw):
    check_consistent(raw)


def test_mutated_corpus_never_raises():
    rng = random.Random(4)
    for _ in range(1500):
        raw = bytearray(rng.choice(CORPUS))
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(raw) + 1)
            if op < 0.4 and raw:
                del raw[pos : pos + rng.randint(1, 40)]
            elif op < 0.8:
                raw[pos:pos] = rng.choice(
                    [b"\r\n", b"\n", b"--", b'"', b"(", b"<", b";", b":", b"=?", b"\xff", b"\0",
                     b"--outer\r\n", b"--alt--", b"Content-Type: message/rfc822\r\n\r\n"]
                )  # fmt: skip
            else:
                raw[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 10)))
        check_consistent(bytes(raw))


def test_random_bytes_never_raise():
    rng = random.Random(5)
    for _ in range(500):
        check_consistent(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))))


def test_hypothesis_random_bytes_never_raise():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(st.binary(max_size=2000))
    def run(raw):
        check_consistent(raw)

    run()


# ---------------------------------------------------------------------------------------------
# Speed: parsed once at delivery, but delivery is the hot path


def test_one_megabyte_parses_fast():
    attachment = (
        b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5\r\n"
    ) * 7000
    text = b"Some text -- with dashes\r\n-- \r\nsig\r\n" * 2000
    raw = (
        MIXED.split(b"\r\n\r\n", 1)[0]
        + b"\r\n\r\n------=_Part_1_2.3\r\nContent-Type: text/plain\r\n\r\n"
        + text
        + b"\r\n------=_Part_1_2.3\r\nContent-Type: application/zip\r\n"
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"\r\n------=_Part_1_2.3--\r\n"
    )
    assert len(raw) > 550_000
    raw = raw + raw[raw.index(b"\r\n\r\n") + 4 :]  # ~1 MB, more parts
    assert len(raw) > 1_000_000
    analyse(raw)
    best = min(_timed(analyse, raw) for _ in range(3))
    assert best < 0.05, best


def _timed(fn, arg):
    t = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t


# ---------------------------------------------------------------------------------------------
# The texts are valid IMAP: balanced lists, quoted strings and exact literal lengths


def parse_imap(text: str):
    """Parse an IMAP value (lists, NIL, numbers, quoted strings, literals) strictly."""
    data = text.encode("utf-8")
    pos = 0

    def value():
        nonlocal pos
        c = data[pos : pos + 1]
        if c == b"(":
            pos += 1
            items = []
            while data[pos : pos + 1] != b")":
                if items:
                    assert data[pos : pos + 1] == b" " or data[pos - 1 : pos] == b")", data[pos:]
                    if data[pos : pos + 1] == b" ":
                        pos += 1
                items.append(value())
            pos += 1
            return items
        if c == b'"':
            pos += 1
            out = bytearray()
            while data[pos : pos + 1] != b'"':
                ch = data[pos : pos + 1]
                assert ch and ch not in (b"\r", b"\n") and ch[0] < 0x80, data[pos:]
                if ch == b"\\":
                    pos += 1
                    assert data[pos : pos + 1] in (b'"', b"\\")
                out += data[pos : pos + 1]
                pos += 1
            pos += 1
            return out.decode()
        if c == b"{":
            end = data.index(b"}\r\n", pos)
            n = int(data[pos + 1 : end])
            pos = end + 3 + n
            assert pos <= len(data)
            return data[end + 3 : pos].decode("utf-8")
        if data.startswith(b"NIL", pos):
            pos += 3
            return None
        end = pos
        while data[end : end + 1].isdigit():
            end += 1
        assert end > pos, data[pos:]
        number = int(data[pos:end])
        pos = end
        return number

    result = value()
    assert pos == len(data), data[pos:]
    return result


def check_body(b, extended):
    assert isinstance(b, list)
    if isinstance(b[0], list):  # multipart: parts, then subtype
        k = 0
        while isinstance(b[k], list):
            check_body(b[k], extended)
            k += 1
        assert isinstance(b[k], str)
        assert len(b) - k == (5 if extended else 1)
        return
    assert all(isinstance(x, str) for x in (b[0], b[1], b[5]))  # type, subtype, encoding
    assert isinstance(b[6], int)
    kind = (b[0].lower(), b[1].lower())
    basic = 7
    if kind[0] == "text":
        basic = 8
        assert isinstance(b[7], int)
    elif kind == ("message", "rfc822"):
        basic = 10
        assert len(b[7]) == 10
        check_body(b[8], extended)
        assert isinstance(b[9], int)
    assert len(b) == (basic + 4 if extended else basic), b


@pytest.mark.parametrize("raw", CORPUS)
def test_texts_are_valid_imap(raw):
    s = analyse(raw)
    assert len(parse_imap(s.envelope)) == 10
    check_body(parse_imap(s.body), False)
    check_body(parse_imap(s.bodystructure), True)


def test_mutated_texts_are_valid_imap():
    rng = random.Random(6)
    for _ in range(600):
        raw = bytearray(rng.choice(CORPUS))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(raw) + 1)
            raw[pos:pos] = rng.choice(
                [b"\r\n", b'"', b"\\", b"(", b")", b"\xc3\xa9", b"\xff", b"\0", b"{3}", b"\t",
                 b"--outer\r\n", b"Content-Type: message/rfc822\r\n\r\n", b"; a=\"\\\"\""]
            )  # fmt: skip
        s = analyse(bytes(raw))
        assert len(parse_imap(s.envelope)) == 10
        check_body(parse_imap(s.body), False)
        check_body(parse_imap(s.bodystructure), True)
