"""Fuzzing the IMAP command parser with the bytes a client may send: arbitrary bytes, and
commands built from the grammar (tags, atoms, quoted strings, literals, sequence sets, nested
parentheses, SEARCH keys, FETCH items, BODY[section]<partial>), sometimes mutated.

Only ParseError may escape, and its response must be one well-formed IMAP line."""

from __future__ import annotations

from gomail.imap import parser as p
from hypothesis import example, given
from hypothesis import strategies as st

from .budget import fuzz_settings
from .imap_grammar import assert_error_response, commands, mutated, tags, wire_commands

SMALL = p.Limits(max_line=200, max_literal=64, max_append=128, max_command=600, max_literals=4)


def feed(data: bytes, limits: p.Limits = p.DEFAULT_LIMITS, utf8: bool = False) -> p.Command:
    """What the session does with a command on the wire: lines and literals into a
    CommandBuffer, then parse. Raises ParseError (or AssertionError for a test bug)."""
    buf = p.CommandBuffer(limits)
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos : end + 1]
        pos = len(data) if end < 0 else end + 1
        announced = buf.add_line(line)
        if announced is None:
            return buf.parse(utf8=utf8)
        chunk = data[pos : pos + announced.size]
        pos += len(chunk)
        buf.add_literal(chunk)  # ParseError when the data ran out early


def check(data: bytes, **kw) -> p.Command | None:
    try:
        cmd = feed(data, **kw)
    except p.ParseError as e:
        assert_error_response(e.response(), e.tag)
        return None
    assert cmd.name and cmd.tag
    return cmd


@fuzz_settings(400)
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes(data: bytes, utf8: bool):
    check(data, utf8=utf8)
    check(data, limits=SMALL, utf8=utf8)


@fuzz_settings(300)
@given(tags, st.binary(max_size=200))
def test_tagged_garbage(tag: bytes, rest: bytes):
    cmd = check(tag + b" " + rest)
    if cmd is not None:
        assert cmd.tag == tag.decode()


@fuzz_settings(1500)
@given(wire_commands(), st.booleans())
@example((b"a1", b"a1 SEARCH BEFORE 1-Jan-4294967295"), False)  # was an OverflowError
def test_grammar_commands(tagged: tuple[bytes, bytes], utf8: bool):
    tag, data = tagged
    cmd = check(data, utf8=utf8)
    if cmd is None:
        return
    assert cmd.tag == tag.decode()
    args = cmd.args
    if isinstance(args, p.Fetch):
        for attr in args.attributes:  # its name goes into the response as it is
            name = attr.response_name()
            assert "\r" not in name and "\n" not in name
        _reparse_sequence_set(args.sequence_set)
    if isinstance(args, (p.Store, p.CopyMove)):
        _reparse_sequence_set(args.sequence_set)
    check(data, limits=SMALL, utf8=utf8)


def _reparse_sequence_set(seq: p.SequenceSet) -> None:
    text = str(seq).encode()
    again = p.parse_command(b"a FETCH " + text + b" FLAGS").args.sequence_set
    assert again == seq


@fuzz_settings(300)
@given(
    st.lists(
        st.one_of(st.binary(max_size=60), mutated(commands), st.integers(0, 80)),
        min_size=1,
        max_size=6,
    )
)
def test_command_buffer_calls_in_any_order(calls: list):
    """add_line / add_literal / parse in any order, with sizes that may not match: only
    ParseError, each with a well-formed response."""
    buf = p.CommandBuffer(SMALL)
    for call in [*calls, None]:
        try:
            if call is None:
                buf.parse()
            elif isinstance(call, int):
                buf.add_literal(b"x" * call)
            else:
                buf.add_line(call)
        except p.ParseError as e:
            assert_error_response(e.response(), e.tag)


@fuzz_settings(300)
@given(st.binary(max_size=80))
def test_literal_announcement_and_sasl(line: bytes):
    ann = p.literal_announcement(line)
    if ann is not None:
        assert ann.size >= 0
        assert line.rstrip(b"\r\n").endswith(b"}")
    try:
        decoded = p.sasl_response(line)
    except p.ParseError as e:
        assert_error_response(e.response(), e.tag)
    else:
        assert decoded is None or isinstance(decoded, bytes)
    p.is_done(line)


@fuzz_settings(200)
@given(st.binary(min_size=0, max_size=60).map(lambda b: b.replace(b"\n", b"")))
def test_sasl_roundtrip(data: bytes):
    import base64

    assert p.sasl_response(base64.b64encode(data) + b"\r\n") == data
