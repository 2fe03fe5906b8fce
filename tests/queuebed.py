"""The queue runner's surroundings for delivery tests on loopback: config, store, pipelines, app.

``delivery_config(tmp_path, port)`` is gomail's config for a runner delivering to MX servers on
``port`` (tests/mxbed.py) with short time-outs; ``open_store(config)`` opens its store with the
local domain local.test and the user alice@local.test; ``outbound_pipelines(tmp_path, yaml,
plugins)`` loads a pipeline file; ``make_app(config, store, dns_port)`` is the app a
``QueueRunner`` runs, resolving through a DNS server on 127.0.0.1:dns_port (tests/knotbed.py,
tests/unboundbed.py). ``run_config(dns_port, port)`` is the same for a real ``gomail run``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gomail.app import App
from gomail.config import Config
from gomail.dns import Resolver
from gomail.pipeline import load_pipelines
from gomail.plugins import PluginManager
from gomail.store.sqlite import SqliteStore

LOCAL_DOMAIN = "local.test"
LOCAL_USER = "alice@local.test"


def delivery_config(
    tmp_path: Path, port: int, connect: float = 3, command: float = 5, data: float = 5
) -> Config:
    """Data in tmp_path/data, delivery to port, and the given time-outs (seconds)."""
    config = Config(data_dir=tmp_path / "data", hostname="mx.local.test")
    config.delivery_port = port
    config.delivery_connect_timeout = connect
    config.delivery_command_timeout = command
    config.delivery_data_timeout = data
    return config


async def open_store(
    config: Config,
    domains: Iterable[str] = (LOCAL_DOMAIN,),
    users: Iterable[str] = (LOCAL_USER,),
) -> SqliteStore:
    """config's store, opened, with these local domains and users (password "x")."""
    store = SqliteStore(config.data_dir)
    await store.open()
    for domain in domains:
        await store.add_domain(domain)
    for user in users:
        await store.add_user(user, "x", None)
    return store


def outbound_pipelines(tmp_path: Path, text: str, plugins: PluginManager):
    """The pipelines of a YAML text, written to tmp_path/pipelines.yaml and loaded as gomail run
    would."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(text)
    return load_pipelines(path, plugins, 30.0)


def make_app(
    config: Config,
    store: SqliteStore,
    dns_port: int,
    plugins: PluginManager | None = None,
    pipelines=None,
    dnssec: bool = False,
) -> App:
    """An app on store asking the DNS server on 127.0.0.1:dns_port (3 s time-out)."""
    dns = Resolver(["127.0.0.1"], dns_port, 3, dnssec=dnssec)
    plugins = PluginManager() if plugins is None else plugins
    return App(config, plugins, pipelines, store, dns=dns)


def run_config(dns_port: int, port: int) -> dict:
    """Config for ``gomail run`` (``Gomail.start(extra_config)`` in tests/conftest.py): DNS from
    127.0.0.1:dns_port, delivery to MX servers on port with short time-outs, and the queue
    looked at every 0.2 s, so deliveries in e2e tests take a fraction of a second."""
    return {
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": 2},
        "delivery": {
            "port": port,
            "poll_interval": 0.2,
            "connect_timeout": 5,
            "command_timeout": 5,
            "data_timeout": 5,
        },
    }
