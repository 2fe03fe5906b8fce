"""gomail.limits and the ``limits:`` section of the config file."""

from __future__ import annotations

import pytest
from gomail.config import load_config
from gomail.limits import ConnectionLimiter, KeyedCounter, SlidingCount
from gomail.yamlfile import ConfigError


def test_connection_limiter_counts_total_and_per_address():
    lim = ConnectionLimiter(total=3, per_ip=2)
    assert lim.admit("192.0.2.1") is None
    assert lim.admit("192.0.2.1") is None
    assert "your address" in lim.admit("192.0.2.1")
    # another host in the same IPv6 /64 is the same client; a different /64 is not
    assert lim.admit("2001:db8::1") is None
    assert "too many connections" in lim.admit("2001:db8:1::1")
    lim.release("192.0.2.1")
    assert lim.admit("2001:db8::2") is None
    assert lim.admit("2001:db8::3") is not None  # total reached again
    assert lim.open == 3


def test_keyed_counter_forgets_released_keys():
    c = KeyedCounter(1)
    assert c.acquire("a") and not c.acquire("a")
    c.release("a")
    assert c.count("a") == 0 and c.acquire("a")


def test_sliding_count_ages_events_out():
    s = SlidingCount(window=10)
    assert s.add("k", now=0) == 1
    assert s.add("k", now=5) == 2
    assert s.count("k", now=12) == 1
    assert s.count("k", now=20) == 0


def test_limits_section_is_checked(tmp_path):
    cfg_file = tmp_path / "gomail.yaml"
    cfg_file.write_text("limits:\n  connections_per_ip: 3\n  smtp_error_delay: 0.5\n")
    cfg = load_config(cfg_file)
    assert cfg.limits.connections_per_ip == 3 and cfg.limits.smtp_error_delay == 0.5
    cfg_file.write_text("limits:\n  connection: 3\n")
    with pytest.raises(ConfigError, match="unknown setting limits.connection"):
        load_config(cfg_file)
    cfg_file.write_text("limits:\n  connections: 'many'\n")
    with pytest.raises(ConfigError, match="wrong type"):
        load_config(cfg_file)
    cfg_file.write_text("limits:\n  smtp_soft_error_limit: 30\n")
    with pytest.raises(ConfigError, match="above the hard limit"):
        load_config(cfg_file)
