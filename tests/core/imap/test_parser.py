"""The IMAP command parser: every command and extension form, bad input, and fuzzing.

The command lines are the shapes real clients send (imaplib, Thunderbird, mbsync, mutt,
Apple Mail, curl), written fresh for these tests.
"""

from __future__ import annotations

import datetime as dt

import pytest
from gomail.imap.parser import (
    Append,
    AppendMessage,
    Authenticate,
    Command,
    CommandBuffer,
    Compress,
    CopyMove,
    Create,
    Enable,
    Expunge,
    Fetch,
    FetchAttribute,
    GetQuota,
    Id,
    Limits,
    List,
    Literal,
    LiteralAnnouncement,
    Login,
    MailboxArg,
    ParseError,
    QResync,
    Rename,
    Search,
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchWithin,
    Section,
    Select,
    SequenceSet,
    SetQuota,
    Sort,
    SortCriterion,
    Status,
    Store,
    Thread,
    is_done,
    literal_announcement,
    parse_command,
    parse_wire,
    sasl_response,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def S(text: str, *, check_str: bool = True) -> SequenceSet:
    """A sequence set from its wire form (through the parser itself, checked by str())."""
    seqset = parse_command(f"t UID EXPUNGE {text}".encode()).args.sequence_set
    if check_str:
        assert str(seqset) == text
    return seqset


def fa(name, section=None, partial=None, peek=False):
    return FetchAttribute(name, section, partial, peek)


THUNDERBIRD_HEADERS = (
    "From",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Date",
    "Message-ID",
    "Priority",
    "X-Priority",
    "References",
    "Newsgroups",
    "In-Reply-To",
    "Content-Type",
    "Reply-To",
)
TZ_MINUS_8 = dt.timezone(-dt.timedelta(hours=8))


# ---------------------------------------------------------------------------------------------
# Every command

GOOD = [
    # any state
    (b"a001 CAPABILITY", Command("a001", "CAPABILITY")),
    (b"1 capability", Command("1", "CAPABILITY")),
    (b"a NOOP", Command("a", "NOOP")),
    (b"a LOGOUT", Command("a", "LOGOUT")),
    (b"a STARTTLS", Command("a", "STARTTLS")),
    (b"A001 LOGIN alice secret", Command("A001", "LOGIN", Login("alice", "secret"))),
    (
        b'a LOGIN "alice@example.org" "p\\"w\\\\d"',
        Command("a", "LOGIN", Login("alice@example.org", 'p"w\\d')),
    ),
    (b"a AUTHENTICATE PLAIN", Command("a", "AUTHENTICATE", Authenticate("PLAIN"))),
    (
        b"a AUTHENTICATE plain AGFsaWNlAHNlY3JldA==",
        Command("a", "AUTHENTICATE", Authenticate("PLAIN", b"\0alice\0secret")),
    ),
    (b"a AUTHENTICATE EXTERNAL =", Command("a", "AUTHENTICATE", Authenticate("EXTERNAL", b""))),
    (
        b"a ENABLE CONDSTORE qresync UTF8=ACCEPT",
        Command("a", "ENABLE", Enable(("CONDSTORE", "QRESYNC", "UTF8=ACCEPT"))),
    ),
    (b"a ENABLE IMAP4rev2", Command("a", "ENABLE", Enable(("IMAP4REV2",)))),
    (
        b'3 ID ("name" "Thunderbird" "version" "115.3.1")',
        Command("3", "ID", Id((("name", "Thunderbird"), ("version", "115.3.1")))),
    ),
    (b"a ID NIL", Command("a", "ID", Id(None))),
    (b"a ID ()", Command("a", "ID", Id(()))),
    (b'a ID ("os" NIL)', Command("a", "ID", Id((("os", None),)))),
    (b"a COMPRESS DEFLATE", Command("a", "COMPRESS", Compress("DEFLATE"))),
    # authenticated state
    (b"a SELECT INBOX", Command("a", "SELECT", Select("INBOX"))),
    (b'a select "inbox"', Command("a", "SELECT", Select("INBOX"))),
    (b"a EXAMINE Archive", Command("a", "EXAMINE", Select("Archive", readonly=True))),
    (b'4 select "INBOX" (CONDSTORE)', Command("4", "SELECT", Select("INBOX", condstore=True))),
    (
        b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        Command(
            "a",
            "SELECT",
            Select("INBOX", qresync=QResync(67890007, 20050715194045000, S("41,43:211,214:541"))),
        ),
    ),
    (
        b"a EXAMINE INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000 "
        b"15000,22500,27000)))",
        Command(
            "a",
            "EXAMINE",
            Select(
                "INBOX",
                readonly=True,
                qresync=QResync(
                    67890007,
                    90060115194045000,
                    S("1:29997"),
                    S("5000,7500,9000"),
                    S("15000,22500,27000"),
                ),
            ),
        ),
    ),
    (
        b"a SELECT INBOX (QRESYNC (1 2))",
        Command("a", "SELECT", Select("INBOX", qresync=QResync(1, 2))),
    ),
    (
        b"a SELECT INBOX (CONDSTORE QRESYNC (1 2 (1 5)))",
        Command(
            "a",
            "SELECT",
            Select("INBOX", condstore=True, qresync=QResync(1, 2, None, S("1"), S("5"))),
        ),
    ),
    (b"a CREATE Projects/2024", Command("a", "CREATE", Create("Projects/2024"))),
    (
        b'a CREATE "Entw&APw-rfe"',
        Command("a", "CREATE", Create("Entwürfe")),
    ),
    (
        b"a CREATE MyDrafts (USE (\\Drafts))",
        Command("a", "CREATE", Create("MyDrafts", ("\\Drafts",))),
    ),
    (b"a DELETE Old", Command("a", "DELETE", MailboxArg("Old"))),
    (b'a RENAME "Old" "New Name"', Command("a", "RENAME", Rename("Old", "New Name"))),
    (b"a SUBSCRIBE ~peter/mail", Command("a", "SUBSCRIBE", MailboxArg("~peter/mail"))),
    (b'a UNSUBSCRIBE "Sent"', Command("a", "UNSUBSCRIBE", MailboxArg("Sent"))),
    (b'a LIST "" *', Command("a", "LIST", List("", ("*",)))),
    (b'a LIST "" ""', Command("a", "LIST", List("", ("",)))),
    (b"a LIST ~/Mail/ %", Command("a", "LIST", List("~/Mail/", ("%",)))),
    (b'a LIST "" "&U,BTFw-/*"', Command("a", "LIST", List("", ("台北/*",)))),
    (b'a LSUB "" "*"', Command("a", "LSUB", List("", ("*",), lsub=True))),
    (
        b'a list (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE)',
        Command(
            "a",
            "LIST",
            List(
                "",
                ("*",),
                frozenset({"SUBSCRIBED"}),
                frozenset({"SPECIAL-USE"}),
                extended=True,
            ),
        ),
    ),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Sent*") RETURN (CHILDREN STATUS '
        b"(MESSAGES UNSEEN HIGHESTMODSEQ))",
        Command(
            "a",
            "LIST",
            List(
                "",
                ("INBOX", "Sent*"),
                frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
                frozenset({"CHILDREN", "STATUS"}),
                ("MESSAGES", "UNSEEN", "HIGHESTMODSEQ"),
                extended=True,
            ),
        ),
    ),
    (
        b'a LIST () "" % RETURN ()',
        Command("a", "LIST", List("", ("%",), extended=True)),
    ),
    (
        b'a STATUS "Sent" (UIDNEXT MESSAGES UNSEEN RECENT)',
        Command("a", "STATUS", Status("Sent", ("UIDNEXT", "MESSAGES", "UNSEEN", "RECENT"))),
    ),
    (
        b"a STATUS INBOX (messages size deleted highestmodseq appendlimit uidvalidity)",
        Command(
            "a",
            "STATUS",
            Status(
                "INBOX",
                ("MESSAGES", "SIZE", "DELETED", "HIGHESTMODSEQ", "APPENDLIMIT", "UIDVALIDITY"),
            ),
        ),
    ),
    (b"a NAMESPACE", Command("a", "NAMESPACE")),
    (b'a GETQUOTA ""', Command("a", "GETQUOTA", GetQuota(""))),
    (b"a GETQUOTA user.alice", Command("a", "GETQUOTA", GetQuota("user.alice"))),
    (b'a getquotaroot "INBOX"', Command("a", "GETQUOTAROOT", MailboxArg("INBOX"))),
    (
        b'a SETQUOTA "" (STORAGE 512 MESSAGE 1000)',
        Command("a", "SETQUOTA", SetQuota("", (("STORAGE", 512), ("MESSAGE", 1000)))),
    ),
    (b'a SETQUOTA "" ()', Command("a", "SETQUOTA", SetQuota("", ()))),
    (b"a IDLE", Command("a", "IDLE")),
    # selected state
    (b"a CHECK", Command("a", "CHECK")),
    (b"a CLOSE", Command("a", "CLOSE")),
    (b"a UNSELECT", Command("a", "UNSELECT")),
    (b"a EXPUNGE", Command("a", "EXPUNGE", Expunge())),
    (b"a UID EXPUNGE 3000:3002", Command("a", "EXPUNGE", Expunge(S("3000:3002")), uid=True)),
    (b'a COPY 2:4 "Saved"', Command("a", "COPY", CopyMove(S("2:4"), "Saved"))),
    (b"a UID COPY 10,12 Archive", Command("a", "COPY", CopyMove(S("10,12"), "Archive"), True)),
    (b'a UID MOVE 5 "Trash"', Command("a", "MOVE", CopyMove(S("5"), "Trash"), uid=True)),
    (b"a MOVE 1:* Junk", Command("a", "MOVE", CopyMove(S("1:*"), "Junk"))),
    (b"a MOVE $ Junk", Command("a", "MOVE", CopyMove(SequenceSet(saved=True), "Junk"))),
    # STORE
    (
        b"a STORE 2:4 +FLAGS (\\Deleted)",
        Command("a", "STORE", Store(S("2:4"), "add", ("\\Deleted",))),
    ),
    (
        b"a UID STORE 1,2 +FLAGS.SILENT (\\Deleted)",
        Command("a", "STORE", Store(S("1,2"), "add", ("\\Deleted",), silent=True), uid=True),
    ),
    (
        b"a uid store 5 -flags (\\seen $Junk)",
        Command("a", "STORE", Store(S("5"), "remove", ("\\Seen", "$Junk")), uid=True),
    ),
    (
        b"a STORE 1 FLAGS ()",
        Command("a", "STORE", Store(S("1"), "replace", ())),
    ),
    (
        b"a STORE 1 +FLAGS \\Seen \\Flagged",
        Command("a", "STORE", Store(S("1"), "add", ("\\Seen", "\\Flagged"))),
    ),
    (
        b"a STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT ($MDNSent)",
        Command(
            "a",
            "STORE",
            Store(S("7,5,9"), "add", ("$MDNSent",), silent=True, unchangedsince=320162338),
        ),
    ),
    # FETCH
    (
        b"a FETCH 1 ALL",
        Command(
            "a",
            "FETCH",
            Fetch(S("1"), (fa("FLAGS"), fa("INTERNALDATE"), fa("RFC822.SIZE"), fa("ENVELOPE"))),
        ),
    ),
    (
        b"a FETCH 1:2 fast",
        Command(
            "a", "FETCH", Fetch(S("1:2"), (fa("FLAGS"), fa("INTERNALDATE"), fa("RFC822.SIZE")))
        ),
    ),
    (
        b"a FETCH 1 FULL",
        Command(
            "a",
            "FETCH",
            Fetch(
                S("1"),
                (fa("FLAGS"), fa("INTERNALDATE"), fa("RFC822.SIZE"), fa("ENVELOPE"), fa("BODY")),
            ),
        ),
    ),
    (b"A004 FETCH 1 BODY[]", Command("A004", "FETCH", Fetch(S("1"), (fa("BODY", Section()),)))),
    (
        b"a UID FETCH 1:* (FLAGS)",
        Command("a", "FETCH", Fetch(S("1:*"), (fa("FLAGS"),)), uid=True),
    ),
    (
        b"a UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345)",
        Command("a", "FETCH", Fetch(S("1:*"), (fa("FLAGS"),), changedsince=12345), uid=True),
    ),
    (
        b"a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        Command(
            "a",
            "FETCH",
            Fetch(S("300:500"), (fa("FLAGS"),), changedsince=12345, vanished=True),
            uid=True,
        ),
    ),
    (
        b"a UID FETCH 1:4294967295 (UID FLAGS)",
        Command("a", "FETCH", Fetch(S("1:4294967295"), (fa("UID"), fa("FLAGS"))), uid=True),
    ),
    (
        b"a UID fetch 123 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc "
        b"Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
        b"Content-Type Reply-To)])",
        Command(
            "a",
            "FETCH",
            Fetch(
                S("123"),
                (
                    fa("UID"),
                    fa("RFC822.SIZE"),
                    fa("FLAGS"),
                    fa(
                        "BODY",
                        Section(
                            (),
                            "HEADER.FIELDS",
                            THUNDERBIRD_HEADERS,
                        ),
                        peek=True,
                    ),
                ),
            ),
            uid=True,
        ),
    ),
    (
        b'a FETCH 2 (BODY[1.2.HEADER.FIELDS.NOT (Received "X-Spam")]<0.2048>)',
        Command(
            "a",
            "FETCH",
            Fetch(
                S("2"),
                (
                    fa(
                        "BODY",
                        Section((1, 2), "HEADER.FIELDS.NOT", ("Received", "X-Spam")),
                        (0, 2048),
                    ),
                ),
            ),
        ),
    ),
    (
        b"a UID FETCH 5 (BODY.PEEK[1.MIME] BODY.PEEK[1.2] BODY[TEXT]<100.50> BODY[2.TEXT] "
        b"body[header])",
        Command(
            "a",
            "FETCH",
            Fetch(
                S("5"),
                (
                    fa("BODY", Section((1,), "MIME"), peek=True),
                    fa("BODY", Section((1, 2)), peek=True),
                    fa("BODY", Section((), "TEXT"), (100, 50)),
                    fa("BODY", Section((2,), "TEXT")),
                    fa("BODY", Section((), "HEADER")),
                ),
            ),
            uid=True,
        ),
    ),
    (
        b"a FETCH 1 (ENVELOPE BODYSTRUCTURE BODY INTERNALDATE RFC822 RFC822.HEADER "
        b"RFC822.TEXT MODSEQ)",
        Command(
            "a",
            "FETCH",
            Fetch(
                S("1"),
                tuple(
                    fa(n)
                    for n in (
                        "ENVELOPE",
                        "BODYSTRUCTURE",
                        "BODY",
                        "INTERNALDATE",
                        "RFC822",
                        "RFC822.HEADER",
                        "RFC822.TEXT",
                        "MODSEQ",
                    )
                ),
            ),
        ),
    ),
    (
        b"a FETCH 1 (BINARY[1] BINARY.PEEK[2.1]<0.100> BINARY.SIZE[1] BINARY[])",
        Command(
            "a",
            "FETCH",
            Fetch(
                S("1"),
                (
                    fa("BINARY", Section((1,))),
                    fa("BINARY", Section((2, 1)), (0, 100), peek=True),
                    fa("BINARY.SIZE", Section((1,))),
                    fa("BINARY", Section()),
                ),
            ),
        ),
    ),
    (b"a FETCH $ (FLAGS)", Command("a", "FETCH", Fetch(SequenceSet(saved=True), (fa("FLAGS"),)))),
    # SEARCH
    (b"a SEARCH ALL", Command("a", "SEARCH", Search(SearchAll()))),
    (
        b"a UID SEARCH 1:* NOT DELETED",
        Command(
            "a",
            "SEARCH",
            Search(SearchAnd((SearchSeq(S("1:*")), SearchNot(SearchFlag("\\Deleted"))))),
            uid=True,
        ),
    ),
    (
        b'a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Command(
            "a",
            "SEARCH",
            Search(
                SearchAnd(
                    (
                        SearchFlag("\\Flagged"),
                        SearchDate("internal", "since", dt.date(1994, 2, 1)),
                        SearchNot(SearchHeader("from", "Smith")),
                    )
                )
            ),
        ),
    ),
    (
        b"a SEARCH OR (SEEN UNANSWERED) OR DRAFT UNDRAFT",
        Command(
            "a",
            "SEARCH",
            Search(
                SearchOr(
                    SearchAnd((SearchFlag("\\Seen"), SearchFlag("\\Answered", False))),
                    SearchOr(SearchFlag("\\Draft"), SearchFlag("\\Draft", False)),
                )
            ),
        ),
    ),
    (
        b'a SEARCH SENTBEFORE "01-Jan-2024" SENTON 2-mar-2024 SENTSINCE 3-Apr-2024 BEFORE '
        b"4-May-2024 ON 5-Jun-2024",
        Command(
            "a",
            "SEARCH",
            Search(
                SearchAnd(
                    (
                        SearchDate("sent", "before", dt.date(2024, 1, 1)),
                        SearchDate("sent", "on", dt.date(2024, 3, 2)),
                        SearchDate("sent", "since", dt.date(2024, 4, 3)),
                        SearchDate("internal", "before", dt.date(2024, 5, 4)),
                        SearchDate("internal", "on", dt.date(2024, 6, 5)),
                    )
                )
            ),
        ),
    ),
    (
        b"a SEARCH LARGER 1000 SMALLER 5000 NEW OLD RECENT UNFLAGGED UNDELETED",
        Command(
            "a",
            "SEARCH",
            Search(
                SearchAnd(
                    (
                        SearchSize("larger", 1000),
                        SearchSize("smaller", 5000),
                        SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))),
                        SearchFlag("\\Recent", False),
                        SearchFlag("\\Recent"),
                        SearchFlag("\\Flagged", False),
                        SearchFlag("\\Deleted", False),
                    )
                )
            ),
        ),
    ),
    (
        b'a SEARCH TO bob CC "carol" BCC dave SUBJECT "" HEADER Message-ID "<x@y>" '
        b"BODY word TEXT hello KEYWORD $Junk UNKEYWORD NonJunk",
        Command(
            "a",
            "SEARCH",
            Search(
                SearchAnd(
                    (
                        SearchHeader("to", "bob"),
                        SearchHeader("cc", "carol"),
                        SearchHeader("bcc", "dave"),
                        SearchHeader("subject", ""),
                        SearchHeader("message-id", "<x@y>"),
                        SearchText("body", "word"),
                        SearchText("text", "hello"),
                        SearchFlag("$Junk"),
                        SearchFlag("NonJunk", False),
                    )
                )
            ),
        ),
    ),
    (
        b"a SEARCH CHARSET UTF-8 SUBJECT {6}\r\nGr\xc3\xbc\xc3\x9f\r\n",
        Command("a", "SEARCH", Search(SearchHeader("subject", "Grüß"), "UTF-8")),
    ),
    (
        b"a SEARCH charset us-ascii ANSWERED",
        Command("a", "SEARCH", Search(SearchFlag("\\Answered"), "US-ASCII")),
    ),
    (
        b"a SEARCH RETURN (MIN MAX COUNT) UNSEEN",
        Command("a", "SEARCH", Search(SearchFlag("\\Seen", False), None, ("MIN", "MAX", "COUNT"))),
    ),
    (
        b"a UID SEARCH RETURN () UID 1:100",
        Command("a", "SEARCH", Search(SearchSeq(S("1:100"), uid=True), None, ()), uid=True),
    ),
    (
        b"a SEARCH RETURN (SAVE ALL) CHARSET UTF-8 DELETED",
        Command("a", "SEARCH", Search(SearchFlag("\\Deleted"), "UTF-8", ("SAVE", "ALL"))),
    ),
    (
        b"a SEARCH MODSEQ 620162338",
        Command("a", "SEARCH", Search(SearchModSeq(620162338))),
    ),
    (
        b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
        Command("a", "SEARCH", Search(SearchModSeq(620162338, "/flags/\\draft", "all"))),
    ),
    (
        b"a SEARCH $ OLDER 3600 YOUNGER 60",
        Command(
            "a",
            "SEARCH",
            Search(
                SearchAnd(
                    (
                        SearchSeq(SequenceSet(saved=True)),
                        SearchWithin("older", 3600),
                        SearchWithin("younger", 60),
                    )
                )
            ),
        ),
    ),
    # SORT and THREAD
    (
        b"a SORT (REVERSE DATE SUBJECT) UTF-8 ALL",
        Command(
            "a",
            "SORT",
            Sort(
                (SortCriterion("DATE", True), SortCriterion("SUBJECT")),
                "UTF-8",
                SearchAll(),
            ),
        ),
    ),
    (
        b"a UID SORT (ARRIVAL CC FROM SIZE TO DISPLAYFROM DISPLAYTO) US-ASCII UNDELETED",
        Command(
            "a",
            "SORT",
            Sort(
                tuple(
                    SortCriterion(k)
                    for k in ("ARRIVAL", "CC", "FROM", "SIZE", "TO", "DISPLAYFROM", "DISPLAYTO")
                ),
                "US-ASCII",
                SearchFlag("\\Deleted", False),
            ),
            uid=True,
        ),
    ),
    (
        b"a SORT RETURN (MIN COUNT) (DATE) UTF-8 ALL",
        Command(
            "a",
            "SORT",
            Sort((SortCriterion("DATE"),), "UTF-8", SearchAll(), ("MIN", "COUNT")),
        ),
    ),
    (
        b"a THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000",
        Command(
            "a",
            "THREAD",
            Thread("ORDEREDSUBJECT", "UTF-8", SearchDate("internal", "since", dt.date(2000, 3, 5))),
        ),
    ),
    (
        b"a UID THREAD references US-ASCII ALL",
        Command("a", "THREAD", Thread("REFERENCES", "US-ASCII", SearchAll()), uid=True),
    ),
    # APPEND
    (
        b'A003 APPEND saved-messages (\\Seen) "07-Feb-1994 21:52:25 -0800" {5}\r\nhello\r\n',
        Command(
            "A003",
            "APPEND",
            Append(
                "saved-messages",
                (
                    AppendMessage(
                        b"hello", ("\\Seen",), dt.datetime(1994, 2, 7, 21, 52, 25, 0, TZ_MINUS_8)
                    ),
                ),
            ),
        ),
    ),
    (
        b'a APPEND "INBOX" {3+}\r\nabc\r\n',
        Command("a", "APPEND", Append("INBOX", (AppendMessage(b"abc"),))),
    ),
    (
        b'a APPEND Drafts (\\Draft $MDNSent) " 7-Feb-1994 21:52:25 -0800" {0}\r\n\r\n',
        Command(
            "a",
            "APPEND",
            Append(
                "Drafts",
                (
                    AppendMessage(
                        b"",
                        ("\\Draft", "$MDNSent"),
                        dt.datetime(1994, 2, 7, 21, 52, 25, 0, TZ_MINUS_8),
                    ),
                ),
            ),
        ),
    ),
    (
        b"a APPEND INBOX () {2}\r\nab (\\Seen) {2+}\r\ncd ~{3}\r\ne\0f\r\n",
        Command(
            "a",
            "APPEND",
            Append(
                "INBOX",
                (
                    AppendMessage(b"ab"),
                    AppendMessage(b"cd", ("\\Seen",)),
                    AppendMessage(b"e\0f", binary=True),
                ),
            ),
        ),
    ),
    (
        b"a APPEND INBOX UTF8 (~{4}\r\n\xc3\xa4\xc3\xb6)\r\n",
        Command(
            "a",
            "APPEND",
            Append("INBOX", (AppendMessage(b"\xc3\xa4\xc3\xb6", binary=True, utf8=True),)),
        ),
    ),
    # literals in other places
    (
        b"a LOGIN {5}\r\nalice {6+}\r\nse cre\r\n",
        Command("a", "LOGIN", Login("alice", "se cre")),
    ),
    (
        b"a SELECT {6}\r\nArchiv\r\n",
        Command("a", "SELECT", Select("Archiv")),
    ),
    (
        b'a LIST "" {1}\r\n*\r\n',
        Command("a", "LIST", List("", ("*",))),
    ),
    # tags
    (b"x.y]1 NOOP", Command("x.y]1", "NOOP")),
    (b"0000 NOOP", Command("0000", "NOOP")),
]


