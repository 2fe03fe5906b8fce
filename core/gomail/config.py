"""Server settings: embedded defaults, overridden by a YAML file and then the command line."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gomail.address import normalize_domain
from gomail.yamlfile import ConfigError, LineDict, line_of, load_yaml

STOCK_PIPELINE = "default.yaml"

# Keys a config file may hold, with their types (for a clear error on anything else).
_KEYS: dict[str, tuple[type, ...]] = {
    "hostname": (str,),
    "data": (str,),
    "max_message_size": (int,),
    "blob_inline_max": (int,),
    "pipeline": (str,),
    "listen": (dict,),
    "tls": (dict,),
    "log_format": (str,),
    "plugin_timeout": (int, float),
    "max_line_length": (int,),
    "max_recipients": (int,),
    "login_max_failures": (int,),
    "login_window": (int, float),
    "dns": (dict,),
    "delivery": (dict,),
    "srs": (dict,),
    "limits": (dict,),
}

# dns: {key: types}
_DNS_KEYS: dict[str, tuple[type, ...]] = {
    "nameservers": (list,),
    "port": (int,),
    "timeout": (int, float),
    "cache": (bool,),
    "dnssec": (bool,),
}
# delivery: {key: (Config attribute, types)}; times in seconds
_DELIVERY_KEYS: dict[str, tuple[str, tuple[type, ...]]] = {
    "port": ("delivery_port", (int,)),
    "concurrency": ("delivery_concurrency", (int,)),
    "per_domain": ("delivery_per_domain", (int,)),
    "connect_timeout": ("delivery_connect_timeout", (int, float)),
    "command_timeout": ("delivery_command_timeout", (int, float)),
    "data_timeout": ("delivery_data_timeout", (int, float)),
    "retry": ("delivery_retry", (list,)),
    "max_age": ("delivery_max_age", (int, float)),
    "delay_notice": ("delivery_delay_notice", (int, float)),
    "poll_interval": ("delivery_poll_interval", (int, float)),
    "smarthost": ("delivery_smarthost", (dict,)),
    "smarthosts": ("delivery_smarthosts", (dict,)),
}
# delivery.smarthost (and each delivery.smarthosts entry): {key: types}
_SMARTHOST_KEYS: dict[str, tuple[type, ...]] = {
    "host": (str,),
    "port": (int,),
    "tls": (str,),
    "tls_verify": (bool,),
    "username": (str,),
    "password_file": (str,),
}
SMARTHOST_TLS = ("starttls", "implicit", "none")
# srs: {key: types} (gomail.srs)
_SRS_KEYS: dict[str, tuple[type, ...]] = {
    "rewrite": (bool,),
    "secret_file": (str,),
    "domain": (str,),
    "max_age_days": (int,),
}


@dataclass
class Limits:
    """What one client may cost the server (the ``limits:`` section); see gomail.limits.

    Connection counts are per listener; a client address is an IPv4 address or an IPv6 /64.
    """

    connections: int = 1000  # concurrent connections on one listener, all clients
    connections_per_ip: int = 50  # concurrent connections on one listener from one address
    # logged-in IMAP sessions of one user from one address, all IMAP listeners (Dovecot: 10)
    imap_sessions_per_user_ip: int = 10
    # SMTP errors in a session (Postfix's smtpd_*_error_limit): past the soft limit every
    # reply waits error_delay seconds more; at the hard limit the session is closed (421).
    smtp_soft_error_limit: int = 10
    smtp_hard_error_limit: int = 20
    smtp_error_delay: float = 1.0
    # NOOP, RSET, VRFY, EXPN, HELP in a session before each one counts as an error
    smtp_junk_command_limit: int = 100
    # RCPTs refused as unknown users: per session, then the session is closed; and per
    # client address within unknown_recipients_window seconds, after which RCPT gets 4xx
    unknown_recipients_per_session: int = 20
    unknown_recipients_per_ip: int = 100
    unknown_recipients_window: float = 3600.0
    # the SMTP command timeout (instead of 300 s) while a listener holds 3/4 of its
    # connections: idle and slow-drip clients are dropped first (Postfix's stress timeout)
    smtp_stress_timeout: float = 10.0
    # seconds a client of an implicit-TLS listener (465, 993) has to finish its handshake;
    # handshakes in progress count against the connection limits above too
    tls_handshake_timeout: float = 15.0
    # a message being received (SMTP DATA or BDAT, an IMAP literal) goes to a file under
    # DATA/spool past this size
    spool_threshold: int = 1024 * 1024
    # messages past spool_threshold processed (held in memory) at once, SMTP and IMAP APPEND
    # together; the others wait, on disk, for their turn
    large_messages_at_once: int = 2


# limits: {key: types}
_LIMITS_KEYS: dict[str, tuple[type, ...]] = {
    name: ((int, float) if isinstance(default, float) else (int,))
    for name, default in vars(Limits()).items()
}


@dataclass(frozen=True)
class Smarthost:
    """A relay that takes mail instead of the destination's MX (delivery.smarthost[s])."""

    host: str
    port: int = 587
    tls: str = "starttls"  # starttls (required) | implicit | none
    tls_verify: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed or logged


