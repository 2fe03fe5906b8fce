"""Message edits are applied once, on raw bytes, leaving untouched parts byte-identical."""

import pytest
from gomail.message import Message, apply_header_edits, split_message

RAW = (
    b"From: a@example.org\r\n"
    b"Subject: hello\r\n"
    b"X-Folded: one\r\n two\r\n"
    b"Subject: second\r\n"
    b"\r\n"
    b"body line\r\n\r\nmore\r\n"
)


def test_split_keeps_folded_lines_and_body():
    fields, body = split_message(RAW)
    assert fields[2] == b"X-Folded: one\r\n two\r\n"
    assert body == b"body line\r\n\r\nmore\r\n"


def test_no_edits_returns_raw_itself():
    m = Message(RAW)
    assert m.edited() is RAW


def test_add_header_on_top_and_at_end():
    m = Message(RAW)
    m.add_header("X-Top", "1")
    m.add_header("X-End", "2", index=0)
    out = m.edited()
    assert out.startswith(b"X-Top: 1\r\nFrom: a@example.org\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.endswith(b"Subject: second\r\nX-End: 2")
    assert body == b"body line\r\n\r\nmore\r\n"


def test_change_and_delete_nth_header():
    m = Message(RAW)
    m.change_header("subject", "changed", index=2)
    m.delete_header("SUBJECT", index=1)
    out = m.edited()
    assert b"Subject: hello" not in out
    assert b"subject: changed\r\n" in out
    assert out.lower().count(b"subject:") == 1


def test_edits_in_order_after_replace():
    m = Message(RAW)
    m.replace(b"Subject: new\r\n\r\nnew body\r\n")
    m.add_header("X-After", "yes")
    assert m.edited() == b"X-After: yes\r\nSubject: new\r\n\r\nnew body\r\n"


def test_replace_body_keeps_header_bytes():
    m = Message(RAW)
    m.replace_body(b"other\r\n")
    assert m.edited() == RAW.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\nother\r\n"


def test_plugins_see_the_original_until_applied():
    m = Message(RAW)
    m.add_header("X-Seen", "1")
    assert m.raw == RAW
    assert m.get_header("x-folded") == "one two"
    assert m.parsed["Subject"] == "hello"


def test_envelope_edits_are_not_content_edits():
    m = Message(RAW)
    m.add_recipient("x@example.org")
    m.change_sender("y@example.org")
    assert [e.kind for e in m.envelope_edits] == ["add_recipient", "change_sender"]
    assert m.edited() is RAW


@pytest.mark.parametrize("name", ["", "Bad Name", "X:y", "Ünicode"])
def test_bad_header_names_refused(name):
    with pytest.raises(ValueError):
        Message(RAW).add_header(name, "v")


def test_message_without_body_separator():
    out = apply_header_edits(b"Subject: x\r\n", [])
    assert out == b"Subject: x\r\n\r\n"
