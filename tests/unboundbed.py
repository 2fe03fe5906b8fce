"""A real validating DNS resolver (Debian's unbound) on loopback, in front of tests/knotbed.py.

``Unbound(tmp_path, knot, anchors=[knot.ksk("dane.test")]).start()`` writes a private
unbound.conf in tmp_path (no chroot, no user switch, no root hints, no remote control), starts
``unbound -d`` in the foreground on a free port of 127.0.0.1 and waits until it answers;
``stop()`` ends it by its PID. Every zone knot serves is a stub zone pointing at knot's port;
the zones given a trust anchor (a DNSKEY or DS master-file line) are validated, so answers from
them carry the AD bit, and any other zone is insecure (no root anchor: nothing above them is
trusted). ``test.`` is one of unbound's default local zones (RFC 6761), turned off here.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from knotbed import Knot, free_udp_tcp_port

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


def unbound_available() -> bool:
    return Path(UNBOUND).exists()


requires_unbound = pytest.mark.skipif(
    not unbound_available(), reason="unbound not installed (apt-get install unbound)"
)


class Unbound:
    def __init__(self, directory: Path, knot: Knot, anchors: Iterable[str] = ()) -> None:
        self.dir = Path(directory)
        self.knot = knot
        self.anchors = list(anchors)
        self.port = free_udp_tcp_port()
        self.proc: subprocess.Popen | None = None

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

    def start(self) -> Unbound:
        self._write()
        self.log = open(self.dir / "unbound.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [UNBOUND, "-d", "-c", str(self.dir / "unbound.conf")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        first = next(iter(self.knot.zones))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unbound exited: {(self.dir / 'unbound.log').read_text()}")
            if self._answers(first):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("unbound did not answer within 15 s")

    def _answers(self, zone: str) -> bool:
        import dns.message
        import dns.query
        import dns.rcode

        q = dns.message.make_query(f"{zone}.", "SOA")
        try:
            r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.3)
        except Exception:
            return False
        return r.rcode() == dns.rcode.NOERROR and bool(r.answer)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        with contextlib.suppress(Exception):
            self.log.close()
