"""The pipeline engine: YAML checking with file and line, stage order, verdicts, failures."""

import asyncio
import textwrap
from types import SimpleNamespace

import pytest
from gomail import Verdict, hookimpl
from gomail.context import Recipient, Session, Transaction
from gomail.message import Message
from gomail.options import Option
from gomail.pipeline import load_pipelines, run_stage
from gomail.plugins import PluginError, PluginManager
from gomail.verdict import Action
from gomail.yamlfile import ConfigError

CALLS: list[str] = []


class Tagger:
    """Records its calls; continues."""

    def __init__(self, tag):
        self.tag = tag

    @hookimpl
    def gomail_plugin_options(self):
        return {"level": Option(int, 1), "mode": Option(str, "a", choices=("a", "b"))}

    @hookimpl
    async def gomail_rcpt(self, recipient, options):
        CALLS.append(f"{self.tag}:{recipient.address}:{options['level']}")

    @hookimpl
    async def gomail_data(self, message):
        message.add_header("X-Tag", self.tag)


class Rejecter:
    @hookimpl
    async def gomail_rcpt(self):
        return Verdict.reject(550, "5.1.1", "nope")


class Sleeper:
    @hookimpl
    async def gomail_rcpt(self):
        await asyncio.sleep(10)


class Raiser:
    @hookimpl
    def gomail_rcpt(self):
        raise RuntimeError("boom")


class WrongReturn:
    @hookimpl
    async def gomail_rcpt(self):
        return "yes"


# Unmarked functions named gomail_* count too, as pytest_* do in pytest.
class Unmarked:
    async def gomail_rcpt(self):
        CALLS.append("unmarked")


@pytest.fixture
def pm():
    CALLS.clear()
    m = PluginManager()
    m.register(Tagger("one"), "one")
    m.register(Tagger("two"), "two")
    m.register(Rejecter(), "rejecter")
    m.register(Sleeper(), "sleeper")
    m.register(Raiser(), "raiser")
    m.register(WrongReturn(), "wrong")
    m.register(Unmarked(), "unmarked")
    return m


def write(tmp_path, text):
    p = tmp_path / "p.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def load(tmp_path, pm, text):
    return load_pipelines(write(tmp_path, text), pm, 30.0)


def args():
    return {
        "session": Session("S1", "mx", "p", "127.0.0.1", 1),
        "transaction": Transaction("T1", "a@b"),
        "recipient": Recipient("r@example.org"),
        "app": SimpleNamespace(),
    }


async def test_stage_runs_in_yaml_order_with_options(tmp_path, pm):
    ps = load(
        tmp_path,
        pm,
        """
        pipelines:
          p:
            rcpt: [two, {one: {level: 7}}, unmarked]
        """,
    )
    v = await run_stage(ps.pipelines["p"].uses("rcpt"), args())
    assert v.action is Action.CONTINUE
    assert CALLS == ["two:r@example.org:1", "one:r@example.org:7", "unmarked"]


async def test_first_verdict_ends_stage(tmp_path, pm):
    ps = load(tmp_path, pm, "pipelines:\n  p:\n    rcpt: [one, rejecter, two]\n")
    v = await run_stage(ps.pipelines["p"].uses("rcpt"), args())
    assert (v.action, v.code, v.enhanced, v.plugin) == (Action.REJECT, 550, "5.1.1", "rejecter")
    assert CALLS == ["one:r@example.org:1"]


async def test_timeout_gets_on_error_policy(tmp_path, pm):
    ps = load(tmp_path, pm, "pipelines:\n  p:\n    rcpt: [{sleeper: {timeout: 0.05}}, one]\n")
    v = await run_stage(ps.pipelines["p"].uses("rcpt"), args())
    assert (v.action, v.code, v.enhanced, v.plugin) == (Action.TEMPFAIL, 451, "4.3.0", "sleeper")
    assert CALLS == []


@pytest.mark.parametrize(
    ("policy", "action", "code"),
    [("tempfail", Action.TEMPFAIL, 451), ("reject", Action.REJECT, 550)],
)
async def test_exception_gets_on_error_policy(tmp_path, pm, policy, action, code):
    ps = load(tmp_path, pm, f"pipelines:\n  p:\n    rcpt: [{{raiser: {{on_error: {policy}}}}}]\n")
    v = await run_stage(ps.pipelines["p"].uses("rcpt"), args())
    assert (v.action, v.code) == (action, code)