@pytest.mark.parametrize(
    ("wire", "expected"), GOOD, ids=[w[:50].decode("latin-1") for w, _ in GOOD]
)
def test_good_commands(wire, expected):
    assert parse_wire(wire) == expected


UTF8_GOOD = [
    (b'a SELECT "Entw\xc3\xbcrfe"', Command("a", "SELECT", Select("Entwürfe"))),
    (b'a CREATE "A&B"', Command("a", "CREATE", Create("A&B"))),
    (
        b'a SEARCH SUBJECT "Gr\xc3\xbc\xc3\x9fe"',
        Command("a", "SEARCH", Search(SearchHeader("subject", "Grüße"))),
    ),
    (b'a LIST "" "Entw\xc3\xbc*"', Command("a", "LIST", List("", ("Entwü*",)))),
]


@pytest.mark.parametrize(("wire", "expected"), UTF8_GOOD)
def test_utf8_accept(wire, expected):
    assert parse_wire(wire, utf8=True) == expected
    with pytest.raises(ParseError):
        parse_wire(wire, utf8=False)


# ---------------------------------------------------------------------------------------------
# Bad input: each a ParseError with the tag (when readable) and a reason

BAD = [
    # tag and command name
    (b"", None),
    (b" NOOP", None),
    (b"+ NOOP", None),
    (b"a+b NOOP", None),
    (b'"a" NOOP', None),
    (b"a*b NOOP", None),
    (b"\xffa NOOP", None),
    (b"a\0 NOOP", None),
    (b"a", "a"),
    (b"a ", "a"),
    (b"a  NOOP", "a"),
    (b"a FROB", "a"),
    (b"a NOOP extra", "a"),
    (b"a NOOP ", "a"),
    (b"a UID", "a"),
    (b"a UID NOOP", "a"),
    (b"a UID LIST", "a"),
    (b"a N\xc3\xb6OP", "a"),
    # strings
    (b'a LOGIN "alice secret', "a"),
    (b'a LOGIN alice "sec\\ret"', "a"),
    (b'a LOGIN "al\xc3\xafce" x', "a"),
    (b"a LOGIN alice", "a"),
    (b"a LOGIN {5}\r\nal\0ce x\r\n", "a"),
    (b"a LOGIN {5}\r\nali\xffe x\r\n", "a"),
    (b"a LOGIN ~{5}\r\nalice x\r\n", "a"),
    (b"a AUTHENTICATE PLAIN @@@", "a"),
    (b"a AUTHENTICATE PLAIN AGFsaWNl=AA", "a"),
    (b'a ID ("name")', "a"),
    (b"a ID (name x)", "a"),
    (b"a ENABLE", "a"),
    # mailbox names
    (b"a SELECT &Jjo", "a"),
    (b'a SELECT "caf\xc3\xa9"', "a"),
    (b"a SELECT {5}\r\ncaf\xc3\xa9\r\n", "a"),
    (b"a SELECT INBOX (FROB)", "a"),
    (b"a SELECT INBOX (CONDSTORE", "a"),
    (b"a SELECT INBOX (QRESYNC (0 1))", "a"),
    (b"a SELECT INBOX (QRESYNC (1))", "a"),
    (b"a SELECT INBOX (QRESYNC (1 2 $))", "a"),
    (b"a CREATE x (USE (Drafts))", "a"),
    (b"a RENAME onlyone", "a"),
    (b"a STATUS INBOX ()", "a"),
    (b"a STATUS INBOX (MESSAGES FROB)", "a"),
    (b"a STATUS INBOX MESSAGES", "a"),
    (b'a LIST (RECURSIVEMATCH) "" *', "a"),
    (b'a LIST (FROB) "" *', "a"),
    (b'a LIST "" * RETURN (FROB)', "a"),
    (b'a LIST "" * FROB (CHILDREN)', "a"),
    (b'a LIST "" ()', "a"),
    (b'a LSUB (SUBSCRIBED) "" *', "a"),
    (b'a SETQUOTA "" (STORAGE)', "a"),
    (b'a SETQUOTA "" (STORAGE -1)', "a"),
    # sequence sets
    (b"a FETCH 0 FLAGS", "a"),
    (b"a FETCH 1:0 FLAGS", "a"),
    (b"a FETCH 01 FLAGS", "a"),
    (b"a FETCH 1,,2 FLAGS", "a"),
    (b"a FETCH , FLAGS", "a"),
    (b"a FETCH 1: FLAGS", "a"),
    (b"a FETCH :1 FLAGS", "a"),
    (b"a FETCH 1:2:3 FLAGS", "a"),
    (b"a FETCH 4294967296 FLAGS", "a"),
    (b"a FETCH 99999999999999999999999 FLAGS", "a"),
    (b"a FETCH $,1 FLAGS", "a"),
    (b"a FETCH ** FLAGS", "a"),
    (b"a FETCH -1 FLAGS", "a"),
    (b"a FETCH 1 ", "a"),
    (b"a FETCH FLAGS", "a"),
    # FETCH items
    (b"a FETCH 1 (FLAGS", "a"),
    (b"a FETCH 1 (FLAGS))", "a"),
    (b"a FETCH 1 ()", "a"),
    (b"a FETCH 1 (FROB)", "a"),
    (b"a FETCH 1 (ALL)", "a"),
    (b"a FETCH 1 BODY[", "a"),
    (b"a FETCH 1 BODY[0]", "a"),
    (b"a FETCH 1 BODY[1.0]", "a"),
    (b"a FETCH 1 BODY[1.]", "a"),
    (b"a FETCH 1 BODY[.TEXT]", "a"),
    (b"a FETCH 1 BODY[MIME]", "a"),
    (b"a FETCH 1 BODY[FROB]", "a"),
    (b"a FETCH 1 BODY[HEADER.FIELDS]", "a"),
    (b"a FETCH 1 BODY[HEADER.FIELDS ()]", "a"),
    (b"a FETCH 1 BODY[HEADER.FIELDS (From:)]", "a"),
    (b"a FETCH 1 BODY[HEADER.FIELDS (From)", "a"),
    (b"a FETCH 1 BODY[]<0>", "a"),
    (b"a FETCH 1 BODY[]<0.0>", "a"),
    (b"a FETCH 1 BODY[]<x.1>", "a"),
    (b"a FETCH 1 BINARY[HEADER]", "a"),
    (b"a FETCH 1 BINARY.SIZE[1]<0.1>", "a"),
    (b"a FETCH 1 BODYSTRUCTURE[1]", "a"),
    (b"a FETCH 1 RFC822.PEEK", "a"),
    (b"a FETCH 1 (FLAGS) (FROB)", "a"),
    (b"a FETCH 1 (FLAGS) (VANISHED)", "a"),
    (b"a UID FETCH 1 (FLAGS) (VANISHED)", "a"),
    (b"a FETCH 1 (FLAGS) (CHANGEDSINCE)", "a"),
    (b"a FETCH 1 (FLAGS) (CHANGEDSINCE 9223372036854775808)", "a"),
    # STORE
    (b"a STORE 1 FLAGS", "a"),
    (b"a STORE 1 +FLAGS (\\Recent)", "a"),
    (b"a STORE 1 +FLAGS (\\*)", "a"),
    (b"a STORE 1 *FLAGS (\\Seen)", "a"),
    (b"a STORE 1 +FLAGS.LOUD (\\Seen)", "a"),
    (b"a STORE 1 +FLAGS (\\Seen", "a"),
    (b"a STORE 1 +FLAGS (Se(en)", "a"),
    (b"a STORE 1 (FROB 1) +FLAGS (\\Seen)", "a"),
    (b"a STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "a"),
    # SEARCH
    (b"a SEARCH", "a"),
    (b"a SEARCH FROB", "a"),
    (b"a SEARCH (SEEN", "a"),
    (b"a SEARCH SEEN)", "a"),
    (b"a SEARCH ()", "a"),
    (b"a SEARCH OR SEEN", "a"),
    (b"a SEARCH NOT", "a"),
    (b"a SEARCH FROM", "a"),
    (b"a SEARCH SINCE 1-Foo-2020", "a"),
    (b"a SEARCH SINCE 31-Feb-2020", "a"),
    (b"a SEARCH SINCE 2020-01-01", "a"),
    (b'a SEARCH SINCE "1-Jan-2020', "a"),
    (b"a SEARCH LARGER x", "a"),
    (b'a SEARCH HEADER "Bad:Name" x', "a"),
    (b"a SEARCH UID", "a"),
    (b"a SEARCH RETURN (FROB) ALL", "a"),
    (b"a SEARCH RETURN ALL", "a"),
    (b"a SEARCH CHARSET UTF-8", "a"),
    (b"a SEARCH CHARSET US-ASCII SUBJECT {2}\r\n\xc3\xa4\r\n", "a"),
    (b"a SEARCH CHARSET UTF-8 SUBJECT {1}\r\n\xff\r\n", "a"),
    (b'a SEARCH MODSEQ "/flags/x" frob 5', "a"),
    (b"a SEARCH OLDER 0", "a"),
    (b"a SEARCH BEFORE 1-Jan-4294967295", "a"),  # a year past the C int
    (b"a SORT (DATE) ALL", "a"),
    (b"a SORT (FROB) UTF-8 ALL", "a"),
    (b"a SORT () UTF-8 ALL", "a"),
    (b"a SORT (REVERSE) UTF-8 ALL", "a"),
    (b"a SORT DATE UTF-8 ALL", "a"),
    (b"a THREAD FROB UTF-8 ALL", "a"),
    (b"a THREAD REFERENCES UTF-8", "a"),
    # APPEND
    (b"a APPEND INBOX", "a"),
    (b"a APPEND INBOX (\\Seen)", "a"),
    (b'a APPEND INBOX "hello"', "a"),
    (b'a APPEND INBOX "32-Feb-1994 21:52:25 -0800" {1}\r\nx\r\n', "a"),
    (b"a APPEND INBOX (\\Recent) {1}\r\nx\r\n", "a"),
    (b"a APPEND INBOX {1}\r\nx junk\r\n", "a"),
    (b"a APPEND INBOX UTF8 ({1}\r\nx)\r\n", "a"),
    (b"a APPEND INBOX UTF8 (~{1}\r\nx\r\n", "a"),
]


@pytest.mark.parametrize(("wire", "tag"), BAD, ids=[w[:50].decode("latin-1") for w, _ in BAD])
def test_bad_commands(wire, tag):
    with pytest.raises(ParseError) as info:
        parse_wire(wire)
    err = info.value
    assert err.tag == tag
    assert err.message
    line = err.response()
    assert line.startswith(f"{tag or '*'} ".encode())
    assert line.endswith(b"\r\n") and b"\r" not in line[:-2] and b"\n" not in line[:-2]
    assert line.isascii()


def test_unsupported_charset_is_no_badcharset():
    with pytest.raises(ParseError) as info:
        parse_wire(b"a SEARCH CHARSET KOI8-R ALL")
    assert info.value.status == "NO"
    assert info.value.response() == b"a NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset\r\n"


def test_error_text_does_not_echo_control_characters():
    with pytest.raises(ParseError) as info:
        parse_wire(b"a FETCH 1 BODY[\x01\x7f\xff]")
    assert info.value.response().isascii()


# ---------------------------------------------------------------------------------------------
# Literals and the command buffer


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a LOGIN {5}", LiteralAnnouncement(5, False, False)),
        (b"a LOGIN {5}\r\n", LiteralAnnouncement(5, False, False)),
        (b"a APPEND INBOX {1024+}", LiteralAnnouncement(1024, True, False)),
        (b"a APPEND INBOX ~{12}", LiteralAnnouncement(12, False, True)),
        (b"a APPEND INBOX ~{12+}", LiteralAnnouncement(12, True, True)),
        (b"{0}", LiteralAnnouncement(0, False, False)),
        (b"a LOGIN {5", None),
        (b"a LOGIN {}", None),
        (b"a LOGIN {-5}", None),
        (b'a LOGIN "{5}"', None),
        (b"a LOGIN {5} ", None),
        (b"a LOGIN {5+1}", None),
        (b"a NOOP", None),
        (b"", None),
        (b"a LOGIN {123456789012345678901}", None),
    ],
)
def test_literal_announcement(line, expected):
    assert literal_announcement(line) == expected


