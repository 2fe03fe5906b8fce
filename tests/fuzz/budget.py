"""How long the fuzz tests run: bounded for CI, longer on demand.

Every fuzz test takes its ``settings`` from :func:`fuzz_settings` with the number of
examples it runs in CI (chosen so that the whole of tests/fuzz takes well under a minute on
a two-core machine). CI runs derandomized (the same examples every time, so a failure is
reproducible) and keeps no example database.

To fuzz longer locally, multiply the example counts and let hypothesis pick new examples::

    GOMAIL_FUZZ_SCALE=50 uv run pytest -q tests/fuzz

(any scale other than 1 also turns derandomization off, so each run tries new examples;
pytest's ``--hypothesis-seed=N`` repeats one such run).
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("GOMAIL_FUZZ_SCALE", "1"))

# A generous per-example deadline: the machine is shared, so only a pathological example
# (super-linear work on a small input) should reach it.
DEADLINE = timedelta(seconds=5)


def fuzz_settings(examples: int, *, deadline: timedelta | None = DEADLINE) -> settings:
    """Settings for a fuzz test that runs ``examples`` examples in CI."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=deadline,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
