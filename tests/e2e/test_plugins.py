"""Plugins from the outside: the example third-party plugin in a pipeline of our own, broken
pipelines, `gomail plugins` and `gomail pipeline check`."""

from __future__ import annotations

import re
import subprocess
import time

import yaml

SENDER = "someone@sender.example"


def pipeline_with_example_header(g, value: str) -> dict:
    """The stock pipeline with example.header added to the inbound data stage."""
    doc = yaml.safe_load(g.stock_pipeline_path().read_text())
    doc["pipelines"]["inbound"]["data"] = [{"example.header": {"value": value}}]
    return doc


def test_example_plugin_adds_its_header(gomail_factory, tmp_path):
    g = gomail_factory()
    path = tmp_path / "with-example.yaml"
    path.write_text(yaml.safe_dump(pipeline_with_example_header(g, "hello-e2e")))
    g.start({"pipeline": str(path)})
    msgid, data = g.make_message(SENDER, "alice@example.org")
    r = g.transact(SENDER, ["alice@example.org"], data)
    g.assert_reply(r["data"], 250, "2.0.0")
    stored = [m for m in g.messages("alice@example.org") if msgid.encode() in m]
    assert len(stored) == 1
    head = stored[0].split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"^X-Gomail-Example: hello-e2e\r?$", head, re.M), head
    # submission is a different pipeline: no header there
    with g.submission() as s:
        msgid2, data2 = g.make_message("alice@example.org", "bob@example.org")
        assert s.sendmail("alice@example.org", ["bob@example.org"], data2) == {}
    stored = [m for m in g.messages("bob@example.org") if msgid2.encode() in m]
    assert len(stored) == 1 and b"X-Gomail-Example" not in stored[0]
    g.stop()


BAD_PIPELINE = """\
listeners:
  mx:         {port: 25,  pipeline: inbound, auth: off}
pipelines:
  inbound:
    rcpt:    [recipients]
    data:
      - no.such.plugin
    deliver: [mailbox, queue]
"""
BAD_LINE = 7


def run_until_exit(g, timeout=30) -> tuple[int, str]:
    proc = g.spawn()
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        g.kill9()
        raise AssertionError(f"gomail run kept running with a bad pipeline:\n{g.log}") from None
    g.kill9()
    return rc, g.log


def test_unknown_plugin_stops_run_with_file_and_line(gomail_factory, tmp_path):
    g = gomail_factory()
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_PIPELINE)
    g.extra_config = {"pipeline": str(path)}
    t0 = time.monotonic()
    rc, log = run_until_exit(g)
    assert rc != 0
    assert time.monotonic() - t0 < 30
    assert "no.such.plugin" in log, log
    assert str(path) in log or path.name in log, log
    assert re.search(rf"(:{BAD_LINE}\b|line {BAD_LINE}\b)", log), log
    assert "Traceback" not in log, log


def test_unknown_option_stops_run(gomail_factory, tmp_path):
    g = gomail_factory()
    doc = pipeline_with_example_header(g, "x")
    doc["pipelines"]["inbound"]["data"] = [{"example.header": {"no_such_option": 1}}]
    path = tmp_path / "bad-option.yaml"
    path.write_text(yaml.safe_dump(doc))
    g.extra_config = {"pipeline": str(path)}
    rc, log = run_until_exit(g)
    assert rc != 0
    assert "no_such_option" in log and path.name in log, log
    assert "Traceback" not in log, log


def test_malformed_pipeline_stops_run(gomail_factory, tmp_path):
    g = gomail_factory()
    path = tmp_path / "broken.yaml"
    path.write_text("pipelines:\n  inbound:\n    rcpt: [recipients\n")
    g.extra_config = {"pipeline": str(path)}
    rc, log = run_until_exit(g)
    assert rc != 0
    assert path.name in log, log
    assert "Traceback" not in log, log


def test_gomail_plugins_lists_core_and_example(gomail_factory):
    g = gomail_factory()
    out = g.cli("plugins").stdout
    for name in ("recipients", "mailbox", "queue", "example.header"):
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), out
    line = next(ln for ln in out.splitlines() if ln.startswith("example.header"))
    assert "gomail-example-header" in line and "0.1.0" in line and "data" in line, line


def test_pipeline_check(gomail_factory, tmp_path):
    g = gomail_factory()
    # the stock pipeline
    r = g.cli("pipeline", "check")
    assert "inbound" in r.stdout and "submission" in r.stdout, r.stdout
    # a good custom one
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(pipeline_with_example_header(g, "v")))
    r = g.cli("pipeline", "check", str(good))
    assert "example.header" in r.stdout, r.stdout
    # a bad one
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_PIPELINE)
    r = g.cli("pipeline", "check", str(bad), check=False)
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert "no.such.plugin" in err and bad.name in err, err
    assert re.search(rf"(:{BAD_LINE}\b|line {BAD_LINE}\b)", err), err
    assert "Traceback" not in err, err


def test_version(gomail_factory):
    g = gomail_factory()
    out = g.cli("version").stdout
    assert re.match(r"gomail \d+\.\d+", out), out