def test_command_buffer_flow():
    buf = CommandBuffer()
    assert buf.add_line(b"a1 LOGIN {5}\r\n") == LiteralAnnouncement(5, False, False)
    buf.add_literal(b"alice")
    assert buf.add_line(b" {6+}") == LiteralAnnouncement(6, True, False)
    buf.add_literal(b"secret")
    assert buf.add_line(b"") is None
    assert buf.parse() == Command("a1", "LOGIN", Login("alice", "secret"))


def test_command_buffer_limits():
    limits = Limits(max_line=50, max_literal=10, max_append=100, max_command=200)
    with pytest.raises(ParseError) as info:
        CommandBuffer(limits).add_line(b"a7 NOOP " + b"x" * 60)
    assert info.value.tag == "a7" and "too long" in info.value.message

    with pytest.raises(ParseError) as info:
        CommandBuffer(limits).add_line(b"a8 LOGIN {11}")
    assert info.value.tag == "a8"
    assert info.value.literal == LiteralAnnouncement(11, False, False)

    with pytest.raises(ParseError) as info:
        CommandBuffer(limits).add_line(b"a9 APPEND INBOX {101+}")
    assert info.value.code == "TOOBIG"
    assert info.value.literal == LiteralAnnouncement(101, True, False)
    assert info.value.response() == b"a9 NO [TOOBIG] Message over the APPENDLIMIT of 100 bytes\r\n"

    buf = CommandBuffer(limits)
    assert buf.add_line(b"a APPEND INBOX {100}")  # APPEND has its own limit
    buf.add_literal(b"x" * 100)
    assert buf.add_line(b"") is None

    buf = CommandBuffer(limits)
    with pytest.raises(ParseError):
        for _ in range(30):
            buf.add_line(b"a SEARCH SUBJECT {10}")
            buf.add_literal(b"x" * 10)

    buf = CommandBuffer(Limits(max_literals=3))
    with pytest.raises(ParseError, match="Too many literals"):
        for _ in range(5):
            buf.add_line(b"a APPEND INBOX {1}")
            buf.add_literal(b"x")


