"""LIST and LSUB mailbox patterns (RFC 3501 6.3.8), matched in linear time.

``*`` matches any run of characters, ``%`` any run without the hierarchy delimiter. A regex
with ``.*`` per star backtracks exponentially on names that almost match (``*****…x``), so a
pattern is compiled into a small automaton instead and simulated with a set of states held
as the bits of one integer (shift-and): each character of a name costs a handful of integer
operations on ``len(pattern)`` bits, never a search through alternatives. Several patterns
(LIST-EXTENDED) share one automaton, so a name is read once whatever their number.

Cost of :meth:`PatternSet.matches`: O(len(name) × ⌈bits/64⌉), bits being the total length of
the patterns, which :data:`MAX_PATTERN` caps: about 0.3 µs a character of the name at most.
"""

from __future__ import annotations

from gomail.store import HIERARCHY_DELIMITER

MAX_PATTERN = 1024  # bytes (UTF-8) of the patterns of one command, each with the reference
MAX_PATTERNS = 64  # patterns in one LIST command


class PatternTooLong(ValueError):
    """A pattern (or a list of them) over the limits; its text is for the client."""


def join_reference(reference: str, pattern: str) -> str:
    """The pattern a LIST ``reference`` and ``pattern`` stand for, INBOX made canonical
    (``inbox/%`` and ``Inbox*`` are ``INBOX/%`` and ``INBOX*``)."""
    if (
        reference
        and pattern.startswith(HIERARCHY_DELIMITER)
        and reference.endswith(HIERARCHY_DELIMITER)
    ):
        pattern = pattern[1:]
    pattern = reference + pattern
    if pattern[:5].upper() == "INBOX" and pattern[5:6] in ("", HIERARCHY_DELIMITER, "*", "%"):
        pattern = "INBOX" + pattern[5:]
    return pattern


def tokens(pattern: str) -> list[str]:
    """The pattern as characters and wildcards, each run of wildcards folded into one: ``*``
    if it holds a ``*`` (``%*`` matches what ``*`` does), else ``%``. No two wildcards are
    then adjacent, which the automaton relies on."""
    out: list[str] = []
    for ch in pattern:
        if ch in "*%" and out and out[-1] in "*%":
            if ch == "*":
                out[-1] = "*"
            continue
        out.append(ch)
    return out


class PatternSet:
    """One or more patterns; :meth:`matches` is true when a name matches any of them.

    State bit ``offset + i`` means "the first i tokens of that pattern have matched". A
    character moves a literal's bit one up when it is that literal, keeps a wildcard's bit
    (``%`` unless it is the delimiter), and then every wildcard's bit also sets the next one
    (a wildcard may match nothing). The bit past a pattern's last token accepts; no token
    sits there, so nothing carries over into the next pattern's bits.
    """

    def __init__(self, patterns: list[str]) -> None:
        if len(patterns) > MAX_PATTERNS:
            raise PatternTooLong(f"Too many patterns (more than {MAX_PATTERNS})")
        self.exact: set[str] = set()  # patterns without wildcards: compared as strings
        self.everything = False  # a pattern that is just "*"
        self.start = 0
        self.accept = 0
        self.stars = 0
        self.percents = 0
        self.literals: dict[str, int] = {}
        if sum(len(p.encode("utf-8", "surrogatepass")) for p in patterns) > MAX_PATTERN:
            raise PatternTooLong(f"Pattern too long (more than {MAX_PATTERN} bytes)")
        offset = 0
        for pattern in patterns:
            toks = tokens(pattern)
            if toks == ["*"]:
                self.everything = True
            if "*" not in toks and "%" not in toks:
                self.exact.add(pattern)
                continue
            self.start |= 1 << offset
            for i, tok in enumerate(toks):
                bit = 1 << (offset + i)
                if tok == "*":
                    self.stars |= bit
                elif tok == "%":
                    self.percents |= bit
                else:
                    self.literals[tok] = self.literals.get(tok, 0) | bit
            offset += len(toks)
            self.accept |= 1 << offset
            offset += 1
        self.wild = self.stars | self.percents

    def matches(self, name: str) -> bool:
        if self.everything or name in self.exact:
            return True
        state = self.start
        if not state:
            return False
        wild = self.wild
        stars = self.stars
        percents = self.percents
        literals = self.literals
        state |= (state & wild) << 1
        for ch in name:
            step = ((state & literals.get(ch, 0)) << 1) | (state & stars)
            if ch != HIERARCHY_DELIMITER:
                step |= state & percents
            if not step:
                return False
            state = step | ((step & wild) << 1)
        return bool(state & self.accept)


def compile_list(reference: str, patterns: tuple[str, ...] | list[str]) -> PatternSet:
    """The PatternSet for a LIST/LSUB command's reference and patterns."""
    return PatternSet([join_reference(reference, p) for p in patterns])
