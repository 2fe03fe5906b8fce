"""LIST mailbox patterns (gomail.imap.patterns): the same answers as a plain reference
matcher, no exception on any input, and a cost linear in the name's length (issue 10: a
backtracking regex took 20 s on ``*`` × 52 then ``x``)."""

from __future__ import annotations

import functools
import time

import pytest
from gomail.imap.patterns import (
    MAX_PATTERN,
    MAX_PATTERNS,
    PatternSet,
    PatternTooLong,
    compile_list,
    join_reference,
    tokens,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def reference_match(pattern: str, name: str) -> bool:
    """RFC 3501's definition, written the obvious way: memoised recursion on both positions
    (quadratic, so only for the short inputs of these tests)."""

    @functools.cache
    def at(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(name)
        ch = pattern[i]
        if ch == "*":
            return at(i + 1, j) or (j < len(name) and at(i, j + 1))
        if ch == "%":
            return at(i + 1, j) or (j < len(name) and name[j] != "/" and at(i, j + 1))
        return j < len(name) and name[j] == ch and at(i + 1, j + 1)

    return at(0, 0)


@pytest.mark.parametrize(
    "pattern, name, expected",
    [
        ("*", "", True),
        ("*", "a/b/c", True),
        ("%", "a/b", False),
        ("%", "abc", True),
        ("a/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a/*", "a/b/c", True),
        ("a%/c", "ab/c", True),
        ("a%/c", "a/x/c", False),
        ("%*%", "a/b", True),  # a run with a star folds into a star
        ("%%", "a/b", False),
        ("*a%b", "xa/ab", True),  # greedy leftmost "a" would fail here
        ("Sent", "Sent", True),
        ("Sent", "sent", False),
        ("", "", True),
        ("", "x", False),
        ("*" * 52 + "x", "a" * 60, False),
        ("*" * 52 + "x", "a" * 60 + "x", True),
    ],
)
def test_examples(pattern: str, name: str, expected: bool):
    assert PatternSet([pattern]).matches(name) is expected
    assert reference_match(pattern, name) is expected


def test_reference_and_inbox_are_joined_as_before():
    assert join_reference("Work/", "/x") == "Work/x"
    assert join_reference("Work", "/x") == "Work/x"
    assert join_reference("", "inbox/%") == "INBOX/%"
    assert join_reference("", "Inbox*") == "INBOX*"
    assert join_reference("", "inboxes") == "inboxes"  # not INBOX followed by a level
    assert compile_list("", ["inbox"]).matches("INBOX")
    assert compile_list("inbox/", ["%"]).matches("INBOX/a")


def test_tokens_fold_wildcard_runs():
    assert tokens("a**%%b%%c%*%") == ["a", "*", "b", "%", "c", "*"]


def test_several_patterns_do_not_leak_into_each_other():
    ps = PatternSet(["a", "b%", "c*d"])
    assert ps.matches("a") and ps.matches("bx") and ps.matches("cxxd")
    assert not ps.matches("ab") and not ps.matches("b/x") and not ps.matches("c")
    # The accept bit of one pattern must not carry into the next pattern's first token.
    ps = PatternSet(["a*b", "c%"])
    assert ps.matches("axb") and ps.matches("cd")
    assert not ps.matches("abc") and not ps.matches("abcd") and not ps.matches("c/d")


def test_limits():
    PatternSet(["*" * MAX_PATTERN])
    with pytest.raises(PatternTooLong, match="Pattern too long"):
        PatternSet(["*" * (MAX_PATTERN + 1)])
    with pytest.raises(PatternTooLong, match="Pattern too long"):
        PatternSet(["ü" * (MAX_PATTERN // 2 + 1)])  # bytes, not characters
    with pytest.raises(PatternTooLong, match="Pattern too long"):  # the patterns together
        PatternSet(["*" * (MAX_PATTERN // 2), "%" * (MAX_PATTERN // 2 + 1)])
    with pytest.raises(PatternTooLong, match="Too many patterns"):
        PatternSet(["a"] * (MAX_PATTERNS + 1))


_ALPHABET = st.sampled_from("ab/*%xü")
_NAME = st.text(alphabet=st.sampled_from("ab/xü"), max_size=12)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patterns=st.lists(st.text(alphabet=_ALPHABET, max_size=10), min_size=1, max_size=4),
    name=_NAME,
)
def test_agrees_with_reference(patterns: list[str], name: str):
    expected = any(reference_match(p, name) for p in patterns)
    assert PatternSet(patterns).matches(name) is expected


@settings(max_examples=300, deadline=None)
@given(reference=st.text(max_size=40), pattern=st.text(max_size=80), name=st.text(max_size=80))
def test_never_raises(reference: str, pattern: str, name: str):
    ps = compile_list(reference, [pattern])
    assert ps.matches(name) in (True, False)


# --- cost ------------------------------------------------------------------------------------


def _cost(ps: PatternSet, name: str, runs: int) -> float:
    """Seconds per match: the best of 30 batches of ``runs`` matches. Callers give both
    lengths batches of the same work, so that both are as likely to be preempted on a busy
    machine, and the best batch is one that was not."""
    best = float("inf")
    for _ in range(30):
        start = time.perf_counter()
        for _ in range(runs):
            ps.matches(name)
        best = min(best, time.perf_counter() - start)
    return best / runs


@pytest.mark.parametrize(
    "pattern, unit",
    [
        ("*" * 52 + "x", "a"),  # the attack: fails only at the last character
        ("%*%*%*%*%*%*%*%*y", "ab/"),
        ("*a*a*a*a*a*a*a*ab", "a"),  # many stars, many live states, almost matches
        ("*" + "%a" * 200 + "%", "a"),  # a long pattern: state wider than a machine word
    ],
)
def test_cost_is_linear_in_the_name(pattern: str, unit: str):
    ps = PatternSet([pattern])
    n = 1000
    short = unit * (n // len(unit))
    long = unit * (4 * n // len(unit))
    small = _cost(ps, short, 8)
    large = _cost(ps, long, 2)
    # Linear: about 4x. A quadratic matcher gives 16x, an exponential one never ends.
    assert large / small < 8, f"{pattern[:20]}…: n {small:.4f}s, 4n {large:.4f}s"
    assert large < 2.0


def test_the_attack_pattern_is_fast_on_a_long_name():
    ps = compile_list("", ["*" * 52 + "x"])
    start = time.perf_counter()
    assert not ps.matches("a" * 4096)
    assert time.perf_counter() - start < 0.5