def test_command_buffer_misuse_is_parse_error():
    buf = CommandBuffer()
    buf.add_line(b"a LOGIN {5}")
    with pytest.raises(ParseError):
        buf.add_literal(b"abc")  # shorter than announced
    with pytest.raises(ParseError):
        buf.add_line(b"more")  # the literal is still expected
    with pytest.raises(ParseError):
        buf.parse()


@pytest.mark.parametrize(
    "parts",
    [
        [b"a LOGIN {5}", Literal(b"abc"), b" x"],  # lying literal
        [b"a LOGIN {5}"],  # literal never sent
        [b"a LOGIN {5}", b" x"],
        [b"a LOGIN x", Literal(b"abc")],  # literal not announced
        [Literal(b"x")],
        [],
        [b"a LOGIN {1}", Literal(b"a"), Literal(b"b")],
    ],
)
def test_parts_that_do_not_fit(parts):
    with pytest.raises(ParseError):
        parse_command(parts)


def test_parse_wire_checks_literal_length_and_trailing_data():
    with pytest.raises(ParseError):
        parse_wire(b"a LOGIN {50}\r\nshort\r\n")
    with pytest.raises(ParseError):
        parse_wire(b"a NOOP\r\nb NOOP\r\n")


def test_eight_bit_quoted_search_strings_need_a_charset():
    cmd = parse_wire(b'a SEARCH CHARSET UTF-8 SUBJECT "Gr\xc3\xbc\xc3\x9fe"')
    assert cmd.args.key == SearchHeader("subject", "Grüße")
    cmd = parse_wire(b'a SEARCH CHARSET ISO-8859-1 FROM "J\xfcrgen"')
    assert cmd.args.key == SearchHeader("from", "Jürgen")
    with pytest.raises(ParseError):
        parse_wire(b'a SEARCH SUBJECT "Gr\xc3\xbc\xc3\x9fe"')


