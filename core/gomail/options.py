"""Option declarations: how a plugin says which settings it takes in a pipeline YAML."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Option:
    """One setting a plugin accepts where a pipeline uses it (``{plugin: {name: value}}``).

    ``type`` is one of bool, int, float, str, list or dict; ``choices`` restricts the value.
    An int is accepted where a float is declared. ``validate``, when given, checks what the
    type cannot say (the items of a list or dict, a range): it returns None when the value
    is good, else what is wrong, which the pipeline check reports with file and line.
    """

    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    validate: Callable[[Any], str | None] | None = None

    def check(self, value: Any) -> str | None:
        """None when value fits, else a short description of what is wrong."""
        ok_types: tuple[type, ...] = (self.type,)
        if self.type is float:
            ok_types = (int, float)
        if self.type is not bool and isinstance(value, bool):
            return f"expected {self.type.__name__}, got a boolean"
        if not isinstance(value, ok_types):
            return f"expected {self.type.__name__}, got {type(value).__name__} {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"expected one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.validate is not None:
            return self.validate(value)
        return None
