"""Sessions that select the same unchanged folder share its state until one changes it."""

from types import SimpleNamespace

from gomail.imap.selected import SelectedFolder
from gomail.store import FolderSnapshot


def snapshot(highestmodseq=7):
    rows = [(uid, ("\\Seen",) if uid % 2 else (), uid) for uid in range(1, 6)]
    return FolderSnapshot("INBOX", 42, 6, highestmodseq, rows, frozenset())


def session(user="alice@example.org"):
    lines = []
    return SimpleNamespace(user=user, untagged=lines.append, rev2=False, lines=lines)


def view(sess, snap):
    return SelectedFolder(sess, snap, False, SimpleNamespace(close=lambda: None))


def test_same_state_is_shared_and_copied_before_a_change():
    a, b = view(session(), snapshot()), view(session(), snapshot())
    assert a.uids is b.uids and a.flags is b.flags and a.modseqs is b.modseqs
    a.set_flags(0, ("\\Flagged",), 8)
    assert a.flags[0] == ("\\Flagged",) and a.modseqs[0] == 8
    assert b.flags[0] == ("\\Seen",) and b.modseqs[0] == 1  # b is untouched
    assert a.uids is not b.uids


def test_other_state_or_user_is_not_shared():
    a = view(session(), snapshot())
    assert view(session(), snapshot(highestmodseq=8)).uids is not a.uids
    assert view(session("bob@example.org"), snapshot()).uids is not a.uids