def test_sasl_response():
    assert sasl_response(b"AGFsaWNlAHNlY3JldA==\r\n") == b"\0alice\0secret"
    assert sasl_response(b"") == b""
    assert sasl_response(b"*") is None
    with pytest.raises(ParseError):
        sasl_response(b"not base64!")


def test_is_done():
    assert is_done(b"DONE\r\n") and is_done(b"done") and not is_done(b"a NOOP")


# ---------------------------------------------------------------------------------------------
# Limits on nesting and sizes


def test_nesting_limits():
    deep = b"a SEARCH " + b"(" * 150 + b"ALL" + b")" * 150
    with pytest.raises(ParseError, match="nested"):
        parse_command(deep)
    ok = b"a SEARCH " + b"(" * 50 + b"ALL" + b")" * 50
    assert parse_command(ok).args.key == SearchAll()
    nots = b"a SEARCH " + b"NOT " * 5000 + b"ALL"
    with pytest.raises(ParseError):
        parse_command(nots)
    ors = b"a SEARCH " + b"OR ALL " * 5000 + b"ALL"
    with pytest.raises(ParseError):
        parse_command(ors)
    with pytest.raises(ParseError):
        parse_command(b"a SEARCH " + b"(" * 100_000)


def test_sequence_set_range_limit():
    many = ",".join(str(i) for i in range(1, 10_002)).encode()
    with pytest.raises(ParseError, match="Too many ranges"):
        parse_command(b"a FETCH " + many + b" FLAGS")
    fine = ",".join(str(i) for i in range(1, 10_001)).encode()
    assert len(parse_command(b"a FETCH " + fine + b" FLAGS").args.sequence_set.ranges) == 10_000
    with pytest.raises(ParseError):
        parse_command(b"a FETCH 1,2,3 FLAGS", limits=Limits(max_ranges=2))