def stock_pipeline_path() -> Path:
    """The pipeline file ``gomail run`` uses when nothing else is named."""
    return Path(str(resources.files("gomail") / "pipelines" / STOCK_PIPELINE))


@dataclass
class Config:
    """Everything ``gomail`` needs to know before it starts, with the embedded defaults."""

    data_dir: Path = Path("data")
    hostname: str = field(default_factory=socket.getfqdn)
    max_message_size: int = 25 * 1024 * 1024
    blob_inline_max: int = 1024 * 1024
    pipeline_file: Path = field(default_factory=stock_pipeline_path)
    listen: dict[str, tuple[str, int]] = field(default_factory=dict)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_format: str = "text"
    plugin_timeout: float = 30.0
    # RFC 5321 says 1,000 octets; real mail has longer lines, so we allow more by default.
    max_line_length: int = 10_000
    max_recipients: int = 1000
    # DNS (gomail.dns): empty nameservers means the system's /etc/resolv.conf
    dns_nameservers: list[str] = field(default_factory=list)
    dns_port: int = 53
    dns_timeout: float = 5.0
    dns_cache: bool = True  # answers kept in memory for their TTL
    # the nameservers validate DNSSEC: their AD bit is trusted (DANE); only for a local resolver
    dns_dnssec: bool = False
    # Outbound delivery (gomail.delivery). The port is 25 on the Internet; tests change it.
    delivery_port: int = 25
    delivery_concurrency: int = 50  # connections at once, all destinations
    delivery_per_domain: int = 3  # connections at once to one destination domain
    delivery_connect_timeout: float = 30.0
    delivery_command_timeout: float = 300.0  # each SMTP command (RFC 5321 4.5.3.2)
    delivery_data_timeout: float = 600.0  # DATA and the reply after the final dot
    # seconds after each failed attempt; the last one repeats until max_age
    delivery_retry: list[float] = field(
        default_factory=lambda: [300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0]
    )
    delivery_max_age: float = 5 * 24 * 3600.0  # then the message bounces
    delivery_delay_notice: float = 4 * 3600.0  # then the sender is told once it is delayed
    delivery_poll_interval: float = 5.0  # how often the queue is looked at without a wake-up
    # a relay for all mail, and per destination domain (these first); None/empty: MX look-up
    delivery_smarthost: Smarthost | None = None
    delivery_smarthosts: dict[str, Smarthost] = field(default_factory=dict)
    config_file: Path | None = None
    # A client address with this many failed logins within login_window seconds is locked out.
    login_max_failures: int = 10
    login_window: float = 900.0
    # SRS for forwarded mail (gomail.srs): the secrets file (one a line, the first signs;
    # None: data/srs.secret, made on first start), the domain of the rewritten senders (None:
    # the forwarding alias's own domain) and how many days a bounce address stays valid;
    # srs_rewrite False keeps forwarded copies' senders (SRS bounces are still taken back).
    srs_rewrite: bool = True
    srs_secret_file: Path | None = None
    srs_domain: str | None = None
    srs_max_age_days: int = 21
    limits: Limits = field(default_factory=Limits)

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"


def parse_listen(spec: str, where: str = "--listen") -> tuple[str, tuple[str, int]]:
    """Parse ``NAME=HOST:PORT`` (HOST may be ``[::1]``); ConfigError when malformed."""
    name, sep, addr = spec.partition("=")
    if not sep or not name:
        raise ConfigError(f"{where}: expected NAME=HOST:PORT, got {spec!r}")
    return name.strip(), parse_hostport(addr, f"{where} {name}")


def parse_hostport(addr: str, where: str) -> tuple[str, int]:
    host, sep, port = str(addr).rpartition(":")
    if not sep:
        raise ConfigError(f"{where}: expected HOST:PORT, got {addr!r}")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port_no = int(port)
    except ValueError:
        raise ConfigError(f"{where}: port {port!r} is not a number") from None
    if not 0 <= port_no <= 65535:
        raise ConfigError(f"{where}: port {port_no} is out of range")
    return host, port_no


