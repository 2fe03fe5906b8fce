"""gomail.address: parsing, canonical form and relay-trick classification of addresses."""

from __future__ import annotations

import pytest
from gomail.address import (
    TRICK_BANG_PATH,
    TRICK_PERCENT_HACK,
    TRICK_QUOTED_AT,
    TRICK_SOURCE_ROUTE,
    NeedsSmtpUtf8,
    ParsedAddress,
    format_local,
    normalize_address,
    normalize_domain,
    parse_local,
    parse_path,
    plus_base,
    split_address,
)

# --- normalize_domain -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("example.org", "example.org"),
        ("Example.ORG", "example.org"),
        ("example.org.", "example.org"),
        ("  Example.org.  ", "example.org"),
        ("localhost", "localhost"),
        ("mail-1.example.org", "mail-1.example.org"),
        ("123.example", "123.example"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
        # IDN: U-label, A-label, upper case, trailing dot all give the same A-label.
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("bücher.example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"),
        ("Xn--Bcher-Kva.Example.", "xn--bcher-kva.example"),
        # IDNA 2008 (non-transitional): ß stays ß.
        ("faß.de", "xn--fa-hia.de"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        # UTS #46 mapping: full-width letters and ideographic full stops.
        ("ＥＸＡＭＰＬＥ.com", "example.com"),
        ("example\u3002com", "example.com"),
        ("example\u3002com\u3002", "example.com"),
        # Address literals are kept as written.
        ("[127.0.0.1]", "[127.0.0.1]"),
        ("[192.0.2.1]", "[192.0.2.1]"),
        ("[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
        ("[IPv6:::1]", "[IPv6:::1]"),
    ],
)
def test_normalize_domain(given: str, expected: str) -> None:
    assert normalize_domain(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "empty"),
        ("example.org..", "empty label"),
        ("example..org", "empty label"),
        (".example.org", "empty label"),
        ("a" * 64 + ".example", "label longer than 63"),
        (".".join(["a" * 60] * 5), "longer than 253"),
        ("exa mple.org", "' ' not allowed"),
        ("exa_mple.org", "'_' not allowed"),
        ("example.org/x", "'/' not allowed"),
        ("ex@mple.org", "'@' not allowed"),
        ("-example.org", "starts or ends with '-'"),
        ("example-.org", "starts or ends with '-'"),
        ("ab--cd.org", "'--'"),
        ("xn--zz.example", "invalid domain"),  # not a valid A-label
        ("☃.net", "invalid domain"),  # disallowed code point in IDNA 2008
        ("bü cher.example", "invalid domain"),
        ("bücher.example.\xad", "empty label"),  # the soft hyphen maps to nothing
        ("1.2.3.4", "must be written [1.2.3.4]"),
        ("[1.2.3]", "address literal"),
        ("[127.0.0.1", "missing ']'"),
        ("[IPv6:1.2.3.4]", "address literal"),
        ("[example.org]", "address literal"),
    ],
)
def test_normalize_domain_invalid(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match="invalid") as info:
        normalize_domain(given)
    assert reason in str(info.value)


# --- split_address / normalize_address ------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("user@example.org", ("user", "example.org")),
        (" User@Example.org ", ("User", "Example.org")),
        ('"user@other"@example.org', ('"user@other"', "example.org")),
        ("a@b@c", ("a@b", "c")),
        ("user@[127.0.0.1]", ("user", "[127.0.0.1]")),
    ],
)
def test_split_address(given: str, expected: tuple[str, str]) -> None:
    assert split_address(given) == expected