# ---------------------------------------------------------------------------------------------
# Sequence sets


def test_sequence_set_resolution():
    s = S("1:4294967295")
    assert s.contains(4_000_000_000, 4_294_967_295)
    assert s.resolve(10) == [(1, 10)]
    assert s.contains(7, 10) and not s.contains(11, 10) and not s.contains(0, 10)
    assert S("5:*").expand(3) == [3]  # RFC 3501: the last message even when below 5
    assert S("*:2").expand(4) == [2, 3, 4]
    assert S("*").expand(0) == []
    assert S("3,1:2,2,10:8").expand(20) == [1, 2, 3, 8, 9, 10]
    assert S("3,1:2,2,10:8").resolve(20) == [(1, 3), (8, 10)]
    assert S("1:*").highest_explicit() == 1 and S("*").highest_explicit() == 0
    assert S("1:*").uses_star and not S("1:5").uses_star
    assert str(SequenceSet.of([1, 2, 3, 5, 7, 8])) == "1:3,5,7:8"
    assert str(SequenceSet.of([])) == ""
    with pytest.raises(ValueError):
        SequenceSet(saved=True).resolve(5)


seq_number = st.one_of(st.integers(1, 40).map(str), st.just("*"))
seq_item = st.one_of(seq_number, st.tuples(seq_number, seq_number).map(":".join))


