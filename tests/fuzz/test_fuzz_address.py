"""Fuzzing address parsing (gomail.address) with what SMTP clients put in MAIL FROM and RCPT
TO: only ValueError (NeedsSmtpUtf8 is one) escapes, and a canonical address is a fixed point
(parsed again, it gives itself)."""

from __future__ import annotations

from gomail import address as a
from hypothesis import example, given
from hypothesis import strategies as st

from .budget import fuzz_settings

TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~."

locals_ = st.one_of(
    st.text(ATEXT, min_size=1, max_size=20),
    st.text(st.characters(codec="utf-8", exclude_characters='"\\'), max_size=10).map(
        lambda t: f'"{t}"'
    ),
    st.sampled_from(
        ["SRS0=abc=de=example.org=user", '"a\\"b"', '"a\\\\"', "\u00e9l\u00e8ve", "a:b"]
    ),
    TEXT,
)
labels = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True),
    st.sampled_from(
        ["xn--bcher-kva", "b\u00fccher", "B\u00dcCHER", "xn--", "xn--a", "\u3002", "-"]
    ),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
)
domains = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["[127.0.0.1]", "[IPv6:::1]", "[IPv6:2001:db8::1]", "[1.2.3]", "example.org."]),
    TEXT,
)
addresses = st.one_of(
    st.tuples(locals_, domains).map(lambda t: f"{t[0]}@{t[1]}"),
    st.tuples(domains, locals_, domains).map(lambda t: f"@{t[0]}:{t[1]}@{t[2]}"),
    TEXT,
)


def _fixed_point(canonical: str) -> None:
    assert a.normalize_address(canonical) == canonical
    assert a.parse_path(canonical, True).address == canonical
    assert a.parse_path(f"<{canonical}>", True).address == canonical


@fuzz_settings(1000)
@given(addresses, st.booleans())
@example("\u00e9@example.org", False)
def test_parse_path(addr: str, smtputf8: bool):
    try:
        parsed = a.parse_path(addr, smtputf8)
    except ValueError:
        return
    assert parsed.raw == addr
    if not smtputf8:
        assert parsed.address.isascii() or parsed.non_ascii
    _fixed_point(parsed.address)


@fuzz_settings(600)
@given(addresses)
def test_normalize_address(addr: str):
    try:
        canonical = a.normalize_address(addr)
    except ValueError:
        return
    _fixed_point(canonical)


@fuzz_settings(600)
@given(domains)
@example("xn--bcher-kva.\xad")  # the soft hyphen maps to nothing: was "xn--bcher-kva."
@example("b\u00fccher.example.\xad")
def test_normalize_domain(domain: str):
    try:
        canonical = a.normalize_domain(domain)
    except ValueError:
        return
    assert a.normalize_domain(canonical) == canonical
    assert canonical == canonical.strip() and not canonical.endswith(".")


@fuzz_settings(300)
@given(TEXT, st.sampled_from(["+", "-", "+-", "", "=+"]))
def test_plus_base(local: str, separator: str):
    base = a.plus_base(local, separator)
    if base is not None:
        assert base and local.startswith(base) and local[len(base)] in separator