async def test_on_error_continue_skips_the_failure(tmp_path, pm, caplog):
    ps = load(tmp_path, pm, "pipelines:\n  p:\n    rcpt: [{raiser: {on_error: continue}}, one]\n")
    v = await run_stage(ps.pipelines["p"].uses("rcpt"), args())
    assert v.action is Action.CONTINUE
    assert CALLS == ["one:r@example.org:1"]
    assert "plugin raiser failed in rcpt" in caplog.text


async def test_non_verdict_return_is_a_failure(tmp_path, pm):
    ps = load(tmp_path, pm, "pipelines:\n  p:\n    rcpt: [wrong]\n")
    v = await run_stage(ps.pipelines["p"].uses("rcpt"), args())
    assert v.action is Action.TEMPFAIL and v.plugin == "wrong"


async def test_data_edits_are_attributed_and_deferred(tmp_path, pm):
    ps = load(tmp_path, pm, "pipelines:\n  p:\n    data: [one, two]\n")
    msg = Message(b"Subject: x\r\n\r\nbody\r\n")
    a = args() | {"message": msg}
    await run_stage(ps.pipelines["p"].uses("data"), a)
    assert [e.plugin for e in msg.edits] == ["one", "two"]
    assert msg.edited().startswith(b"X-Tag: two\r\nX-Tag: one\r\nSubject: x")


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("pipelines:\n  p:\n    rcpt: [nosuch]\n", 3, "unknown plugin 'nosuch'"),
        (
            "pipelines:\n  p:\n    rcpt:\n      - one\n      - {one: {lvl: 2}}\n",
            5,
            "no option 'lvl'",
        ),
        ("pipelines:\n  p:\n    rcpt: [{one: {level: x}}]\n", 3, "expected int"),
        ("pipelines:\n  p:\n    rcpt: [{one: {mode: c}}]\n", 3, "expected one of a, b"),
        ("pipelines:\n  p:\n    rcpt: [{one: {on_error: explode}}]\n", 3, "on_error"),
        ("pipelines:\n  p:\n    helo: [rejecter]\n", 3, "no hook for the helo stage"),
        ("pipelines:\n  p:\n    rcptt: [one]\n", 3, "unknown stage 'rcptt'"),
        ("pipelines:\n  p:\n    rcpt: [one\n", 4, ""),
        ("listeners:\n  mx: {port: 25, pipeline: nope}\npipelines: {}\n", 2, "no pipeline 'nope'"),
        (
            "listeners:\n  mx: {port: 25, pipeline: p, colour: red}\npipelines: {p: {}}\n",
            2,
            "colour",
        ),
        ("pipelines:\n  p: {}\n  p: {}\n", 3, "duplicate key"),
        ("other: 1\n", 1, "unknown key 'other'"),
    ],
)
def test_bad_pipeline_names_file_line_and_problem(tmp_path, pm, text, line, needle):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, pm, text)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'p.yaml'}:{line}:"), msg
    assert needle in msg


def test_unknown_hook_name_is_refused():
    class Typo:
        def gomail_rcptt(self):
            pass

    with pytest.raises(PluginError, match="unknown hook gomail_rcptt"):
        PluginManager().register(Typo(), "typo")


def test_entry_points_find_core_and_third_party_plugins():
    m = PluginManager()
    m.load_entrypoints()
    assert {"recipients", "mailbox", "queue", "ratelimit", "sink", "example.header"} <= set(
        m.names()
    )
    info = {p.name: p for p in m.info()}
    assert info["example.header"].distribution == "gomail-example-header"
    assert "data" in info["example.header"].hooks
    assert info["mailbox"].distribution == "gomail-core"


def test_stock_pipeline_is_valid():
    from gomail.config import stock_pipeline_path

    m = PluginManager()
    m.load_entrypoints()
    ps = load_pipelines(stock_pipeline_path(), m, 30.0)
    assert set(ps.listeners) == {"mx", "submission", "smtps"}
    assert ps.listeners["smtps"].tls == "implicit"
    assert ps.listeners["submission"].starttls == "required"
    assert ps.listeners["mx"].auth == "none"


def test_verdict_reply_lines():
    v = Verdict.reject(550, "5.7.1", "line one\nline two")
    assert v.smtp_reply() == "550-5.7.1 line one\r\n550 5.7.1 line two"
    with pytest.raises(ValueError):
        Verdict.reject(451, "4.3.0")
    with pytest.raises(ValueError):
        Verdict.tempfail(451, "5.3.0")
