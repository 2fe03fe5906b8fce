"""A real authoritative DNS server (Debian's knot) on loopback, for tests that need DNS.

``Knot(tmp_path, zones).start()`` writes a private knot.conf and one master file per zone in
tmp_path, starts ``knotd`` in the foreground on a free port of 127.0.0.1 and waits until it
answers; ``stop()`` ends it by its PID. Zones are ``{"dest.test": "<records>"}``: the records
are master-file lines relative to the zone (``@ MX 10 mx1``), SOA and NS are added.

``Knot(tmp_path, zones, signed={"dane.test"})`` has knot sign those zones itself (DNSSEC,
automatic ECDSA P-256 keys); ``ksk(zone)`` is then the zone's key-signing DNSKEY as a master-file
line, the trust anchor a validating resolver needs (see tests/unboundbed.py).

In a test module, ``knot = knot_fixture(ZONES)`` is a module-scoped fixture ``knot``: one such
server for the module's tests; ``with Knot(tmp_path, zones).start() as knot:`` is one for a
block.

Finding knotd, starting, waiting and stopping are tests/daemonbed.py's, shared with unbound.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from daemonbed import Daemon, program, requires

KNOTD = program("knotd")
requires_knot = requires(KNOTD, "knot")


def knot_fixture(zones: dict[str, str]):
    """A module-scoped fixture: knot serving zones, started once for the module's tests."""

    @pytest.fixture(scope="module")
    def knot(tmp_path_factory) -> Iterator[Knot]:
        with Knot(tmp_path_factory.mktemp("knot"), zones).start() as server:
            yield server

    return knot


class Knot(Daemon):
    name, log_name = "knotd", "knot"

    def __init__(self, directory: Path, zones: dict[str, str], signed: Iterable[str] = ()) -> None:
        super().__init__(directory)
        self.zones = zones
        self.signed = set(signed)

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

    def command(self) -> list[str]:
        return [KNOTD, "-c", str(self.dir / "knot.conf")]

    def _ready(self) -> bool:
        first = next(iter(self.zones))
        return self.answers(first) and all(self._signed(z) for z in self.signed)

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