def load_config(
    config_file: Path | None = None,
    data_dir: Path | None = None,
    listen: tuple[str, ...] | list[str] = (),
    log_format: str | None = None,
) -> Config:
    """Build the Config: defaults, then config_file, then the command-line values."""
    cfg = Config()
    if config_file is not None:
        _apply_file(cfg, Path(config_file))
    if data_dir is not None:
        cfg.data_dir = Path(data_dir)
    for spec in listen:
        name, hostport = parse_listen(spec)
        cfg.listen[name] = hostport
    if log_format is not None:
        cfg.log_format = log_format
    return cfg


def _apply_file(cfg: Config, path: Path) -> None:
    doc = load_yaml(path)
    cfg.config_file = path
    if doc is None:
        return
    if not isinstance(doc, LineDict):
        raise ConfigError(f"{path}:{line_of(doc)}: expected a mapping of settings")
    for key, value in doc.items():
        where = f"{path}:{line_of(doc, key)}"
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {known})")
        if not isinstance(value, _KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key} has the wrong type ({type(value).__name__})")
        _set(cfg, key, value, where, path.parent, doc)


def _set(cfg: Config, key: str, value: Any, where: str, base: Path, doc: LineDict) -> None:
    if key == "data":
        cfg.data_dir = base / value
    elif key == "pipeline":
        cfg.pipeline_file = base / value
    elif key == "listen":
        for name, addr in value.items():
            cfg.listen[str(name)] = parse_hostport(str(addr), f"{where} listen.{name}")
    elif key == "tls":
        unknown = set(value) - {"cert", "key"}
        if unknown or set(value) != {"cert", "key"}:
            raise ConfigError(f"{where}: tls takes exactly 'cert' and 'key' (file paths)")
        cfg.tls_cert, cfg.tls_key = base / value["cert"], base / value["key"]
    elif key == "log_format":
        if value not in ("text", "json"):
            raise ConfigError(f"{where}: log_format is 'text' or 'json'")
        cfg.log_format = value
    elif key in ("max_message_size", "blob_inline_max", "max_line_length", "max_recipients"):
        if value <= 0:
            raise ConfigError(f"{where}: {key} must be positive")
        setattr(cfg, key, value)
    elif key in ("plugin_timeout", "login_window"):
        if value <= 0:
            raise ConfigError(f"{where}: {key} must be positive")
        setattr(cfg, key, float(value))
    elif key == "login_max_failures":
        if value <= 0:
            raise ConfigError(f"{where}: {key} must be positive")
        cfg.login_max_failures = value
    elif key == "dns":
        _set_dns(cfg, value, where)
    elif key == "delivery":
        _set_delivery(cfg, value, where, base)
    elif key == "srs":
        _set_srs(cfg, value, where, base)
    elif key == "limits":
        _set_limits(cfg, value, where)
    else:
        setattr(cfg, key, value)


def _check_keys(value: dict, known: dict, where: str, section: str) -> None:
    for key, item in value.items():
        if key not in known:
            names = ", ".join(sorted(known))
            raise ConfigError(f"{where}: unknown setting {section}.{key} (known: {names})")
        types = known[key] if section in ("dns", "srs", "limits") else known[key][1]
        if not isinstance(item, types) or (isinstance(item, bool) and bool not in types):
            raise ConfigError(
                f"{where}: {section}.{key} has the wrong type ({type(item).__name__})"
            )


def _set_dns(cfg: Config, value: dict, where: str) -> None:
    _check_keys(value, _DNS_KEYS, where, "dns")
    if "nameservers" in value:
        servers = value["nameservers"]
        if not all(isinstance(s, str) and s for s in servers):
            raise ConfigError(f"{where}: dns.nameservers is a list of IP addresses")
        cfg.dns_nameservers = [str(s) for s in servers]
    if "port" in value:
        if not 0 < value["port"] <= 65535:
            raise ConfigError(f"{where}: dns.port {value['port']} is out of range")
        cfg.dns_port = value["port"]
    if "timeout" in value:
        if value["timeout"] <= 0:
            raise ConfigError(f"{where}: dns.timeout must be positive")
        cfg.dns_timeout = float(value["timeout"])
    if "cache" in value:
        cfg.dns_cache = value["cache"]
    if "dnssec" in value:
        cfg.dns_dnssec = value["dnssec"]


