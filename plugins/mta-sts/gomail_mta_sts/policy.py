"""The MTA-STS formats (RFC 8461): the ``_mta-sts`` TXT record, the policy file, MX patterns.

Pure functions without I/O, so that they are tested without daemons.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

VERSION = "STSv1"
MODES = ("enforce", "testing", "none")
MAX_AGE_LIMIT = 31_557_600  # seconds (a year), RFC 8461 3.2
MAX_POLICY_SIZE = 64 * 1024  # bytes of the policy file we read at most (RFC 8461 3.3)

_TXT_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_TXT_FIELD = re.compile(r"[A-Za-z0-9_.-]+=[\x21-\x3a\x3c\x3e-\x7e]{1,}")
_MAX_AGE = re.compile(r"[0-9]{1,10}")
# an MX pattern: a host name, or "*." and a host name (RFC 8461 3.2, "sts-policy-mx-value")
_LABEL = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?")


class PolicyError(ValueError):
    """A TXT record or policy file that does not follow RFC 8461; the text says why."""


def txt_id(records: list[str]) -> str | None:
    """The policy id the domain's ``_mta-sts`` TXT records announce, or None when there is no
    usable announcement: records not starting with ``v=STSv1;`` are ignored, and anything but
    exactly one valid record left means no policy (RFC 8461 3.1)."""
    sts = [r for r in records if r.startswith("v=STSv1;") or r == "v=STSv1"]
    if len(sts) != 1:
        return None
    try:
        return parse_txt(sts[0])
    except PolicyError:
        return None


def parse_txt(record: str) -> str:
    """The id of one ``v=STSv1; id=...;`` record; PolicyError when it is malformed."""
    fields = [f.strip(" \t") for f in record.split(";")]
    if fields and fields[-1] == "":
        fields.pop()  # a trailing ";" is allowed
    if not fields or fields[0] != "v=STSv1":
        raise PolicyError(f"TXT record does not start with v=STSv1: {record!r}")
    found: str | None = None
    for field in fields[1:]:
        if not _TXT_FIELD.fullmatch(field):
            raise PolicyError(f"TXT record has a malformed field {field!r}")
        key, _, value = field.partition("=")
        if key == "id" and found is None:
            if not _TXT_ID.fullmatch(value):
                raise PolicyError(f"TXT record's id is not 1-32 letters or digits: {value!r}")
            found = value
    if found is None:
        raise PolicyError(f"TXT record has no id: {record!r}")
    return found


@dataclass(frozen=True, slots=True)
class Policy:
    """A domain's MTA-STS policy: ``id`` is the TXT record's id it was fetched under,
    ``fetched`` the Unix time of the fetch; it is valid until ``fetched + max_age``."""

    id: str
    mode: str
    mx: tuple[str, ...]
    max_age: int
    fetched: float

    @property
    def expires(self) -> float:
        return self.fetched + self.max_age

    def allows(self, host: str) -> bool:
        """Does one of the policy's MX patterns match host?"""
        return any(mx_matches(p, host) for p in self.mx)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "mode": self.mode,
                "mx": list(self.mx),
                "max_age": self.max_age,
                "fetched": self.fetched,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Policy:
        """The policy :meth:`to_json` wrote; PolicyError when text is not one."""
        try:
            d = json.loads(text)
            policy = cls(
                str(d["id"]),
                str(d["mode"]),
                tuple(str(p) for p in d["mx"]),
                int(d["max_age"]),
                float(d["fetched"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PolicyError(f"stored policy unreadable: {exc}") from None
        if policy.mode not in MODES:
            raise PolicyError(f"stored policy has mode {policy.mode!r}")
        return policy


def parse_policy(text: str, policy_id: str, fetched: float) -> Policy:
    """The policy in a policy file's text (RFC 8461 3.2); PolicyError when it is not valid.

    Lines end in CRLF or LF; each is ``key: value``. The first ``version``, ``mode`` and
    ``max_age`` count; every ``mx`` line adds a pattern; unknown keys are ignored."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"policy line without a colon: {line[:80]!r}")
        key, value = key.strip(), value.strip(" \t")
        if key == "mx":
            if not _MX_PATTERN.fullmatch(value):
                raise PolicyError(f"policy has a malformed mx pattern {value[:80]!r}")
            mx.append(value.rstrip(".").lower())
        else:
            fields.setdefault(key, value)
    if fields.get("version") != VERSION:
        raise PolicyError(f"policy version is {fields.get('version')!r}, not {VERSION}")
    mode = fields.get("mode")
    if mode not in MODES:
        raise PolicyError(f"policy mode is {mode!r}, not one of {', '.join(MODES)}")
    max_age_text = fields.get("max_age")
    if max_age_text is None or not _MAX_AGE.fullmatch(max_age_text):
        raise PolicyError(f"policy max_age is {max_age_text!r}, not a number of seconds")
    max_age = int(max_age_text)
    if max_age > MAX_AGE_LIMIT:
        raise PolicyError(f"policy max_age {max_age} is over {MAX_AGE_LIMIT}")
    if not mx and mode != "none":
        raise PolicyError(f"policy in mode {mode} names no mx")
    return Policy(policy_id, mode, tuple(mx), max_age, fetched)


def mx_matches(pattern: str, host: str) -> bool:
    """Does MX host name ``host`` match policy pattern ``pattern``? Case does not matter; a
    ``*.`` pattern stands for exactly one label (``*.example.com`` matches
    ``mx.example.com``, not ``example.com`` nor ``a.mx.example.com``), RFC 8461 4.1."""
    pattern = pattern.rstrip(".").lower()
    host = host.rstrip(".").lower()
    if not pattern or not host:
        return False
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return host == pattern
