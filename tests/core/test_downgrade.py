"""gomail.delivery.downgrade: the 7-bit form of an 8-bit message, for a server without
8BITMIME (RFC 6152). The email package is the independent reader the results are checked with."""

from __future__ import annotations

import binascii
import email
import email.policy

from gomail.delivery.downgrade import to_seven_bit
from hypothesis import given, settings
from hypothesis import strategies as st

HEAD = (
    b"From: Anna <anna@example.org>\r\n"
    b"To: Bert <bert@example.net>\r\n"
    b"Subject: Gruss\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def check_seven_bit(out: bytes) -> None:
    """The promise of to_seven_bit: ASCII only, no line over 998 octets."""
    assert out.isascii()
    assert all(len(line) <= 998 for line in out.split(b"\r\n"))


def seven_bit(raw: bytes) -> bytes:
    """to_seven_bit(raw), which must convert (not refuse) and keep its promise."""
    out = to_seven_bit(raw)
    assert out is not None
    check_seven_bit(out)
    return out


def parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def leaves(msg: email.message.Message) -> list[email.message.Message]:
    return [part for part in msg.walk() if not part.is_multipart()]


def header_section(raw: bytes) -> bytes:
    return raw[: raw.index(b"\r\n\r\n") + 2]


def body_of(raw: bytes) -> bytes:
    return raw[raw.index(b"\r\n\r\n") + 4 :]


def test_text_plain_becomes_quoted_printable():
    body = crlf("Grüße aus Köln,\nbis bald — Anna\n")
    raw = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"X-After: stays\r\n\r\n" + body
    )
    out = seven_bit(raw)
    # only the Content-Transfer-Encoding field changed, in place
    assert header_section(out) == header_section(raw).replace(
        b"Content-Transfer-Encoding: 8bit", b"Content-Transfer-Encoding: quoted-printable"
    )
    assert body_of(out) == b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln,\r\nbis bald =E2=80=94 Anna\r\n"
    assert binascii.a2b_qp(body_of(out)) == body  # CRLF line breaks stay hard breaks
    msg = parse(out)
    assert msg.get_content_charset() == "utf-8"
    assert lf(msg.get_payload(decode=True)) == lf(body)
    modern = email.message_from_bytes(out, policy=email.policy.default)
    assert modern.get_content() == "Grüße aus Köln,\r\nbis bald — Anna\r\n"


def test_already_seven_bit_is_returned_unchanged():
    raw = HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
    assert to_seven_bit(raw) is raw
    multipart = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"--b1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nplain ascii\r\n--b1--\r\n"
    )
    assert to_seven_bit(multipart) is multipart


ASCII_PART = (
    b"Content-Type: text/html; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"<p>Hello   \r\n"  # trailing spaces in an untouched part stay as they are
    b"<p>there</p>"
)


def alternative(plain_body: bytes) -> bytes:
    return (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="=_alt"\r\n'
        b"\r\n"
        b"This is a preamble.\r\n"
        b"--=_alt\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n" + plain_body + b"\r\n"
        b"--=_alt\r\n" + ASCII_PART + b"\r\n"
        b"--=_alt--  \r\n"
        b"An epilogue.\r\n"
    )


def test_multipart_alternative_touches_only_the_8bit_part():
    plain = "Très bien, à bientôt".encode("latin-1")
    raw = alternative(plain)
    out = seven_bit(raw)
    assert b"--=_alt\r\n" + ASCII_PART + b"\r\n--=_alt--  \r\nAn epilogue.\r\n" in out
    assert out.startswith(header_section(raw) + b"\r\nThis is a preamble.\r\n--=_alt\r\n")
    assert b"Content-Type: text/plain; charset=iso-8859-1\r\n" in out
    first, second = leaves(parse(out))
    assert first["Content-Transfer-Encoding"] == "quoted-printable"
    assert first.get_payload(decode=True) == plain
    assert second.get_payload(decode=True) == b"<p>Hello   \r\n<p>there</p>"
    assert parse(out).preamble == "This is a preamble."


def test_nested_multipart_and_octet_stream_attachment():
    blob = bytes(range(256)) * 3 + b"\r\n\r\n--not-a-boundary\r\n"
    raw = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"--outer\r\n"
        b'Content-Type: multipart/alternative; boundary="inner"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"--inner\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n" + crlf("Ça va?\n") + b"\r\n"
        b"--inner\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"\r\n" + crlf("<p>Ça va?</p>\n") + b"\r\n"
        b"--inner--\r\n"
        b"\r\n"
        b"--outer\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"untouched\r\n"
        b"--outer\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="blob.bin"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n" + blob + b"\r\n"
        b"--outer--\r\n"
    )
    out = seven_bit(raw)
    assert b"--outer\r\nContent-Type: text/plain\r\n\r\nuntouched\r\n--outer\r\n" in out
    msg = parse(out)
    assert msg["Content-Transfer-Encoding"] == "7bit"
    inner = msg.get_payload(0)
    assert inner["Content-Transfer-Encoding"] == "7bit"
    plain, html, kept, attachment = leaves(msg)
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert lf(plain.get_payload(decode=True)) == "Ça va?\n".encode()
    assert html["Content-Transfer-Encoding"] == "quoted-printable"  # added: it had none
    assert html.get_payload(decode=True) == "<p>Ça va?</p>\r\n".encode()
    assert kept.get_payload(decode=True) == b"untouched"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_filename() == "blob.bin"
    assert attachment.get_payload(decode=True) == blob


