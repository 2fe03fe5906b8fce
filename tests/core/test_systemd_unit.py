"""contrib/systemd/gomail.service: systemd accepts it, and it keeps the hardening and the
open-file limit that the connection limits need."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gomail.config import Config
from gomail.fdlimit import descriptors_needed

UNIT = Path(__file__).parents[2] / "contrib" / "systemd" / "gomail.service"
INSTALLED_AT = "/opt/gomail/.venv/bin/gomail"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_hardening_and_limits():
    s = settings()
    expected = {
        "User": "gomail",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "StateDirectory": "gomail",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
        "SystemCallFilter": "@system-service",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    for key, value in expected.items():
        assert s.get(key) == [value], key
    # 5 listeners with the default limits
    assert int(s["LimitNOFILE"][0]) >= descriptors_needed(Config(), 5)
    assert s["ExecStart"][0].startswith(f"{INSTALLED_AT} --data /var/lib/gomail ")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart's program exists: point it at this environment's gomail.
    gomail = Path(sys.executable).parent / "gomail"
    if not gomail.exists():
        pytest.skip("no gomail console script next to the test interpreter")
    unit = tmp_path / "gomail.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_AT, str(gomail)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "gomail.service" in line
    ]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr
