"""The process's file-descriptor limit (RLIMIT_NOFILE), raised at start to what the
connection limits allow the server to hold.

Linux starts most processes with a soft limit of 1,024: far below 5 listeners of 1,000
connections each. Past the limit, ``accept()`` fails and the server stops answering, so
``gomail run`` raises the soft limit up to the hard one, and says once when the hard limit
is too low (systemd: ``LimitNOFILE=``; a shell: ``ulimit -Hn``).
"""

from __future__ import annotations

import logging
import resource

from gomail.config import Config

log = logging.getLogger("gomail")

# The store's database connections and blob files, log files, DNS sockets, plugins' clients.
MARGIN = 512


def descriptors_needed(config: Config, listeners: int) -> int:
    """What the limits let the server hold at once: per client connection its socket and a
    spool file (a message being received), per outbound delivery a socket and its message
    file, and a margin for the rest."""
    clients = listeners * config.limits.connections
    return 2 * clients + 2 * config.delivery_concurrency + MARGIN


def raise_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (never lower it), capped by the hard limit,
    with a warning when the hard limit is lower; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError) as exc:
                log.warning("cannot raise the open-file limit from %d: %s", soft, exc)
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "the open-file limit (RLIMIT_NOFILE) is %d, below the %d the connection limits "
            "need: past it new connections fail; raise the hard limit (systemd: "
            "LimitNOFILE=%d) or lower limits.connections",
            soft, needed, needed,
            extra={"fields": {"nofile_soft": soft, "nofile_hard": hard, "needed": needed}},
        )  # fmt: skip
    return soft