@pytest.mark.parametrize("given", ["", "user", "@example.org", "user@", "@", "  "])
def test_split_address_invalid(given: str) -> None:
    with pytest.raises(ValueError):
        split_address(given)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("user@example.org", "user@example.org"),
        ("User@Example.ORG", "user@example.org"),
        ("JOHN.Doe@example.org.", "john.doe@example.org"),
        ("user+Tag@example.org", "user+tag@example.org"),
        ("user@BÜCHER.example", "user@xn--bcher-kva.example"),
        ("user@bücher.example.", "user@xn--bcher-kva.example"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        ("user@[127.0.0.1]", "user@[127.0.0.1]"),
        # Quotes that are not needed go; needed ones stay, with canonical escapes.
        ('"user"@example.org', "user@example.org"),
        ('"User.Name"@example.org', "user.name@example.org"),
        ('"a b"@example.org', '"a b"@example.org'),
        ('"A\\ B"@example.org', '"a b"@example.org'),
        ('"a\\"b"@example.org', '"a\\"b"@example.org'),
        ('"user@other"@example.org', '"user@other"@example.org'),
        # Non-ASCII local parts: NFC, ASCII letters lowered, others kept.
        ("Jürgen@example.org", "jürgen@example.org"),
        ("J\u0075\u0308rgen@example.org", "jürgen@example.org"),
        ("ÜSER@example.org", "Üser@example.org"),
        ("δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"),
        # atext other than letters is kept, dots where RFC 5321 would not put them too.
        ("o'brien@example.org", "o'brien@example.org"),
        ("a!#$%&'*+-/=?^_`{|}~b@example.org", "a!#$%&'*+-/=?^_`{|}~b@example.org"),
        ("user.@example.org", "user.@example.org"),
    ],
)
def test_normalize_address(given: str, expected: str) -> None:
    assert normalize_address(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        "user",
        "user@",
        "@example.org",
        "us er@example.org",
        "user\x00@example.org",
        "user\r\n@example.org",
        "a(b)@example.org",
        "a<b>@example.org",
        "a,b@example.org",
        "a@b@example.org",  # an unquoted '@' in the local part
        '""@example.org',
        '"unterminated@example.org',
        '"a"b@example.org',
        '"a\\',
        '"bad\\\x01"@example.org',
        '"ctl\x07"@example.org',
        "user@exa_mple.org",
        "user@example..org",
        "user@1.2.3.4",
        "x" * 129 + "@example.org",
        "x" * 100 + "@" + ".".join(["a" * 50] * 4),  # over 254 octets
    ],
)
def test_normalize_address_invalid(given: str) -> None:
    with pytest.raises(ValueError):
        normalize_address(given)


def test_normalize_address_is_idempotent() -> None:
    for addr in ['"a b"@Example.org', "Jürgen@BÜCHER.example.", '"a\\"b"@x.org', "u+t@x.org"]:
        once = normalize_address(addr)
        assert normalize_address(once) == once


def test_local_part_helpers() -> None:
    assert parse_local('"a\\"b"') == 'a"b'
    assert parse_local("User") == "User"
    assert format_local("user") == "user"
    assert format_local("a b") == '"a b"'
    assert format_local('a"b\\c') == '"a\\"b\\\\c"'
    assert format_local("jürgen") == "jürgen"
    assert format_local("") == '""'


# --- plus_base ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "separator", "expected"),
    [
        ("user+tag", "+", "user"),
        ("user+tag+more", "+", "user"),
        ("user+", "+", "user"),
        ("user", "+", None),
        ("+tag", "+", None),
        ("", "+", None),
        ("user-tag", "+", None),
        ("user-tag", "-", "user"),
        ("user-tag+x", "+-", "user"),
        ("user+tag-x", "+-", "user"),
        ("user+tag", "", None),
        ("first.last+tag", "+", "first.last"),
    ],
)
def test_plus_base(local: str, separator: str, expected: str | None) -> None:
    assert plus_base(local, separator) == expected


def test_plus_base_default_separator() -> None:
    assert plus_base("user+tag") == "user"


