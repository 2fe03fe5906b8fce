"""Accept every recipient and throw every message away. Entry point ``sink``.

For test servers and benchmarks (it measures the core with nothing else in the way), and
for addresses whose mail nobody reads. Put it in ``rcpt`` to accept any recipient, and in
``data`` to discard (answering 250) instead of delivering.
"""

from __future__ import annotations

from gomail import Verdict, hookimpl


@hookimpl
async def gomail_rcpt():
    return Verdict.accept()


@hookimpl
async def gomail_data():
    return Verdict.discard()
