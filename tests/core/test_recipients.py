"""The core's recipient resolver (gomail.builtins.recipients), against a real SQLite store."""

from __future__ import annotations

import inspect
import types
from importlib.metadata import entry_points

import pytest
from gomail.builtins import recipients as plugin
from gomail.context import LocalDelivery, Recipient, Session, Transaction
from gomail.options import Option
from gomail.store import Delivery
from gomail.verdict import Action, Verdict

HASH = "$argon2id$v=19$m=65536,t=3,p=4$not-a-real-hash"


@pytest.fixture
async def store(tmp_path):
    sqlite = pytest.importorskip(
        "gomail.store.sqlite", reason="the SQLite store (gomail.store.sqlite) is not there yet"
    )
    s = sqlite.open_store(tmp_path / "data", 1 << 20)
    if inspect.isawaitable(s):
        s = await s
    await s.open()
    try:
        await s.add_domain("example.org")
        await s.add_domain("example.net")
        await s.add_domain("xn--bcher-kva.example")
        for user in ("alice@example.org", "bob@example.org", "carol@example.net"):
            await s.add_user(user, HASH, None)
        await s.add_user("jürgen@xn--bcher-kva.example", HASH, None)
        await s.add_user("info@xn--bcher-kva.example", HASH, None)
        yield s
    finally:
        await s.close()


@pytest.fixture
def app(store):
    return types.SimpleNamespace(store=store)


def session(user: str | None = None) -> Session:
    return Session(
        id="S1", listener="mx", pipeline="inbound", peer_ip="192.0.2.7", peer_port=40000, user=user
    )


async def rcpt(
    app,
    address: str,
    *,
    user: str | None = None,
    mail_options: list[str] | None = None,
    options: dict | None = None,
) -> tuple[Verdict | None, Recipient]:
    transaction = Transaction(id="T1", sender="sender@remote.example")
    transaction.mail_options = list(mail_options or [])
    recipient = Recipient(address)
    verdict = await plugin.gomail_rcpt(
        session=session(user),
        transaction=transaction,
        recipient=recipient,
        options={"plus_separator": "+"} if options is None else options,
        app=app,
    )
    return verdict, recipient


def assert_local(verdict, recipient, mailboxes, forward=()) -> None:
    assert verdict is None, verdict
    assert recipient.route == "local"
    assert recipient.mailboxes == list(mailboxes)
    assert recipient.forward == list(forward)


def assert_refused(verdict, recipient, code: int, enhanced: str) -> None:
    assert verdict is not None
    assert verdict.action is (Action.REJECT if code >= 500 else Action.TEMPFAIL)
    assert (verdict.code, verdict.enhanced) == (code, enhanced), verdict
    assert recipient.route is None
    assert recipient.mailboxes == [] and recipient.forward == []


# --- the plugin's declarations ---------------------------------------------------------------


def test_registered_as_recipients_entry_point() -> None:
    (ep,) = [ep for ep in entry_points(group="gomail") if ep.name == "recipients"]
    assert ep.load() is plugin


def test_options() -> None:
    opts = plugin.gomail_plugin_options()
    assert set(opts) == {"plus_separator"}
    assert isinstance(opts["plus_separator"], Option)
    assert opts["plus_separator"].type is str
    assert opts["plus_separator"].default == "+"


# --- users ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.org",
        "Alice@Example.ORG",
        "ALICE@example.org.",
        '"alice"@example.org',
        "<alice@example.org>",
    ],
)
async def test_exact_user(app, address) -> None:
    verdict, r = await rcpt(app, address)
    assert_local(verdict, r, ["alice@example.org"])
    assert r.address == address  # what the client gave is kept


@pytest.mark.parametrize(
    "address",
    [
        "jürgen@bücher.example",
        "Jürgen@BÜCHER.example",
        "jürgen@xn--bcher-kva.example",
        "JÜRGEN@XN--BCHER-KVA.EXAMPLE.",
        "ju\u0308rgen@bücher.example.",
    ],
)
async def test_idn_and_unicode_local_parts(app, address) -> None:
    verdict, r = await rcpt(app, address)
    if address.startswith("JÜRGEN"):
        # Only ASCII letters are case-folded: "JÜRGEN" is not "jürgen".
        assert_refused(verdict, r, 550, "5.1.1")
    else:
        assert_local(verdict, r, ["jürgen@xn--bcher-kva.example"])


@pytest.mark.parametrize("address", ["INFO@Bücher.Example", "info@xn--BCHER-kva.example."])
async def test_domain_variants_are_ours(app, address) -> None:
    verdict, r = await rcpt(app, address)
    assert_local(verdict, r, ["info@xn--bcher-kva.example"])


