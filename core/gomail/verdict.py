"""Verdicts: what a pipeline stage decides about a session, a recipient or a message."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    """What the core does with a verdict.

    CONTINUE lets the next plugin of the stage run; every other action ends the stage.
    """

    CONTINUE = "continue"
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCARD = "discard"
    QUARANTINE = "quarantine"


_DEFAULTS: dict[Action, tuple[int, str, str]] = {
    Action.CONTINUE: (250, "2.0.0", "OK"),
    Action.ACCEPT: (250, "2.0.0", "OK"),
    Action.REJECT: (550, "5.7.1", "Rejected by policy"),
    Action.TEMPFAIL: (451, "4.3.0", "Temporary failure, try again later"),
    Action.DISCARD: (250, "2.0.0", "OK"),
    Action.QUARANTINE: (250, "2.0.0", "OK"),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """A stage's decision, with the SMTP reply that goes with it.

    Build one with the class methods, e.g. ``Verdict.reject(550, "5.7.1", "No thanks")``.
    ``plugin`` names the plugin that decided; the engine fills it in.
    """

    action: Action
    code: int
    enhanced: str
    text: str
    plugin: str | None = None

    @classmethod
    def make(
        cls,
        action: Action | str,
        code: int | None = None,
        enhanced: str | None = None,
        text: str | None = None,
    ) -> Verdict:
        action = Action(action)
        d_code, d_enh, d_text = _DEFAULTS[action]
        code = d_code if code is None else int(code)
        enhanced = d_enh if enhanced is None else enhanced
        if action is Action.REJECT and not 500 <= code <= 599:
            raise ValueError(f"a reject needs a 5xx code, not {code}")
        if action is Action.TEMPFAIL and not 400 <= code <= 499:
            raise ValueError(f"a tempfail needs a 4xx code, not {code}")
        if enhanced[0] != str(code)[0]:
            raise ValueError(f"enhanced code {enhanced} does not match reply code {code}")
        return cls(action, code, enhanced, d_text if text is None else text)

    @classmethod
    def continue_(cls) -> Verdict:
        return CONTINUE

    @classmethod
    def accept(cls, text: str | None = None) -> Verdict:
        return cls.make(Action.ACCEPT, text=text)

    @classmethod
    def reject(cls, code: int = 550, enhanced: str = "5.7.1", text: str | None = None) -> Verdict:
        return cls.make(Action.REJECT, code, enhanced, text)

    @classmethod
    def tempfail(cls, code: int = 451, enhanced: str = "4.3.0", text: str | None = None) -> Verdict:
        return cls.make(Action.TEMPFAIL, code, enhanced, text)

    @classmethod
    def discard(cls, text: str | None = None) -> Verdict:
        return cls.make(Action.DISCARD, text=text)

    @classmethod
    def quarantine(cls, text: str | None = None) -> Verdict:
        return cls.make(Action.QUARANTINE, text=text)

    @property
    def ends_stage(self) -> bool:
        return self.action is not Action.CONTINUE

    @property
    def is_failure(self) -> bool:
        return self.action in (Action.REJECT, Action.TEMPFAIL)

    def smtp_reply(self) -> str:
        """The reply line(s) for this verdict, with the enhanced status code on each line."""
        lines = self.text.splitlines() or [""]
        out = []
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            out.append(f"{self.code}{sep}{self.enhanced} {line}")
        return "\r\n".join(out)

    def by(self, plugin: str) -> Verdict:
        """The same verdict, recorded as decided by ``plugin``."""
        return Verdict(self.action, self.code, self.enhanced, self.text, plugin)


CONTINUE = Verdict(Action.CONTINUE, 250, "2.0.0", "OK")