@settings(max_examples=300, deadline=None)
@given(st.lists(seq_item, min_size=1, max_size=8).map(",".join), st.integers(0, 45))
def test_sequence_set_membership_equals_expansion(text, max_value):
    seqset = S(text, check_str=False)
    assert S(str(seqset)) == seqset
    expanded = seqset.expand(max_value)
    assert expanded == sorted(set(expanded))
    naive: set[int] = set()
    for a, b in seqset.ranges:
        lo = max_value if a is None else a
        hi = max_value if b is None else b
        lo, hi = min(lo, hi), max(lo, hi)
        naive.update(n for n in range(lo, hi + 1) if 1 <= n <= max_value)
    assert set(expanded) == naive
    member = seqset.membership(max_value)
    for n in range(0, 47):
        assert seqset.contains(n, max_value) == member(n) == (n in naive)


# ---------------------------------------------------------------------------------------------
# FETCH item names in responses


def test_header_field_duplicates_dropped_first_spelling_kept():
    cmd = parse_command(b"a FETCH 1 BODY[HEADER.FIELDS (From to FROM Subject)]")
    assert cmd.args.attributes[0].section.headers == ("From", "to", "Subject")


def test_fetch_response_names():
    cmd = parse_command(
        b'a FETCH 1 (BODY.PEEK[1.2.HEADER.FIELDS (From "X*Y")]<10.20> BINARY.PEEK[3] '
        b"BODY[] BINARY.SIZE[2] RFC822.SIZE)"
    )
    names = [a.response_name() for a in cmd.args.attributes]
    assert names == [
        'BODY[1.2.HEADER.FIELDS (From "X*Y")]<10>',
        "BINARY[3]",
        "BODY[]",
        "BINARY.SIZE[2]",
        "RFC822.SIZE",
    ]