async def test_unknown_user(app) -> None:
    verdict, r = await rcpt(app, "nobody@example.org")
    assert_refused(verdict, r, 550, "5.1.1")
    assert verdict.text == "<nobody@example.org>: Recipient address rejected: User unknown"
    assert verdict.smtp_reply().startswith("550 5.1.1 <nobody@example.org>")


async def test_unknown_user_when_authenticated(app) -> None:
    verdict, r = await rcpt(app, "nobody@example.org", user="alice@example.org")
    assert_refused(verdict, r, 550, "5.1.1")


async def test_bad_syntax(app) -> None:
    for address in ["", "alice", "alice@", "al ice@example.org", "alice@exa_mple.org"]:
        verdict, r = await rcpt(app, address)
        assert_refused(verdict, r, 501, "5.1.3")


# --- aliases --------------------------------------------------------------------------------


async def test_alias_to_one_user(app, store) -> None:
    await store.add_alias("postmaster@example.org", ["alice@example.org"])
    verdict, r = await rcpt(app, "PostMaster@example.org")
    assert_local(verdict, r, ["alice@example.org"])


async def test_alias_multiple_targets_local_and_remote(app, store) -> None:
    await store.add_alias(
        "team@example.org",
        ["alice@example.org", "carol@example.net", "friend@remote.example", "bob@example.org"],
    )
    verdict, r = await rcpt(app, "team@example.org")
    assert_local(
        verdict,
        r,
        ["alice@example.org", "carol@example.net", "bob@example.org"],
        ["friend@remote.example"],
    )


async def test_alias_only_remote_targets(app, store) -> None:
    await store.add_alias("fwd@example.org", ["me@remote.example", "me@elsewhere.example"])
    verdict, r = await rcpt(app, "fwd@example.org")
    assert_local(verdict, r, [], ["me@remote.example", "me@elsewhere.example"])


async def test_alias_forward_for_unauthenticated_sender_is_not_relaying(app, store) -> None:
    await store.add_alias("fwd@example.org", ["me@remote.example"])
    verdict, r = await rcpt(app, "fwd@example.org", user=None)
    assert_local(verdict, r, [], ["me@remote.example"])


async def test_nested_aliases_are_expanded_and_deduplicated(app, store) -> None:
    await store.add_alias("all@example.org", ["staff@example.org", "ops@example.org"])
    await store.add_alias("staff@example.org", ["alice@example.org", "bob@example.org"])
    await store.add_alias(
        "ops@example.org", ["bob@example.org", "carol@example.net", "pager@remote.example"]
    )
    await store.add_alias("ops@example.net", ["pager@remote.example"])
    verdict, r = await rcpt(app, "all@example.org")
    assert_local(
        verdict,
        r,
        ["alice@example.org", "bob@example.org", "carol@example.net"],
        ["pager@remote.example"],
    )


async def test_alias_loop_is_cut(app, store) -> None:
    await store.add_alias("a@example.org", ["b@example.org"])
    await store.add_alias("b@example.org", ["a@example.org", "alice@example.org"])
    verdict, r = await rcpt(app, "a@example.org")
    assert_local(verdict, r, ["alice@example.org"])


async def test_alias_loop_with_nothing_behind_it(app, store) -> None:
    await store.add_alias("a@example.org", ["b@example.org"])
    await store.add_alias("b@example.org", ["a@example.org"])
    verdict, r = await rcpt(app, "a@example.org")
    assert_refused(verdict, r, 550, "5.1.1")


async def test_alias_to_itself_and_others(app, store) -> None:
    await store.add_alias("list@example.org", ["list@example.org", "bob@example.org"])
    verdict, r = await rcpt(app, "list@example.org")
    assert_local(verdict, r, ["bob@example.org"])


async def test_alias_depth_limit(app, store) -> None:
    # a1 → a2 → … → a10 → alice: ten levels of aliases are fine.
    for i in range(10):
        await store.add_alias(f"a{i}@example.org", [f"a{i + 1}@example.org"])
    await store.add_alias("a10@example.org", ["alice@example.org"])
    verdict, r = await rcpt(app, "a1@example.org")
    assert_local(verdict, r, ["alice@example.org"])
    # Eleven (from a0) are a configuration error: try again later, lose nothing.
    verdict, r = await rcpt(app, "a0@example.org")
    assert_refused(verdict, r, 451, "4.4.6")


async def test_alias_with_dead_local_target(app, store) -> None:
    await store.add_alias("old@example.org", ["gone@example.org", "alice@example.org"])
    verdict, r = await rcpt(app, "old@example.org")
    assert_local(verdict, r, ["alice@example.org"])
    await store.add_alias("dead@example.org", ["gone@example.org"])
    verdict, r = await rcpt(app, "dead@example.org")
    assert_refused(verdict, r, 550, "5.1.1")


