"""A real validating DNS resolver (Debian's unbound) on loopback, in front of tests/knotbed.py.

``Unbound(tmp_path, knot, anchors=[knot.ksk("dane.test")]).start()`` writes a private
unbound.conf in tmp_path (no chroot, no user switch, no root hints, no remote control), starts
``unbound -d`` in the foreground on a free port of 127.0.0.1 and waits until it answers;
``stop()`` ends it by its PID. Every zone knot serves is a stub zone pointing at knot's port;
the zones given a trust anchor (a DNSKEY or DS master-file line) are validated, so answers from
them carry the AD bit, and any other zone is insecure (no root anchor: nothing above them is
trusted). ``test.`` is one of unbound's default local zones (RFC 6761), turned off here.
Starting, waiting and stopping are tests/daemonbed.py's, shared with knot.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from daemonbed import Daemon, program, requires
from knotbed import Knot

UNBOUND = program("unbound")
requires_unbound = requires(UNBOUND, "unbound")


class Unbound(Daemon):
    name = log_name = "unbound"

    def __init__(self, directory: Path, knot: Knot, anchors: Iterable[str] = ()) -> None:
        super().__init__(directory)
        self.knot = knot
        self.anchors = list(anchors)

    def _write(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = [
            "server:",
            f"    interface: 127.0.0.1@{self.port}",
            f"    port: {self.port}",
            "    do-ip6: no",
            "    do-daemonize: no",
            '    chroot: ""',
            '    username: ""',
            f'    directory: "{self.dir}"',
            f'    pidfile: "{self.dir / "unbound.pid"}"',
            '    logfile: ""',
            "    use-syslog: no",
            "    verbosity: 1",
            "    val-log-level: 2",
            "    num-threads: 1",
            "    so-reuseport: no",
            "    access-control: 127.0.0.0/8 allow",
            "    do-not-query-localhost: no",
            '    module-config: "validator iterator"',
            "    val-permissive-mode: no",
            "    qname-minimisation: no",
            "    harden-referral-path: no",
            "    prefetch: no",
            "    minimal-responses: no",
            '    local-zone: "test." nodefault',
            # answers are fresh for every test run; a short cache keeps tests independent
            "    cache-max-ttl: 5",
            "    cache-max-negative-ttl: 5",
        ]
        conf += [f'    trust-anchor: "{a}"' for a in self.anchors]
        conf += ["remote-control:", "    control-enable: no"]
        for zone in self.knot.zones:
            conf += [
                "stub-zone:",
                f'    name: "{zone}"',
                f"    stub-addr: 127.0.0.1@{self.knot.port}",
            ]
        (self.dir / "unbound.conf").write_text("\n".join(conf) + "\n")

    def command(self) -> list[str]:
        return [UNBOUND, "-d", "-c", str(self.dir / "unbound.conf")]

    def _ready(self) -> bool:
        return self.answers(next(iter(self.knot.zones)))