def test_binary_part_becomes_base64_even_for_text():
    data = "naïve\r\nline\n bare LF\r and NUL\x00\r\n".encode()
    raw = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + data
    )
    out = seven_bit(raw)
    assert out.endswith(b"\r\n")
    msg = parse(out)
    assert msg["Content-Transfer-Encoding"] == "base64"
    assert msg.get_payload(decode=True) == data


def test_message_rfc822_is_recursed_into():
    inner = (
        b"From: c@example.com\r\n"
        b"Subject: forwarded\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n" + crlf("Größe\n")
    )
    raw = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n'
        b"\r\n"
        b"--b\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"see below\r\n"
        b"--b\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n" + inner + b"\r\n"
        b"--b--\r\n"
    )
    out = seven_bit(raw)
    part = parse(out).get_payload(1)
    assert part.get_content_type() == "message/rfc822"
    assert part["Content-Transfer-Encoding"] == "7bit"
    forwarded = part.get_payload(0)
    assert forwarded["Subject"] == "forwarded"
    assert forwarded["Content-Transfer-Encoding"] == "quoted-printable"
    assert forwarded["MIME-Version"] == "1.0"  # it had none; its CTE needs one
    assert lf(forwarded.get_payload(decode=True)) == "Größe\n".encode()


def test_8bit_headers_are_refused():
    raw = HEAD.replace(b"Gruss", "Grüße".encode()) + b"\r\nplain ascii body\r\n"
    assert to_seven_bit(raw) is None
    in_part = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\n"
        b"Content-Type: application/pdf\r\n"
        + 'Content-Disposition: attachment; filename="Übersicht.pdf"\r\n'.encode()
        + b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
        b"--b--\r\n"
    )
    assert to_seven_bit(in_part) is None


def test_non_mime_message_is_labelled_unknown_8bit():
    body = "Hej, hur mår du?\r\n".encode("latin-1")
    raw = HEAD + b"\r\n" + body
    out = seven_bit(raw)
    assert out.startswith(
        HEAD + b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=unknown-8bit\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    assert parse(out).get_payload(decode=True) == b"Hej, hur m\xe5r du?\r\n"


def test_long_lines_in_an_8bit_part():
    long_line = ("ä" * 700 + "x" * 700).encode()  # 2100 octets
    raw = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + long_line + b"\r\nshort\r\n"
    )
    out = seven_bit(raw)
    assert all(len(line) <= 76 for line in body_of(out).split(b"\r\n"))
    assert binascii.a2b_qp(body_of(out)) == long_line + b"\r\nshort\r\n"


def test_long_ascii_line_alone_is_converted():
    raw = HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 1500 + b"\r\n"
    out = seven_bit(raw)
    assert b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n" in out
    assert b"unknown-8bit" not in out  # it has a Content-Type, and no 8-bit octet anyway
    assert binascii.a2b_qp(body_of(out)) == b"y" * 1500 + b"\r\n"


def test_trailing_whitespace_and_equals_are_encoded():
    body = "ä=b  \r\ntab\t\r\n\r\n".encode()
    raw = HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    out = to_seven_bit(raw)
    assert out is not None
    assert body_of(out) == b"=C3=A4=3Db =20\r\ntab=09\r\n\r\n"
    assert binascii.a2b_qp(body_of(out)) == body
    assert lf(parse(out).get_payload(decode=True)) == lf(body)


def boundary_collision(boundary: bytes) -> bytes:
    """An 8-bit text line whose quoted-printable form has a soft break right before
    ``--boundary``: the continuation line would be read as a delimiter."""
    for pad in range(200):
        line = b"\xe9" + b"a" * pad + b"--" + boundary + b" tail"
        encoded = binascii.b2a_qp(line, istext=False)
        if b"=\n--" + boundary in encoded:
            return line
    raise AssertionError("no colliding line found")


def one_part(boundary: bytes, line: bytes) -> bytes:
    return (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
        b"--" + boundary + b"\r\n"
        b"Content-Type: text/plain; charset=latin1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + line + b"\r\n"
        b"--" + boundary + b"--\r\n"
    )