async def test_user_wins_over_alias_of_same_name(app, store) -> None:
    await store.add_alias("alice@example.org", ["bob@example.org"])
    verdict, r = await rcpt(app, "alice@example.org")
    assert_local(verdict, r, ["alice@example.org"])


async def test_alias_targets_in_idn_domain(app, store) -> None:
    await store.add_alias("de@example.org", ["jürgen@xn--bcher-kva.example"])
    verdict, r = await rcpt(app, "de@example.org")
    assert_local(verdict, r, ["jürgen@xn--bcher-kva.example"])


# --- plus addressing ------------------------------------------------------------------------


async def test_plus_to_user(app) -> None:
    verdict, r = await rcpt(app, "Alice+Newsletters@example.org")
    assert_local(verdict, r, ["alice@example.org"])


async def test_plus_to_alias_of_base(app, store) -> None:
    await store.add_alias("team@example.org", ["alice@example.org", "bob@example.org"])
    verdict, r = await rcpt(app, "team+urgent@example.org")
    assert_local(verdict, r, ["alice@example.org", "bob@example.org"])


async def test_exact_alias_wins_over_plus(app, store) -> None:
    await store.add_alias("alice+spam@example.org", ["bob@example.org"])
    verdict, r = await rcpt(app, "alice+spam@example.org")
    assert_local(verdict, r, ["bob@example.org"])


async def test_plus_of_unknown_base(app) -> None:
    verdict, r = await rcpt(app, "nobody+tag@example.org")
    assert_refused(verdict, r, 550, "5.1.1")


async def test_plus_separator_option(app) -> None:
    verdict, r = await rcpt(app, "alice-tag@example.org", options={"plus_separator": "-"})
    assert_local(verdict, r, ["alice@example.org"])
    verdict, r = await rcpt(app, "alice+tag@example.org", options={"plus_separator": "-"})
    assert_refused(verdict, r, 550, "5.1.1")
    verdict, r = await rcpt(app, "alice+tag@example.org", options={"plus_separator": ""})
    assert_refused(verdict, r, 550, "5.1.1")
    verdict, r = await rcpt(app, "alice+tag@example.org", options={})  # default "+"
    assert_local(verdict, r, ["alice@example.org"])


# --- catch-all ------------------------------------------------------------------------------


async def test_catch_all(app, store) -> None:
    await store.add_alias("@example.org", ["alice@example.org"])
    verdict, r = await rcpt(app, "whatever@example.org")
    assert_local(verdict, r, ["alice@example.org"])
    verdict, r = await rcpt(app, "whatever+tag@example.org")
    assert_local(verdict, r, ["alice@example.org"])
    # Existing users, aliases and sub-addresses still go where they go.
    verdict, r = await rcpt(app, "bob@example.org")
    assert_local(verdict, r, ["bob@example.org"])
    verdict, r = await rcpt(app, "bob+x@example.org")
    assert_local(verdict, r, ["bob@example.org"])
    # Another domain's catch-all is not this one's.
    verdict, r = await rcpt(app, "whatever@example.net")
    assert_refused(verdict, r, 550, "5.1.1")


async def test_catch_all_to_remote_and_idn(app, store) -> None:
    await store.add_alias("@xn--bcher-kva.example", ["archive@remote.example"])
    verdict, r = await rcpt(app, "anyone@BÜCHER.example")
    assert_local(verdict, r, [], ["archive@remote.example"])


# --- quota ----------------------------------------------------------------------------------


async def fill(store, user: str, size: int) -> None:
    raw = b"Subject: x\r\n\r\n" + b"x" * (size - 15) + b"\n"
    assert len(raw) == size
    await store.deliver(
        Delivery(
            queue_id=f"Q{size}",
            sender="s@remote.example",
            raw=raw,
            local=(LocalDelivery(user),),
        )
    )


async def test_quota_full(app, store) -> None:
    await store.add_user("dave@example.org", HASH, 1000)
    await fill(store, "dave@example.org", 1000)
    verdict, r = await rcpt(app, "dave@example.org")
    assert_refused(verdict, r, 452, "4.2.2")
    assert verdict.text == "Mailbox full"


async def test_quota_not_full(app, store) -> None:
    await store.add_user("dave@example.org", HASH, 5000)
    await fill(store, "dave@example.org", 1000)
    verdict, r = await rcpt(app, "dave@example.org")
    assert_local(verdict, r, ["dave@example.org"])


async def test_quota_and_declared_size(app, store) -> None:
    await store.add_user("dave@example.org", HASH, 5000)
    await fill(store, "dave@example.org", 1000)
    verdict, r = await rcpt(app, "dave@example.org", mail_options=["BODY=8BITMIME", "SIZE=4000"])
    assert_local(verdict, r, ["dave@example.org"])
    verdict, r = await rcpt(app, "dave@example.org", mail_options=["size=4001"])
    assert_refused(verdict, r, 452, "4.2.2")
    verdict, r = await rcpt(app, "dave@example.org", mail_options=["SIZE=oops"])
    assert_local(verdict, r, ["dave@example.org"])