# ---------------------------------------------------------------------------------------------
def test_error_text_never_ends_in_a_literal_announcement():
    """The text quotes the client's command; ending in its "{2}" it would announce a
    literal to the client, which then takes the next response as literal data."""
    for wire in (b"a1 ID ((- {2}\r\nab)", b"a1 FETCH 1 (FLAGS {2}\r\nab)"):
        with pytest.raises(ParseError) as info:
            parse_wire(wire)
        line = info.value.response()
        assert line.endswith(b"{2}.\r\n"), line


# Fuzzing: only ParseError, ever


def _parse_any(data: bytes, utf8: bool = False) -> None:
    limits = Limits(max_line=2000, max_literal=500, max_append=500, max_command=5000)
    try:
        parse_wire(data, utf8=utf8, limits=limits)
    except ParseError as e:
        line = e.response()
        assert line.endswith(b"\r\n") and b"\n" not in line[:-2]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_random_bytes(data, utf8):
    _parse_any(data, utf8)
    _parse_any(b"a " + data, utf8)


TOKENS = [
    b" ",
    b"(",
    b")",
    b"[",
    b"]",
    b"<",
    b">",
    b".",
    b":",
    b",",
    b"*",
    b"$",
    b"%",
    b"\\",
    b'"',
    b"{",
    b"}",
    b"~",
    b"+",
    b"-",
    b"0",
    b"1",
    b"7",
    b"42",
    b"4294967296",
    b"NIL",
    b"\r\n",
    b"{3}\r\nabc",
    b"{0}\r\n",
    b"~{2}\r\n\0\xff",
    b"{2+}\r\nxy",
    b'"quo\\"ted"',
    b"\xc3\xa4",
    b"\xff",
    b"\0",
    b"&",
    b"&-",
    b"&AOk-",
    b"INBOX",
    b"UID",
    b"FETCH",
    b"STORE",
    b"SEARCH",
    b"SORT",
    b"THREAD",
    b"SELECT",
    b"EXAMINE",
    b"LIST",
    b"LSUB",
    b"STATUS",
    b"APPEND",
    b"LOGIN",
    b"AUTHENTICATE",
    b"ID",
    b"ENABLE",
    b"COPY",
    b"MOVE",
    b"EXPUNGE",
    b"SETQUOTA",
    b"GETQUOTA",
    b"CREATE",
    b"RENAME",
    b"BODY",
    b"BODY.PEEK",
    b"BINARY",
    b"BINARY.SIZE",
    b"HEADER",
    b"HEADER.FIELDS",
    b"NOT",
    b"HEADER.FIELDS.NOT",
    b"TEXT",
    b"MIME",
    b"FLAGS",
    b"+FLAGS.SILENT",
    b"ALL",
    b"OR",
    b"SINCE",
    b"1-Jan-2020",
    b"CHARSET",
    b"UTF-8",
    b"RETURN",
    b"MODSEQ",
    b"CHANGEDSINCE",
    b"UNCHANGEDSINCE",
    b"VANISHED",
    b"QRESYNC",
    b"CONDSTORE",
    b"USE",
    b"REVERSE",
    b"DATE",
    b"REFERENCES",
    b"SUBSCRIBED",
    b"RECURSIVEMATCH",
    b"CHILDREN",
    b"MESSAGES",
    b"UTF8",
    b'"07-Feb-1994 21:52:25 -0800"',
    b"\\Seen",
    b"\\Recent",
    b"1:*",
    b"5,7:9",
]


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([b"a ", b"a UID ", b"tag1 "]),
    st.lists(st.sampled_from(TOKENS), max_size=25),
    st.booleans(),
)
def test_fuzz_token_soup(prefix, tokens, utf8):
    _parse_any(prefix + b"".join(tokens), utf8)
    _parse_any(prefix + b" ".join(tokens), utf8)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(GOOD), st.integers(0, 400), st.binary(max_size=3))
def test_fuzz_mutated_good_commands(case, position, insert):
    wire = case[0]
    position = min(position, len(wire))
    _parse_any(wire[:position] + insert + wire[position + 1 :])
    _parse_any(wire[:position])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(GOOD))
def test_parts_round_trip_through_command_buffer(case):
    wire, expected = case
    assert parse_wire(wire + b"\r\n" if not wire.endswith(b"\r\n") else wire) == expected