def _set_limits(cfg: Config, value: dict, where: str) -> None:
    _check_keys(value, _LIMITS_KEYS, where, "limits")
    for key, item in value.items():
        if item <= 0:
            raise ConfigError(f"{where}: limits.{key} must be positive")
        default = getattr(cfg.limits, key)
        setattr(cfg.limits, key, float(item) if isinstance(default, float) else item)
    if cfg.limits.smtp_soft_error_limit > cfg.limits.smtp_hard_error_limit:
        raise ConfigError(f"{where}: limits.smtp_soft_error_limit is above the hard limit")


def _set_srs(cfg: Config, value: dict, where: str, base: Path) -> None:
    _check_keys(value, _SRS_KEYS, where, "srs")
    if "rewrite" in value:
        cfg.srs_rewrite = value["rewrite"]
    if "secret_file" in value:
        if not value["secret_file"].strip():
            raise ConfigError(f"{where}: srs.secret_file is a file name")
        cfg.srs_secret_file = base / value["secret_file"]
    if "domain" in value:
        try:
            cfg.srs_domain = normalize_domain(value["domain"])
        except ValueError as exc:
            raise ConfigError(f"{where}: srs.domain: {exc}") from None
    if "max_age_days" in value:
        days = value["max_age_days"]
        # The timestamp counts days modulo 1024 (two base32 characters).
        if not 0 < days < 1024:
            raise ConfigError(f"{where}: srs.max_age_days must be between 1 and 1023")
        cfg.srs_max_age_days = days


def _set_delivery(cfg: Config, value: dict, where: str, base: Path = Path(".")) -> None:
    _check_keys(value, _DELIVERY_KEYS, where, "delivery")
    for key, item in value.items():
        attr = _DELIVERY_KEYS[key][0]
        if key == "smarthost":
            item = _smarthost(item, where, "delivery.smarthost", base)
        elif key == "smarthosts":
            hosts = {}
            for domain, spec in item.items():
                name = f"delivery.smarthosts.{domain}"
                if not isinstance(domain, str) or not domain.strip(". "):
                    raise ConfigError(f"{where}: {name}: expected a domain name")
                if not isinstance(spec, dict):
                    raise ConfigError(
                        f"{where}: {name} is a mapping (host, port, tls, username, ...)"
                    )
                hosts[domain.strip().rstrip(".").lower()] = _smarthost(spec, where, name, base)
            item = hosts
        elif key == "retry":
            if not item or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in item
            ):
                raise ConfigError(f"{where}: delivery.retry is a list of positive seconds")
            item = [float(x) for x in item]
        elif key == "port":
            if not 0 < item <= 65535:
                raise ConfigError(f"{where}: delivery.port {item} is out of range")
        elif item <= 0:
            raise ConfigError(f"{where}: delivery.{key} must be positive")
        elif isinstance(item, int) and key.endswith(("timeout", "age", "interval", "notice")):
            item = float(item)
        setattr(cfg, attr, item)


def _smarthost(spec: dict, where: str, name: str, base: Path) -> Smarthost:
    """One smarthost entry; the password is read from password_file now (at start)."""
    for key, item in spec.items():
        if key not in _SMARTHOST_KEYS:
            known = ", ".join(sorted(_SMARTHOST_KEYS))
            raise ConfigError(f"{where}: unknown setting {name}.{key} (known: {known})")
        types = _SMARTHOST_KEYS[key]
        if not isinstance(item, types) or (isinstance(item, bool) and bool not in types):
            raise ConfigError(f"{where}: {name}.{key} has the wrong type ({type(item).__name__})")
    host = str(spec.get("host", "")).strip().strip("[]")
    if not host:
        raise ConfigError(f"{where}: {name}.host is required (a host name or an IP address)")
    port = spec.get("port", 587)
    if not 0 < port <= 65535:
        raise ConfigError(f"{where}: {name}.port {port} is out of range")
    tls = spec.get("tls", "starttls")
    if tls not in SMARTHOST_TLS:
        raise ConfigError(f"{where}: {name}.tls is 'starttls', 'implicit' or 'none', not {tls!r}")
    username, password_file = spec.get("username"), spec.get("password_file")
    if (username is None) != (password_file is None):
        raise ConfigError(f"{where}: {name}: username and password_file go together")
    password = None
    if password_file is not None:
        path = base / password_file
        try:
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{where}: {name}.password_file {str(path)!r} cannot be read: "
                f"{exc.strerror if isinstance(exc, OSError) else exc}"
            ) from None
        if not password:
            raise ConfigError(f"{where}: {name}.password_file {str(path)!r} is empty")
    return Smarthost(host, port, tls, spec.get("tls_verify", True), username, password)
