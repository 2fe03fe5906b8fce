"""The contract between gomail and its plugins: every hook a plugin may implement.

Read this first if you write a plugin. A plugin is a module, a class or an instance that a
distribution registers in the entry-point group ``gomail``; the entry point's name is the name
a pipeline YAML uses (``dkim.sign = "gomail_dkim:Signer"``). Its hooks are functions named
``gomail_<hook>``, marked with ``@gomail.hookimpl`` or simply named so (as pytest accepts
``pytest_*`` functions). A hook takes any subset of the arguments its spec lists, by name.

Stage hooks (``gomail_connect`` … ``gomail_deliver``) run only where a pipeline names the
plugin, in the pipeline's order, each awaited with its own timeout. They are ``async def``
(a plain function works too) and return a :class:`~gomail.verdict.Verdict`, or None to
continue. The first verdict other than continue ends the stage. Every stage hook may also take:

- ``options``: the plugin's settings at this place in the pipeline, defaults filled in from
  :func:`gomail_plugin_options`;
- ``app``: the running server (:class:`gomail.app.App`: ``app.store``, ``app.config``,
  ``app.emit(...)``).

A plugin that raises or times out does not end the session: the engine logs it with the
plugin's name and applies the use's ``on_error`` policy (``tempfail``, the default, answers
451 4.3.0; ``reject`` answers 550 5.3.0; ``continue`` ignores the failure).

Lifecycle hooks and :func:`gomail_event` are called on every installed plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from gomail.app import App
    from gomail.context import Recipient, Session, Transaction
    from gomail.delivery.policy import Attempt, TLSPolicy
    from gomail.dns import MXHost
    from gomail.events import Event
    from gomail.message import Message
    from gomail.options import Option
    from gomail.verdict import Verdict

PROJECT = "gomail"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# The SMTP stages in session order; each names the hook gomail_<stage>.
STAGES = ("connect", "helo", "auth", "mail", "rcpt", "data", "deliver")
# The outbound queue's stages (the pipeline file's ``outbound:`` section), in the order they
# run for each delivery attempt.
OUTBOUND_STAGES = ("throttle", "route", "tls_policy")


# --- stages ---------------------------------------------------------------------------------


@hookspec
def gomail_connect(session: Session, options: dict, app: App) -> Verdict | None:
    """A client connected, before the greeting.

    A reject or tempfail answers the greeting with that code and closes the connection.
    """


@hookspec
def gomail_helo(session: Session, hostname: str, options: dict, app: App) -> Verdict | None:
    """The client said HELO or EHLO; ``hostname`` is its argument (also ``session.helo``)."""


@hookspec
def gomail_auth(
    session: Session, username: str, mechanism: str, options: dict, app: App
) -> Verdict | None:
    """The client proved the credentials of account ``username`` with SASL ``mechanism``.

    Runs after the core checked the password and before the 235 reply; a reject or tempfail
    refuses the login. Failed credential checks never reach this hook: they are broadcast as
    the event ``security.login_failed``.
    """


@hookspec
def gomail_mail(
    session: Session, transaction: Transaction, options: dict, app: App
) -> Verdict | None:
    """MAIL FROM was given: ``transaction.sender`` ('' for the null sender) and
    ``transaction.mail_options`` (ESMTP parameters such as ``SIZE=1234``)."""


@hookspec
def gomail_rcpt(
    session: Session, transaction: Transaction, recipient: Recipient, options: dict, app: App
) -> Verdict | None:
    """RCPT TO, once per recipient. Resolve or judge ``recipient``.

    A plugin that knows where the recipient goes sets ``recipient.route`` (and
    ``mailboxes``/``forward``) and returns None so later plugins (greylisting) still run.
    ``accept`` takes the recipient without further checks. When the stage ends with nobody
    having routed or accepted the recipient, the core refuses it (554 5.7.1, relay denied).
    """


@hookspec
def gomail_data(
    session: Session, transaction: Transaction, message: Message, options: dict, app: App
) -> Verdict | None:
    """The whole message arrived (after DATA or the last BDAT chunk).

    ``message.raw`` holds its bytes, ``message.parsed`` a parsed view. Change it only through
    ``message.add_header()``, ``change_header()``, ``delete_header()``, ``replace_body()``,
    ``replace()``, ``add_recipient()``, ``remove_recipient()`` and ``change_sender()``: the
    edits are applied once when the stage ends, so every plugin of the stage sees the message
    as received. Results for Authentication-Results go in ``transaction.auth_results``.
    ``discard`` answers 250 and delivers nowhere; ``quarantine`` answers 250 and delivers
    local copies to the Junk folder only.
    """


@hookspec
def gomail_deliver(
    session: Session, transaction: Transaction, message: Message, options: dict, app: App
) -> Verdict | None:
    """Decide where the finished message goes, by adding to ``transaction.plan``
    (``plan.to_mailbox(user, folder)``, ``plan.to_queue(address)``, or
    ``plan.to_queue(address, sender=...)`` for a copy with its own envelope sender, as the
    ``queue`` plugin does for SRS).

    ``message.raw`` is final here (edits applied, trace headers added). The core commits the
    whole plan atomically and durably once the stage ends, then answers 250.
    """


# --- outbound stages -------------------------------------------------------------------------
# They run in the queue runner, for each try of one queued message to one destination domain
# (an :class:`~gomail.delivery.policy.Attempt`), where the pipeline file's ``outbound:``
# section names the plugin::
#
#     outbound:
#       throttle:   [{throttle: {per_minute: 120}}]
#       tls_policy: [dane, mta-sts]
#
# At ``throttle`` and ``route`` a reject fails the attempt's recipients for good: the sender
# gets a DSN with the verdict's text (event ``email.failed``). At ``route`` a tempfail defers
# them to the next retry; ``throttle`` and ``tls_policy`` say below what theirs does. A plugin
# that raises or times out counts as its ``on_error`` says, as in the SMTP stages
# (``tempfail`` by default).


@hookspec
def gomail_throttle(attempt: Attempt, options: dict, app: App) -> Verdict | None:
    """Before anything else of an attempt: may this destination get mail now?

    A tempfail postpones the attempt ``attempt.retry_in`` seconds (default 60; the plugin may
    set it) without counting it as a failed try and without telling the sender anything.
    """


@hookspec
def gomail_route(attempt: Attempt, options: dict, app: App) -> Verdict | None:
    """Decide where the attempt goes, before the MX look-up.

    ``attempt.smarthost`` holds the configured smarthost for the domain (or None) and
    ``attempt.mx`` is None (look up the domain's MX records). A plugin may set either: a
    :class:`~gomail.config.Smarthost` to relay through, or a list of
    :class:`~gomail.dns.MXHost` to try in order instead of the MX records.
    """


@hookspec
def gomail_tls_policy(
    attempt: Attempt, mx: MXHost, policy: TLSPolicy, options: dict, app: App
) -> Verdict | None:
    """Before connecting to MX host ``mx`` (not for a smarthost, whose TLS is configured).

    ``policy`` starts opportunistic; a plugin tightens it (``policy.require(name)``,
    ``policy.add_check(name, check)``, see :class:`~gomail.delivery.policy.TLSPolicy`). A
    tempfail or reject skips this host (as MTA-STS does for a host outside the policy): the
    next host is tried, and when none is left the attempt is deferred with the verdict's text.
    """


# --- lifecycle ------------------------------------------------------------------------------


@hookspec
def gomail_plugin_options() -> dict[str, Option]:
    """The settings this plugin takes where a pipeline uses it, by name.

    The engine checks each use's settings against them when the pipeline loads: an unknown
    name or a wrong type stops the server with the file and line. ``on_error`` and ``timeout``
    are the engine's own and always allowed.
    """


@hookspec
async def gomail_startup(app: App) -> None:
    """The server is starting: open connections, start background tasks. Awaited in turn."""


@hookspec
async def gomail_shutdown(app: App) -> None:
    """The server is stopping, after listeners closed and sessions finished."""


@hookspec
def gomail_http_routes(app: App, router: Any) -> None:
    """Add routes to the HTTP application's router (aiohttp ``UrlDispatcher``)."""


@hookspec
def gomail_cli_commands(group: click.Group) -> None:
    """Add commands to the ``gomail`` command (``group.add_command(...)``)."""


# --- events ---------------------------------------------------------------------------------


@hookspec
def gomail_event(event: Event, app: App) -> Any:
    """Something happened: ``event.name`` (``email.received``, ``email.delivered``,
    ``security.login_failed``, ``user.created``, …) and ``event.data``.

    Called on every installed plugin. It must not block: a coroutine it returns is run as a
    background task, and its failure is logged, never raised into the server.
    """