def test_quoted_printable_that_would_make_a_boundary_line_is_refused():
    line = boundary_collision(b"sep")
    raw = one_part(b"sep", line)
    # the original is a well-formed one-part multipart ...
    assert leaves(parse(raw))[0].get_payload(decode=True) == line
    # ... whose quoted-printable form would have a "--sep tail" line: refused
    assert to_seven_bit(raw) is None
    # the same line under an outer boundary is caught too
    nested = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="sep"\r\n\r\n'
        b"--sep\r\n"
        b'Content-Type: multipart/mixed; boundary="other"\r\n\r\n'
        b"--other\r\n"
        b"Content-Type: text/plain; charset=latin1\r\n\r\n" + line + b"\r\n"
        b"--other--\r\n"
        b"--sep--\r\n"
    )
    assert to_seven_bit(nested) is None
    # and under a boundary that its encoded form does not begin a line with, it goes through
    out = seven_bit(one_part(b"zz", line))
    assert leaves(parse(out))[0].get_payload(decode=True) == line


def test_refusals():
    base = HEAD + b"MIME-Version: 1.0\r\n"
    qp_with_8bit = (
        base + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n\xe9\r\n"
    )
    partial = base + b"Content-Type: message/partial; id=x; number=1\r\n\r\n\xe9\r\n"
    preamble = (
        base + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"pr\xe9amble\r\n--b\r\n\r\nascii\r\n--b--\r\n"
    )
    no_boundary = base + b"Content-Type: multipart/mixed\r\n\r\n\xe9\r\n"
    two_ctes = (
        base + b"Content-Transfer-Encoding: 8bit\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\xe9\r\n"
    )
    long_header = HEAD + b"X-Long: " + b"h" * 1000 + b"\r\n\r\n\xe9\r\n"
    for raw in (qp_with_8bit, partial, preamble, no_boundary, two_ctes, long_header):
        assert to_seven_bit(raw) is None, raw[:200]


def test_multipart_digest_parts_default_to_message_rfc822():
    raw = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/digest; boundary="d"\r\n\r\n'
        b"--d\r\n"
        b"\r\n"
        b"Subject: one\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n" + "Frühling\r\n".encode() + b"\r\n"
        b"--d--\r\n"
    )
    out = seven_bit(raw)
    digest_entry = parse(out).get_payload(0)
    assert digest_entry.get_content_type() == "message/rfc822"
    (nested,) = digest_entry.get_payload()
    assert nested["Subject"] == "one"
    assert nested.get_payload(decode=True) == "Frühling\r\n".encode()


def test_large_message_is_linear_enough():
    line = ("Grüße " * 12).encode() + b"\r\n"
    body = line * (30 * 1024 * 1024 // len(line))
    raw = HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    out = to_seven_bit(raw)
    assert out is not None
    assert out.isascii()
    assert binascii.a2b_qp(body_of(out)) == body


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(_TEXT, min_size=1, max_size=12), boundary=st.sampled_from(["b", "=_x"]))
def test_property_decoded_text_equals_input(lines, boundary):
    text = "\r\n".join(lines)
    body = text.encode()
    single = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    )
    multi = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="' + boundary.encode() + b'"\r\n\r\n'
        b"--" + boundary.encode() + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + b"\r\n"
        b"--" + boundary.encode() + b"--\r\n"
    )
    # a line beginning "--" could be a delimiter of the original multipart: not a text body
    cases = [single] if any(x.startswith("--") for x in lines) else [single, multi]
    for raw in cases:
        out = to_seven_bit(raw)
        if raw.isascii() and all(len(x) <= 998 for x in raw.split(b"\r\n")):
            assert out is raw
            continue
        if out is None:  # only where a soft break would begin a line with the boundary
            assert raw is multi
            soft_broken = (binascii.b2a_qp(x.encode(), istext=False) for x in lines)
            assert any(b"=\n--" + boundary.encode() in x for x in soft_broken)
            continue
        check_seven_bit(out)
        (part,) = leaves(parse(out))
        decoded = part.get_payload(decode=True)
        assert lf(decoded) == lf(body)
        assert decoded.decode(part.get_content_charset()).replace("\r\n", "\n") == text.replace(
            "\r\n", "\n"
        )


def test_ambiguous_boundary_lines_in_a_part_are_refused():
    # "--sepX" is a delimiter to a reader that matches the boundary as a prefix (RFC 2046
    # 5.1.1), and "--sep" after a bare LF is one to a reader that breaks lines at LF
    for line in (b"caf\xe9\r\n--sepX", b"caf\xe9\n--sep"):
        assert to_seven_bit(one_part(b"sep", line)) is None
    assert to_seven_bit(one_part(b"sep", b"caf\xe9\r\n-- sep")) is not None


def test_rfc2231_boundary_outside_ascii_is_refused():
    raw = (
        HEAD + b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary*=utf-8''%C3%A9\r\n\r\n"
        b"--\xc3\xa9\r\n\r\ncaf\xc3\xa9\r\n--\xc3\xa9--\r\n"
    )
    assert to_seven_bit(raw) is None