async def test_zero_quota_refuses(app, store) -> None:
    await store.add_user("dave@example.org", HASH, 0)
    verdict, r = await rcpt(app, "dave@example.org")
    assert_refused(verdict, r, 452, "4.2.2")


async def test_unlimited_quota_ignores_size(app) -> None:
    verdict, r = await rcpt(app, "alice@example.org", mail_options=["SIZE=999999999999"])
    assert_local(verdict, r, ["alice@example.org"])


async def test_quota_through_alias_and_plus(app, store) -> None:
    await store.add_user("dave@example.org", HASH, 1000)
    await fill(store, "dave@example.org", 1000)
    await store.add_alias("team@example.org", ["alice@example.org", "dave@example.org"])
    verdict, r = await rcpt(app, "team@example.org")
    assert_refused(verdict, r, 452, "4.2.2")
    verdict, r = await rcpt(app, "dave+x@example.org")
    assert_refused(verdict, r, 452, "4.2.2")


# --- relaying -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "someone@remote.example",
        "someone@example.org.remote.example",
        "someone@[192.0.2.1]",
        "someone@xn--fa-hia.de",
    ],
)
async def test_relay_refused_without_authentication(app, address) -> None:
    verdict, r = await rcpt(app, address)
    assert_refused(verdict, r, 554, "5.7.1")
    assert verdict.text == "Relay access denied"


@pytest.mark.parametrize(
    ("address", "forward"),
    [
        ("Someone@Remote.Example", "Someone@remote.example"),  # local part case kept
        ("someone@remote.example.", "someone@remote.example"),
        ("someone@faß.de", "someone@xn--fa-hia.de"),
        ('"some one"@remote.example', '"some one"@remote.example'),
    ],
)
async def test_relay_allowed_when_authenticated(app, address, forward) -> None:
    verdict, r = await rcpt(app, address, user="alice@example.org")
    assert verdict is None
    assert r.route == "relay"
    assert r.forward == [forward]
    assert r.mailboxes == []


# --- relay tricks ---------------------------------------------------------------------------

TRICKS = [
    "alice%remote.example@example.org",
    "remote.example!alice@example.org",
    '"alice@remote.example"@example.org',
    '"alice%remote.example"@example.org',
    "@example.org:alice@example.org",
    "@example.org,@example.net:alice@example.org",
    "remote.example:alice@example.org",
    "alice%remote.example@Example.ORG.",
    "alice%remote.example@bücher.example",
]


@pytest.mark.parametrize("address", TRICKS)
@pytest.mark.parametrize("user", [None, "alice@example.org"])
async def test_tricks_in_our_domains_are_refused(app, store, address, user) -> None:
    # Even a catch-all that would take anything does not take these.
    await store.add_alias("@example.org", ["alice@example.org"])
    await store.add_alias("@xn--bcher-kva.example", ["alice@example.org"])
    verdict, r = await rcpt(app, address, user=user)
    assert_refused(verdict, r, 554, "5.7.1")
    assert verdict.text == "Relay access denied"


@pytest.mark.parametrize(
    "address",
    [
        "alice%example.org@remote.example",
        "example.org!alice@remote.example",
        '"alice@example.org"@remote.example',
    ],
)
async def test_tricks_to_other_domains(app, address) -> None:
    verdict, r = await rcpt(app, address)
    assert_refused(verdict, r, 554, "5.7.1")
    # An authenticated user may send anything to another domain: ordinary outbound relay.
    verdict, r = await rcpt(app, address, user="alice@example.org")
    assert verdict is None
    assert r.route == "relay"
    assert len(r.forward) == 1 and r.forward[0].endswith("@remote.example")


# --- cost -----------------------------------------------------------------------------------


class CountingStore:
    """The real store, counting the calls the resolver makes (it runs once per RCPT)."""

    def __init__(self, store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name):
        method = getattr(self._store, name)

        async def call(*args, **kwargs):
            self.calls.append(name)
            return await method(*args, **kwargs)

        return call


async def test_store_calls_for_the_common_cases(store) -> None:
    counting = CountingStore(store)
    app = types.SimpleNamespace(store=counting)
    await store.add_user("dave@example.org", HASH, 10_000)

    await rcpt(app, "alice@example.org")
    assert counting.calls == ["has_domain", "get_user"]
    counting.calls.clear()
    await rcpt(app, "Dave@example.org", mail_options=["SIZE=100"])
    assert counting.calls == ["has_domain", "get_user", "quota_usage"]
    counting.calls.clear()
    await rcpt(app, "someone@remote.example")
    assert counting.calls == ["has_domain"]
