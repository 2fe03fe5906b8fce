"""A real authoritative DNS server (Debian's knot) on loopback, for tests that need DNS.

``Knot(tmp_path, zones).start()`` writes a private knot.conf and one master file per zone in
tmp_path, starts ``knotd`` in the foreground on a free port of 127.0.0.1 and waits until it
answers; ``stop()`` ends it by its PID. Zones are ``{"dest.test": "<records>"}``: the records
are master-file lines relative to the zone (``@ MX 10 mx1``), SOA and NS are added.

``Knot(tmp_path, zones, signed={"dane.test"})`` has knot sign those zones itself (DNSSEC,
automatic ECDSA P-256 keys); ``ksk(zone)`` is then the zone's key-signing DNSKEY as a master-file
line, the trust anchor a validating resolver needs (see tests/unboundbed.py).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"


def free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def knot_available() -> bool:
    return Path(KNOTD).exists()


requires_knot = pytest.mark.skipif(
    not knot_available(), reason="knotd not installed (apt-get install knot)"
)


class Knot:
    def __init__(self, directory: Path, zones: dict[str, str], signed: Iterable[str] = ()) -> None:
        self.dir = Path(directory)
        self.zones = zones
        self.signed = set(signed)
        self.port = free_udp_tcp_port()
        self.proc: subprocess.Popen | None = None

    def _write(self) -> None:
        zdir = self.dir / "zones"
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        zdir.mkdir(parents=True, exist_ok=True)
        conf = [
            "server:",
            f'    rundir: "{self.dir / "run"}"',
            f"    listen: 127.0.0.1@{self.port}",
            "    udp-workers: 1",
            "    tcp-workers: 1",
            "    background-workers: 1",
            "database:",
            f'    storage: "{self.dir / "db"}"',
            "log:",
            "  - target: stderr",
            "    any: warning",
            "template:",
            "  - id: default",
            f'    storage: "{zdir}"',
            '    file: "%s.zone"',
            "    zonefile-sync: -1",
            "    journal-content: none",
            "zone:",
        ]
        for name, records in self.zones.items():
            conf.append(f"  - domain: {name}")
            if name in self.signed:
                conf.append("    dnssec-signing: on")
            (zdir / f"{name}.zone").write_text(
                f"$ORIGIN {name}.\n$TTL 60\n"
                f"@ SOA ns.{name}. hostmaster.{name}. 1 3600 600 86400 60\n"
                f"@ NS ns.{name}.\n"
                f"ns A 127.0.0.1\n{records}\n"
            )
        (self.dir / "knot.conf").write_text("\n".join(conf) + "\n")

    def start(self) -> Knot:
        self._write()
        self.log = open(self.dir / "knot.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [KNOTD, "-c", str(self.dir / "knot.conf")], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        first = next(iter(self.zones))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"knotd exited: {(self.dir / 'knot.log').read_text()}")
            if self._answers(first) and all(self._signed(z) for z in self.signed):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("knotd did not answer within 15 s")

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

    def _signed(self, zone: str) -> bool:
        return bool(self.dnskeys(zone))

    def dnskeys(self, zone: str) -> list[str]:
        """The zone's DNSKEY records as served, as master-file lines ([] before it is signed)."""
        import dns.message
        import dns.query
        import dns.rdatatype

        q = dns.message.make_query(f"{zone}.", "DNSKEY", want_dnssec=True)
        try:
            r = dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=1)
        except Exception:
            return []
        rrset = r.get_rrset(r.answer, q.question[0].name, 1, dns.rdatatype.DNSKEY)
        return [f"{zone}. DNSKEY {rd.to_text()}" for rd in rrset or ()]

    def ksk(self, zone: str) -> str:
        """The key-signing key (flags 257) of a signed zone, as a master-file line."""
        return next(k for k in self.dnskeys(zone) if k.split()[2] == "257")

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