# --- parse_path -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "local", "domain", "address", "trick"),
    [
        ("user@example.org", "user", "example.org", "user@example.org", None),
        ("User@Example.ORG.", "User", "example.org", "user@example.org", None),
        ("<User@Example.org>", "User", "example.org", "user@example.org", None),
        ("user+tag@example.org", "user+tag", "example.org", "user+tag@example.org", None),
        ("user@[192.0.2.1]", "user", "[192.0.2.1]", "user@[192.0.2.1]", None),
        ('"user"@example.org', "user", "example.org", "user@example.org", None),
        ('"a b"@example.org', "a b", "example.org", '"a b"@example.org', None),
        ("user@xn--bcher-kva.example", "user", "xn--bcher-kva.example", None, None),
        # The percent hack, in all its spellings.
        ("user%other.example@example.org", "user%other.example", "example.org", None, "%"),
        ("user%other@Example.org", "user%other", "example.org", None, "%"),
        ('"user%other"@example.org', "user%other", "example.org", None, "%"),
        # UUCP bang paths.
        ("other.example!user@example.org", "other.example!user", "example.org", None, "!"),
        ("a!b!user@example.org", "a!b!user", "example.org", None, "!"),
        ('"other!user"@example.org', "other!user", "example.org", None, "!"),
        # A quoted '@'.
        ('"user@other.example"@example.org', "user@other.example", "example.org", None, "@"),
        ('"user@other"@example.org', "user@other", "example.org", None, "@"),
        ('"user%x@y"@example.org', "user%x@y", "example.org", None, "@"),
        # Source routes and their remnants.
        ("@relay.example:user@example.org", "user", "example.org", None, ":"),
        ("@a.example,@b.example:user@example.org", "user", "example.org", None, ":"),
        ("<@a.example:user@example.org>", "user", "example.org", None, ":"),
        ("hop.example:user@example.org", "hop.example:user", "example.org", None, ":"),
        ('"@hop.example:user"@example.org', "@hop.example:user", "example.org", None, ":"),
        ('"hop:user"@example.org', "hop:user", "example.org", None, ":"),
        ("@relay.example:user%other@example.org", "user%other", "example.org", None, ":"),
    ],
)
def test_parse_path(
    given: str, local: str, domain: str, address: str | None, trick: str | None
) -> None:
    tricks = {
        "%": TRICK_PERCENT_HACK,
        "!": TRICK_BANG_PATH,
        "@": TRICK_QUOTED_AT,
        ":": TRICK_SOURCE_ROUTE,
        None: None,
    }
    p = parse_path(given, smtputf8=False)
    assert isinstance(p, ParsedAddress)
    assert p.raw == given
    assert p.local == local
    assert p.domain == domain
    if address is not None:
        assert p.address == address
    assert p.trick == tricks[trick]
    assert p.non_ascii is False


def test_parse_path_canonical_address_matches_normalize_address() -> None:
    for given in ["User@Example.org", '"a b"@x.org', '"user@other"@x.org', "Jürgen@bücher.example"]:
        assert parse_path(given, smtputf8=True).address == normalize_address(given)


@pytest.mark.parametrize(
    ("given", "local", "domain"),
    [
        ("jürgen@example.org", "jürgen", "example.org"),
        ("user@bücher.example", "user", "xn--bcher-kva.example"),
        ("δοκιμή@παράδειγμα.δοκιμή", "δοκιμή", "xn--hxajbheg2az3al.xn--jxalpdlp"),
        ('"jür gen"@example.org', "jür gen", "example.org"),
        ("用户@例子.广告", "用户", "xn--fsqu00a.xn--4rr70v"),
    ],
)
def test_parse_path_non_ascii(given: str, local: str, domain: str) -> None:
    p = parse_path(given, smtputf8=True)
    assert (p.local, p.domain, p.non_ascii, p.trick) == (local, domain, True, None)
    with pytest.raises(NeedsSmtpUtf8):
        parse_path(given, smtputf8=False)


def test_needs_smtputf8_is_a_value_error() -> None:
    assert issubclass(NeedsSmtpUtf8, ValueError)


@pytest.mark.parametrize(
    "given",
    [
        "",
        "<>",
        "user",
        "@example.org",
        "user@",
        "@relay.example:",
        "@relay.example",
        "us er@example.org",
        "a@b@example.org",
        '"unterminated@example.org',
        "user@exa mple.org",
        "user@example..org",
        "user@[300.1.1.1]",
        "user\n@example.org",
    ],
)
@pytest.mark.parametrize("smtputf8", [True, False])
def test_parse_path_invalid(given: str, smtputf8: bool) -> None:
    with pytest.raises(ValueError) as info:
        parse_path(given, smtputf8=smtputf8)
    assert not isinstance(info.value, NeedsSmtpUtf8)


def test_parse_path_aiosmtpd_forms() -> None:
    """What aiosmtpd hands over for real commands is understood."""
    from email._header_value_parser import get_angle_addr

    for arg, address, trick in [
        ("<User@Example.org>", "user@example.org", None),
        ('<"user@other"@example.org>', '"user@other"@example.org', TRICK_QUOTED_AT),
        ("<user%other@example.org>", "user%other@example.org", TRICK_PERCENT_HACK),
        ("<other!user@example.org>", "other!user@example.org", TRICK_BANG_PATH),
        ('<"user"@example.org>', "user@example.org", None),
        ("<us\\er@example.org>", '"us\\\\er"@example.org', None),
    ]:
        addr_spec = get_angle_addr(arg)[0].addr_spec
        p = parse_path(addr_spec, smtputf8=False)
        assert (p.address, p.trick) == (address, trick), arg
