"""gomail.srs: SRS0/SRS1 rewriting and its reversal, and the server's secret file.

The expected addresses were made with Mail::SRS (Shevek's reference implementation, Debian's
``srs`` command: ``srs --secret=s3cret --forward --alias=us.example ADDRESS``) on day 302 of
its 1024-day cycle (timestamp ``JO``), so the format and the hash are the de-facto ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import stat
import time
import types

import pytest
from gomail import srs as srsmod
from gomail.builtins import queue, recipients
from gomail.config import Config, load_config
from gomail.context import Recipient, Session, Transaction
from gomail.srs import SRS, BadHash, Expired, MalformedSRS
from gomail.store import Delivery
from gomail.verdict import Action, Verdict
from gomail.yamlfile import ConfigError
from serverbed import Recorder, prepare_store, running_server
from storebed import opened_store

DAY = 86400
TODAY = (20 * 1024 + 302) * DAY + 3600  # a day whose timestamp is "JO"
SECRET = b"s3cret"


def make(secrets=(SECRET,), now: float = TODAY, **kw) -> SRS:
    return SRS(list(secrets), clock=lambda: now, **kw)


# --- the format, as Mail::SRS writes it ---------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("alice@example.com", "SRS0=dYLf=JO=example.com=alice@us.example"),
        ("Bob.Smith@Example.COM", "SRS0=y6+9=JO=Example.COM=Bob.Smith@us.example"),
        # another forwarder's SRS0: wrapped in SRS1, bounces go back to it
        ("SRS0=abcd=TT=x.org=bob@hop1.net", "SRS1=guDl=hop1.net==abcd=TT=x.org=bob@us.example"),
        # an SRS1: re-signed by us, the first hop and its part kept
        (
            "SRS1=wxyz=hop1.net==abcd=TT=x.org=bob@hop2.net",
            "SRS1=guDl=hop1.net==abcd=TT=x.org=bob@us.example",
        ),
    ],
)
def test_forward_matches_the_reference_implementation(sender, expected):
    assert make().forward(sender, "us.example") == expected


@pytest.mark.parametrize(
    "sender, start, end",
    [
        ("alice@example.com", "SRS0=", "@us.example"),
        ('"john doe"@example.com', '"SRS0=', '=john doe"@us.example'),  # stays quoted
    ],
    ids=["plain", "quoted-local-part"],
)
def test_round_trip_srs0(sender, start, end):
    s = make()
    address = s.forward(sender, "us.example")
    assert address.startswith(start) and address.endswith(end)
    assert s.reverse(address) == sender


def test_srs1_of_srs0_reverses_to_the_first_hops_address():
    hop1 = make(secrets=[b"hop1-secret"])
    us = make()
    first = hop1.forward("alice@example.com", "hop1.net")
    second = us.forward(first, "us.example")
    assert second.startswith("SRS1=") and second.endswith("@us.example")
    # A bounce to us goes to hop1's SRS0 address unchanged, which hop1 then unwraps.
    assert us.reverse(second) == first
    assert hop1.reverse(us.reverse(second)) == "alice@example.com"
    # Our secret does not verify hop1's SRS0: it is not ours.
    with pytest.raises(BadHash):
        us.reverse(first)


def test_srs1_resigned_by_a_third_hop_still_goes_back_to_the_first():
    hop1, hop2, hop3 = make([b"one"]), make([b"two"]), make([b"three"])
    srs0 = hop1.forward("alice@example.com", "hop1.net")
    srs1 = hop2.forward(srs0, "hop2.net")
    again = hop3.forward(srs1, "hop3.net")
    assert again.endswith("@hop3.net") and "=hop1.net=" in again
    assert hop3.reverse(again) == srs0
    with pytest.raises(BadHash):
        hop2.reverse(again)  # hop3's hash, not hop2's


def test_hash_and_tag_compare_case_insensitively():
    s = make()
    address = s.forward("alice@example.com", "us.example")
    local, domain = address.split("@")
    assert s.reverse(local.lower() + "@" + domain) == "alice@example.com"
    assert s.reverse(local.upper() + "@" + domain.upper()) == "ALICE@example.com"
    srs1 = s.forward("SRS0=abcd=TT=x.org=bob@hop1.net", "us.example")
    assert s.reverse(srs1.swapcase()) == "SRS0=ABCD=tt=X.ORG=BOB@hop1.net"


def test_other_separators_are_parsed():
    s = make()
    local = s.forward("alice@example.com", "us.example").split("@")[0]
    for sep in "+-":
        assert s.reverse(f"SRS0{sep}{local[5:]}@us.example") == "alice@example.com"


def test_wrong_hash_is_refused():
    s = make()
    address = s.forward("alice@example.com", "us.example")
    forged = address.replace("=alice@", "=mallory@")
    with pytest.raises(BadHash):
        s.reverse(forged)
    with pytest.raises(BadHash):
        s.reverse("SRS0=AAAA=JO=example.com=alice@us.example")


def test_a_short_hash_is_refused_even_when_it_is_a_prefix():
    s = make()
    good = s.forward("alice@example.com", "us.example")  # SRS0=dYLf=...
    hash4 = good.split("=")[1]
    for n in (1, 2, 3):
        with pytest.raises(BadHash):
            s.reverse(good.replace(f"={hash4}=", f"={hash4[:n]}=", 1))
    with pytest.raises(BadHash):
        s.reverse(good.replace(f"={hash4}=", f"={hash4}x=", 1))


def test_expired_timestamp_is_refused():
    address = make(now=TODAY).forward("alice@example.com", "us.example")
    assert make(now=TODAY + 21 * DAY).reverse(address) == "alice@example.com"
    with pytest.raises(Expired):
        make(now=TODAY + 22 * DAY).reverse(address)
    # max_age_days is configurable
    assert make(now=TODAY + 40 * DAY, max_age_days=45).reverse(address) == "alice@example.com"
    with pytest.raises(Expired):
        make(now=TODAY + 3 * DAY, max_age_days=2).reverse(address)


def test_timestamp_from_the_future_is_refused():
    address = make(now=TODAY + DAY).forward("alice@example.com", "us.example")
    with pytest.raises(Expired):
        make(now=TODAY).reverse(address)


def test_timestamp_wraps_around_the_1024_day_cycle():
    last = (21 * 1024 - 1) * DAY  # the last day of a cycle: timestamp "77"
    address = make(now=last).forward("alice@example.com", "us.example")
    assert "=77=" in address
    assert make(now=last + 2 * DAY).reverse(address) == "alice@example.com"


def test_rotated_secret_still_verifies_and_the_first_signs():
    old = make([b"old"]).forward("alice@example.com", "us.example")
    rotated = make([b"new", b"old"])
    assert rotated.reverse(old) == "alice@example.com"
    new = rotated.forward("alice@example.com", "us.example")
    assert new != old
    assert make([b"new"]).reverse(new) == "alice@example.com"
    with pytest.raises(BadHash):
        make([b"old"]).reverse(new)
    with pytest.raises(BadHash):
        make([b"new"]).reverse(old)  # once the old secret is dropped


@pytest.mark.parametrize(
    "address",
    [
        "alice@us.example",  # not SRS at all
        "SRS0=dYLf@us.example",
        "SRS0=dYLf=JO=example.com@us.example",
        "SRS0==JO=example.com=alice@us.example",
        "SRS0=dYLf=JO=example.com=@us.example",
        "SRS0=dYLf=J=example.com=alice@us.example",  # one-character timestamp
        "SRS0=dYLf=J1=example.com=alice@us.example",  # '1' is not base32
        "SRS1=guDl=hop1.net@us.example",
        "SRS1=guDl=hop1.net=abcd@us.example",  # no separator before the opaque part
        "SRS2=dYLf=JO=example.com=alice@us.example",
    ],
)
def test_malformed_addresses_are_refused(address):
    with pytest.raises(MalformedSRS):
        make().reverse(address)


def test_a_bad_domain_inside_a_valid_looking_address_is_refused():
    s = make()
    bad = s.forward("alice@exa_mple..com", "us.example")
    with pytest.raises(MalformedSRS):
        s.reverse(bad)


def test_is_srs():
    assert srsmod.is_srs("SRS0=x") and srsmod.is_srs("srs1+x") and srsmod.is_srs("Srs0-x")
    assert not srsmod.is_srs("SRS0") and not srsmod.is_srs("srs0x") and not srsmod.is_srs("bob")


def test_needs_a_secret_and_a_sane_age():
    with pytest.raises(ValueError):
        SRS([])
    with pytest.raises(ValueError):
        SRS([b""])
    with pytest.raises(ValueError):
        SRS([SECRET], max_age_days=1024)


# --- the server's secret file and settings ------------------------------------------------


def test_default_secret_is_made_once_with_mode_0600(tmp_path):
    cfg = Config(data_dir=tmp_path / "data")
    first = srsmod.for_config(cfg)
    path = tmp_path / "data" / "srs.secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret = path.read_bytes()
    assert len(secret.strip()) >= 32
    address = first.forward("alice@example.com", "us.example")
    # A later start reads the same secret: what we signed before still verifies.
    srsmod._cache.clear()
    assert srsmod.for_config(cfg).reverse(address) == "alice@example.com"
    assert path.read_bytes() == secret
    # Another data directory gets another secret.
    other = srsmod.for_config(Config(data_dir=tmp_path / "other"))
    with pytest.raises(BadHash):
        other.reverse(address)


def test_secret_file_rotation_is_picked_up_without_a_restart(tmp_path):
    path = tmp_path / "secrets"
    path.write_text("old-secret\n")
    cfg = Config(data_dir=tmp_path / "data", srs_secret_file=path)
    old = srsmod.for_config(cfg).forward("alice@example.com", "us.example")
    path.write_text("brand-new-secret\n\nold-secret\n")
    srs = srsmod.for_config(cfg)
    assert srs.keys == [b"brand-new-secret", b"old-secret"]
    assert srs.reverse(old) == "alice@example.com"
    assert srs.forward("alice@example.com", "us.example") != old
    assert not (tmp_path / "data" / "srs.secret").exists()  # a configured file is not made


def test_a_configured_secret_file_must_exist(tmp_path):
    cfg = Config(data_dir=tmp_path, srs_secret_file=tmp_path / "missing")
    with pytest.raises(OSError):
        srsmod.for_config(cfg)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError):
        srsmod.for_config(Config(data_dir=tmp_path, srs_secret_file=tmp_path / "empty"))


def test_config_file_srs_section(tmp_path):
    conf = tmp_path / "gomail.yaml"
    conf.write_text("srs:\n  secret_file: keys/srs\n  domain: Bücher.Example\n  max_age_days: 7\n")
    cfg = load_config(conf)
    assert cfg.srs_secret_file == tmp_path / "keys" / "srs"
    assert cfg.srs_domain == "xn--bcher-kva.example"
    assert cfg.srs_max_age_days == 7
    assert srsmod.srs_domain(cfg, "example.org") == "xn--bcher-kva.example"
    assert srsmod.srs_domain(Config(), "example.org") == "example.org"
    assert Config().srs_max_age_days == 21


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("srs:\n  max_age_days: 0\n", "between 1 and 1023"),
        ("srs:\n  max_age_days: 2000\n", "between 1 and 1023"),
        ("srs:\n  domain: 'not a domain'\n", "srs.domain"),
        ("srs:\n  secrets: x\n", "unknown setting srs.secrets"),
        ("srs:\n  max_age_days: '21'\n", "wrong type"),
    ],
)
def test_config_file_srs_errors(tmp_path, text, message):
    conf = tmp_path / "gomail.yaml"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(conf)


# --- the queue plugin: forwarded copies get the SRS sender ----------------------------------


class _Domains:
    """The one store call the queue plugin makes."""

    def __init__(self, *domains: str) -> None:
        self.domains = set(domains)

    async def has_domain(self, domain: str) -> bool:
        return domain in self.domains


def _app(tmp_path, store=None, **config):
    return types.SimpleNamespace(
        store=store or _Domains("example.org", "example.net"),
        config=Config(data_dir=tmp_path / "data", **config),
    )


def _forwarding_txn(sender: str) -> Transaction:
    t = Transaction("T1", sender)
    t.recipients = [
        Recipient("Fwd@Example.NET", route="local", mailboxes=["a@example.org"],
                  forward=["x@other.example"]),
        Recipient("y@third.example", route="relay", forward=["y@third.example"]),
    ]  # fmt: skip
    return t


async def test_queue_rewrites_forwarded_copies_of_outside_senders(tmp_path):
    app = _app(tmp_path)
    t = _forwarding_txn("alice@remote.example")
    await queue.gomail_deliver(t, app)
    assert t.plan.outbound == ["x@other.example", "y@third.example"]
    # The alias's copy is sent from an SRS address of the alias's domain ...
    rewritten = t.plan.outbound_senders["x@other.example"]
    assert rewritten.startswith("SRS0=") and rewritten.endswith("@example.net")
    assert srsmod.for_config(app.config).reverse(rewritten) == "alice@remote.example"
    # ... the relayed copy keeps its sender.
    assert "y@third.example" not in t.plan.outbound_senders


async def test_queue_uses_the_configured_srs_domain(tmp_path):
    app = _app(tmp_path, srs_domain="srs.example.org")
    t = _forwarding_txn("alice@remote.example")
    await queue.gomail_deliver(t, app)
    assert t.plan.outbound_senders["x@other.example"].endswith("@srs.example.org")


@pytest.mark.parametrize("sender", ["", "bob@example.org", "carol@example.net"])
async def test_queue_keeps_null_and_local_senders(tmp_path, sender):
    t = _forwarding_txn(sender)
    await queue.gomail_deliver(t, _app(tmp_path))
    assert t.plan.outbound == ["x@other.example", "y@third.example"]
    assert t.plan.outbound_senders == {}


async def test_queue_keeps_senders_when_rewriting_is_off(tmp_path):
    t = _forwarding_txn("alice@remote.example")
    await queue.gomail_deliver(t, _app(tmp_path, srs_rewrite=False))
    assert t.plan.outbound == ["x@other.example", "y@third.example"]
    assert t.plan.outbound_senders == {}


def test_config_srs_rewrite(tmp_path):
    path = tmp_path / "gomail.yaml"
    path.write_text("srs: {rewrite: false}\n")
    assert load_config(path).srs_rewrite is False
    path.write_text("srs: {rewrite: 0}\n")
    with pytest.raises(ConfigError, match="rewrite"):
        load_config(path)


async def test_queue_startup_makes_the_secret(tmp_path):
    app = _app(tmp_path)
    await queue.gomail_startup(app)
    assert (tmp_path / "data" / "srs.secret").is_file()


# --- the store writes the queued copy's own sender ------------------------------------------


@pytest.fixture
async def store(tmp_path):
    users, domains = ["alice@example.org"], ["example.org", "example.net"]
    async with opened_store(tmp_path / "store", users, domains) as s:
        await s.add_alias("fwd@example.org", ["alice@example.org", "Out@Other.Example"])
        yield s


async def test_store_queues_each_copy_with_its_sender(store):
    delivery = Delivery(
        queue_id="Q1",
        sender="alice@remote.example",
        raw=b"Subject: x\r\n\r\nx\r\n",
        outbound=("x@other.example", "y@third.example"),
        outbound_senders={"x@other.example": "SRS0=abcd=JO=remote.example=alice@example.org"},
    )
    await store.deliver(delivery)
    rows = {e.recipient: e.sender for e in await store.list_queue()}
    assert rows == {
        "x@other.example": "SRS0=abcd=JO=remote.example=alice@example.org",
        "y@third.example": "alice@remote.example",
    }


# --- the recipients plugin: bounces to SRS addresses ----------------------------------------


async def _rcpt(app, address: str, sender: str = "") -> tuple[Verdict | None, Recipient]:
    t = Transaction("T1", sender)
    r = Recipient(address)
    s = Session(id="S1", listener="mx", pipeline="inbound", peer_ip="192.0.2.9", peer_port=1)
    v = await recipients.gomail_rcpt(
        session=s, transaction=t, recipient=r, options={"plus_separator": "+"}, app=app
    )
    return v, r


async def test_valid_srs0_bounce_is_forwarded_to_the_original_sender(tmp_path, store):
    app = _app(tmp_path, store=store)
    address = srsmod.for_config(app.config).forward("Al%ice@remote.example", "example.org")
    v, r = await _rcpt(app, address)  # a null sender, unauthenticated, on port 25
    assert v is None
    assert (r.route, r.mailboxes, r.forward) == ("local", [], ["Al%ice@remote.example"])
    # the letter case of the hash and tag does not matter (the local part keeps its own)
    v, r = await _rcpt(app, address.upper())
    assert v is None and r.forward == ["AL%ICE@remote.example"]


async def test_srs1_bounce_goes_back_to_the_first_hop(tmp_path, store):
    app = _app(tmp_path, store=store)
    srs0 = SRS([b"hop1"]).forward("alice@remote.example", "hop1.example")
    srs1 = srsmod.for_config(app.config).forward(srs0, "example.net")
    v, r = await _rcpt(app, srs1)
    assert v is None and r.route == "local" and r.forward == [srs0]


async def test_srs_that_unwraps_to_our_domain_is_resolved_there(tmp_path, store):
    app = _app(tmp_path, store=store)
    address = srsmod.for_config(app.config).forward("fwd@example.org", "example.net")
    v, r = await _rcpt(app, address)
    assert v is None
    assert (r.mailboxes, r.forward) == (["alice@example.org"], ["out@other.example"])


@pytest.mark.parametrize(
    ("make_address", "text"),
    [
        (lambda s: s.forward("alice@remote.example", "example.org").replace("=alice@", "=eve@"),
         "invalid signature"),
        (lambda s: "SRS0=AAAA=JO=remote.example=alice@example.org", "invalid signature"),
        (lambda s: "SRS0=x=remote.example@example.org", "malformed SRS address"),
        (lambda s: SRS(s.keys, clock=lambda: time.time() - 30 * DAY).forward(
            "alice@remote.example", "example.org"), "SRS address has expired"),
    ],
)  # fmt: skip
async def test_bad_srs_recipients_get_550(tmp_path, store, caplog, make_address, text):
    app = _app(tmp_path, store=store)
    address = make_address(srsmod.for_config(app.config))
    with caplog.at_level(logging.WARNING, logger="gomail.recipients"):
        v, r = await _rcpt(app, address)
    assert v is not None and v.action is Action.REJECT
    assert (v.code, v.enhanced) == (550, "5.1.1")
    assert text in v.text
    assert r.route is None and r.forward == []
    assert any("refused SRS recipient" in m and "192.0.2.9" in m for m in caplog.messages)


# --- through the SMTP handler: queue rows, local copies and the email.queued event ---------


async def test_forwarded_mail_is_queued_with_srs_and_the_event_says_so(tmp_path):
    users = {"alice@example.org": "$argon2id$v=19$m=65536,t=3,p=4$x"}
    aliases = {"fwd@example.org": ["alice@example.org", "out@other.example"]}
    await prepare_store(tmp_path, "example.org", users, aliases)
    recorder = Recorder()
    async with running_server(tmp_path, recorder) as (server, ports):

        def client():
            with smtplib.SMTP("127.0.0.1", ports["mx"]) as s:
                s.sendmail("x@remote.example", ["fwd@example.org"], b"Subject: hi\r\n\r\nhi\r\n")

        await asyncio.to_thread(client)
        await asyncio.sleep(0.1)
        queue_rows = await server.app.store.list_queue()
        [(_uid, stored)] = await server.app.store.list_messages("alice@example.org")
    assert stat.S_IMODE(os.stat(tmp_path / "srs.secret").st_mode) == 0o600
    [row] = queue_rows
    assert row.recipient == "out@other.example"
    assert row.sender.startswith("SRS0=") and row.sender.endswith("=remote.example=x@example.org")
    assert srsmod.for_config(server.config).reverse(row.sender) == "x@remote.example"
    assert stored.startswith(b"Return-Path: <x@remote.example>\r\n")  # the local copy's
    queued = [data for name, data in recorder.events if name == "email.queued"]
    assert [(q["sender"], q["recipients"]) for q in queued] == [(row.sender, ["out@other.example"])]


async def test_a_bounce_to_an_srs_address_longer_than_128_octets_comes_back(tmp_path, store):
    # a 64-octet local part at a long domain: the SRS local part is over the 128 octets we
    # take for other local parts, but the address fits an SMTP path
    app = _app(tmp_path, store=store)
    sender = "a" * 64 + "@" + "sub." * 12 + "remote.example"
    address = srsmod.for_config(app.config).forward(sender, "example.org")
    assert len(address.partition("@")[0]) > 128 and len(address) <= 254
    v, r = await _rcpt(app, address)
    assert v is None and r.forward == [sender]


def test_an_srs_address_that_no_smtp_path_could_hold_is_refused():
    sender = "a" * 64 + "@" + "x" * 60 + "." + "y" * 60 + "." + "z" * 60 + ".example"
    with pytest.raises(MalformedSRS, match="over 254 octets"):
        make().forward(sender, "us.example")


def test_long_local_parts_other_than_srs_are_still_refused():
    from gomail.address import parse_path

    with pytest.raises(ValueError, match="longer than 128"):
        parse_path("x" * 129 + "@example.org", smtputf8=False)
    assert parse_path("SRS0=" + "x" * 150 + "@example.org", smtputf8=False).local[:5] == "SRS0="
