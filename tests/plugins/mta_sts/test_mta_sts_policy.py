"""MTA-STS formats without daemons: the TXT record, the policy file, MX patterns, the cache JSON."""

from __future__ import annotations

import pytest
from gomail_mta_sts.policy import (
    MAX_AGE_LIMIT,
    Policy,
    PolicyError,
    mx_matches,
    parse_policy,
    parse_txt,
    txt_id,
)

GOOD = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\n"
    "mx: *.backup.example.com\r\nmax_age: 86400\r\n"
)


def test_policy_parsed():
    p = parse_policy(GOOD, "abc123", 1000.0)
    mx = ("mx1.example.com", "*.backup.example.com")
    assert p == Policy("abc123", "enforce", mx, 86400, 1000.0)
    assert p.expires == 87400.0


def test_policy_lf_lines_unknown_keys_first_occurrence():
    text = (
        "version: STSv1\nmode: testing\nmode: enforce\nfoo: bar\nmx: MX.Example.COM.\nmax_age:600\n"
    )
    p = parse_policy(text, "1", 0)
    assert p.mode == "testing"  # the first mode counts
    assert p.mx == ("mx.example.com",)
    assert p.max_age == 600


def test_mode_none_needs_no_mx():
    p = parse_policy("version: STSv1\nmode: none\nmax_age: 100\n", "2", 0)
    assert p.mode == "none" and p.mx == ()


@pytest.mark.parametrize(
    "text, words",
    [
        ("mode: enforce\nmx: a.example\nmax_age: 1\n", "version"),
        ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "version"),
        ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode"),
        ("version: STSv1\nmode: enforce\nmx: a.example\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -5\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n", "max_age"),
        (f"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: {MAX_AGE_LIMIT + 1}\n", "over"),
        ("version: STSv1\nmode: enforce\nmax_age: 100\n", "no mx"),
        ("version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 100\n", "mx pattern"),
        ("version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 100\n", "mx pattern"),
        ("<html>version: STSv1</html>\n", "version"),
        ("version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n", "colon"),
    ],
)
def test_bad_policies(text, words):
    with pytest.raises(PolicyError, match=words):
        parse_policy(text, "x", 0)


def test_max_age_limit_itself_is_fine():
    text = f"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: {MAX_AGE_LIMIT}\n"
    assert parse_policy(text, "x", 0).max_age == MAX_AGE_LIMIT


@pytest.mark.parametrize(
    "pattern, host, ok",
    [
        ("mx.example.com", "mx.example.com", True),
        ("mx.example.com", "MX.Example.Com.", True),
        ("mx.example.com", "mx2.example.com", False),
        ("*.example.com", "mx.example.com", True),
        ("*.example.com", "a.mx.example.com", False),  # one label only
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "mxexample.com", False),
        ("*.Example.com.", "mx.example.COM", True),
        ("mx.example.com", "mx.example.com.evil", False),
    ],
)
def test_mx_matching(pattern, host, ok):
    assert mx_matches(pattern, host) is ok


def test_policy_allows():
    p = parse_policy(GOOD, "a", 0)
    assert p.allows("mx1.example.com")
    assert p.allows("x.backup.example.com")
    assert not p.allows("mx2.example.com")


@pytest.mark.parametrize(
    "records, expected",
    [
        (["v=STSv1; id=20240101T1;"], "20240101T1"),
        (["v=STSv1;id=abc"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=abc; ext=1;"], "abc"),
        (["v=STSv1; id=abc;", "v=STSv1; id=def;"], None),  # two: no policy
        ([], None),
        (["v=STSv1; id=;"], None),
        (["v=STSv1; id=has-dash;"], None),
        (["v=STSv1; id=" + "a" * 33], None),
        (["v=STSv1; foo=bar;"], None),
        (["V=STSv1; id=abc;"], None),
    ],
)
def test_txt_id(records, expected):
    assert txt_id(records) == expected


def test_parse_txt_reason():
    with pytest.raises(PolicyError, match="no id"):
        parse_txt("v=STSv1; x=y")


def test_json_round_trip_and_garbage():
    p = parse_policy(GOOD, "abc", 123.5)
    assert Policy.from_json(p.to_json()) == p
    with pytest.raises(PolicyError):
        Policy.from_json("{not json")
    with pytest.raises(PolicyError):
        Policy.from_json('{"id": "a", "mode": "bogus", "mx": [], "max_age": 1, "fetched": 0}')
