"""Pipelines: read from YAML, checked against the installed plugins, and run stage by stage.

A pipeline file has two parts::

    listeners:
      mx:         {port: 25,  pipeline: inbound}
      submission: {port: 587, pipeline: submission, auth: required, starttls: required}
      smtps:      {port: 465, pipeline: submission, tls: implicit}
    pipelines:
      inbound:
        rcpt:    [recipients]
        data:    [{example.header: {value: hi, timeout: 5, on_error: continue}}]
        deliver: [mailbox, queue]

and an optional third, the outbound queue's stages (run for each delivery attempt)::

    outbound:
      throttle:   [{throttle: {per_minute: 120}}]
      tls_policy: [dane, mta-sts]

A stage lists plugin uses, each a name or a one-key mapping ``{name: {options}}``. Options are
checked against what the plugin declares; ``timeout`` (seconds) and ``on_error``
(``tempfail``, ``reject`` or ``continue``) belong to the engine.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from gomail.hookspecs import OUTBOUND_STAGES, STAGES
from gomail.options import Option
from gomail.plugins import PluginError, PluginManager
from gomail.verdict import CONTINUE, Action, Verdict
from gomail.yamlfile import ConfigError, LineDict, LineList, line_of, load_yaml

log = logging.getLogger("gomail.pipeline")

ON_ERROR = ("tempfail", "reject", "continue")
LISTENER_KEYS = {
    "port": (int,),
    "host": (str,),
    "pipeline": (str,),
    "auth": (str,),
    "starttls": (str,),
    "tls": (str,),
}
_ENGINE_OPTIONS = {
    "timeout": Option(float, None, "seconds before the plugin counts as failed"),
    "on_error": Option(str, "tempfail", "what a failure means", ON_ERROR),
}


@dataclass(frozen=True, slots=True)
class PluginUse:
    """One plugin at one place in a stage, with its settings."""

    name: str
    stage: str
    impl: pluggy.HookImpl
    options: dict[str, Any]
    timeout: float
    on_error: str
    line: int


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening socket as the pipeline file declares it."""

    name: str
    host: str
    port: int
    pipeline: str
    auth: str = "optional"  # required | optional | none
    starttls: str = "optional"  # required | optional | none
    tls: str = "starttls"  # starttls | implicit | none


@dataclass
class Pipeline:
    name: str
    stages: dict[str, list[PluginUse]] = field(default_factory=dict)

    def uses(self, stage: str) -> list[PluginUse]:
        return self.stages.get(stage, [])


@dataclass
class PipelineSet:
    """Everything a pipeline file declares, checked."""

    path: Path
    listeners: dict[str, Listener]
    pipelines: dict[str, Pipeline]
    outbound: Pipeline = field(default_factory=lambda: Pipeline("outbound"))

    def describe(self) -> str:
        """The effective configuration, for ``gomail pipeline check``."""
        out = [f"# {self.path}", "listeners:"]
        for ln in self.listeners.values():
            out.append(
                f"  {ln.name}: {ln.host}:{ln.port} pipeline={ln.pipeline} tls={ln.tls}"
                f" starttls={ln.starttls} auth={ln.auth}"
            )
        out.append("pipelines:")
        for p in self.pipelines.values():
            out.append(f"  {p.name}:")
            for stage in STAGES:
                uses = p.uses(stage)
                if not uses:
                    continue
                parts = _describe_uses(uses)
                out.append(f"    {stage}: " + "; ".join(parts))
        if self.outbound.stages:
            out.append("outbound:")
            for stage in OUTBOUND_STAGES:
                if self.outbound.uses(stage):
                    out.append(
                        f"  {stage}: " + "; ".join(_describe_uses(self.outbound.uses(stage)))
                    )
        return "\n".join(out)


def _describe_uses(uses: list[PluginUse]) -> list[str]:
    parts = []
    for u in uses:
        opts = ", ".join(f"{k}={v!r}" for k, v in u.options.items())
        extra = f" timeout={u.timeout:g}s on_error={u.on_error}"
        parts.append(f"{u.name}({opts}){extra}" if opts else f"{u.name}{extra}")
    return parts


def load_pipelines(path: Path, plugins: PluginManager, default_timeout: float) -> PipelineSet:
    """Read and check a pipeline file; ConfigError naming file and line on any problem."""
    doc = load_yaml(path)

    def fail(line: int, msg: str) -> ConfigError:
        return ConfigError(f"{path}:{line}: {msg}" if line else f"{path}: {msg}")

    if not isinstance(doc, LineDict):
        raise fail(line_of(doc), "expected a mapping with 'listeners' and 'pipelines'")
    for key in doc:
        if key not in ("listeners", "pipelines", "outbound"):
            raise fail(
                line_of(doc, key), f"unknown key {key!r} (expected listeners, pipelines, outbound)"
            )
    raw_pipes = doc.get("pipelines") or LineDict()
    if not isinstance(raw_pipes, dict):
        raise fail(line_of(doc, "pipelines"), "'pipelines' must be a mapping of name to stages")
    pipelines = {}
    for pname, stages in raw_pipes.items():
        pipelines[str(pname)] = _load_pipeline(
            str(pname), stages, line_of(raw_pipes, pname), plugins, default_timeout, fail
        )
    raw_listeners = doc.get("listeners") or LineDict()
    if not isinstance(raw_listeners, dict):
        raise fail(line_of(doc, "listeners"), "'listeners' must be a mapping")
    listeners = {}
    for lname, spec in raw_listeners.items():
        listeners[str(lname)] = _load_listener(
            str(lname), spec, line_of(raw_listeners, lname), pipelines, fail
        )
    outbound = _load_pipeline(
        "outbound", doc.get("outbound"), line_of(doc, "outbound"), plugins, default_timeout, fail,
        OUTBOUND_STAGES,
    )  # fmt: skip
    return PipelineSet(path, listeners, pipelines, outbound)


def _load_listener(name, spec, line, pipelines, fail) -> Listener:
    if not isinstance(spec, dict):
        raise fail(line, f"listener {name}: expected a mapping like {{port: 25, pipeline: x}}")
    for key, value in spec.items():
        if key not in LISTENER_KEYS:
            raise fail(line_of(spec, key), f"listener {name}: unknown key {key!r}")
        if value is False and key in ("auth", "starttls", "tls"):
            continue
        if not isinstance(value, LISTENER_KEYS[key]) or isinstance(value, bool):
            raise fail(line_of(spec, key), f"listener {name}: {key} has the wrong type")
    if "port" not in spec or "pipeline" not in spec:
        raise fail(line, f"listener {name}: needs 'port' and 'pipeline'")
    if spec["pipeline"] not in pipelines:
        raise fail(line_of(spec, "pipeline"), f"listener {name}: no pipeline {spec['pipeline']!r}")
    choices = {
        "auth": ("required", "optional", "none"),
        "starttls": ("required", "optional", "none"),
        "tls": ("starttls", "implicit", "none"),
    }
    spec = dict(spec)
    for key, allowed in choices.items():
        if spec.get(key) is False:  # YAML 1.1 reads a bare `off` or `no` as false
            spec[key] = "none"
        if key in spec and spec[key] not in allowed:
            raise fail(line_of(spec, key), f"listener {name}: {key} is one of {', '.join(allowed)}")
    tls = spec.get("tls", "starttls")
    starttls = spec.get("starttls", "optional" if tls == "starttls" else "none")
    return Listener(
        name=name,
        host=spec.get("host", "0.0.0.0"),
        port=spec["port"],
        pipeline=spec["pipeline"],
        auth=spec.get("auth", "optional"),
        starttls=starttls,
        tls=tls,
    )


def _load_pipeline(
    name, stages, line, plugins, default_timeout, fail, allowed: tuple[str, ...] = STAGES
) -> Pipeline:
    pipe = Pipeline(name)
    if stages is None:
        return pipe
    if not isinstance(stages, dict):
        raise fail(line, f"pipeline {name}: expected a mapping of stage to plugin list")
    for stage, uses in stages.items():
        sline = line_of(stages, stage)
        if stage not in allowed:
            raise fail(sline, f"pipeline {name}: unknown stage {stage!r} ({', '.join(allowed)})")
        if uses is None:
            uses = LineList()
        if not isinstance(uses, list):
            raise fail(sline, f"pipeline {name}.{stage}: expected a list of plugins")
        pipe.stages[stage] = [
            _load_use(item, stage, line_of(uses, i) or sline, plugins, default_timeout, fail)
            for i, item in enumerate(uses)
        ]
    return pipe


def _load_use(item, stage, line, plugins: PluginManager, default_timeout, fail) -> PluginUse:
    if isinstance(item, str):
        pname, given = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        pname, given = next(iter(item.items()))
        given = given if given is not None else {}
        if not isinstance(given, dict):
            raise fail(line, f"plugin {pname}: options must be a mapping")
    else:
        raise fail(line, "a plugin is a name or a one-key mapping {name: {option: value}}")
    if pname in plugins.broken:
        raise fail(
            line, f"plugin {pname!r} is installed but failed to load: {plugins.broken[pname]}"
        )
    if not plugins.has(pname):
        known = ", ".join(plugins.names()) or "none"
        raise fail(line, f"unknown plugin {pname!r} (installed: {known})")
    impl = plugins.impl(pname, stage)
    if impl is None:
        raise fail(line, f"plugin {pname!r} has no hook for the {stage} stage")
    try:
        declared = plugins.options(pname)
    except PluginError as exc:
        raise fail(line, str(exc)) from None
    options: dict[str, Any] = {k: opt.default for k, opt in declared.items()}
    timeout, on_error = default_timeout, "tempfail"
    for key, value in given.items():
        kline = line_of(given, key) or line
        spec = _ENGINE_OPTIONS.get(key) or declared.get(key)
        if spec is None:
            known = ", ".join(sorted([*declared, *_ENGINE_OPTIONS]))
            raise fail(kline, f"plugin {pname!r} has no option {key!r} (options: {known})")
        problem = spec.check(value)
        if problem:
            raise fail(kline, f"plugin {pname!r} option {key}: {problem}")
        if key == "timeout":
            if value <= 0:
                raise fail(kline, f"plugin {pname!r}: timeout must be positive")
            timeout = float(value)
        elif key == "on_error":
            on_error = value
        else:
            options[key] = value
    return PluginUse(pname, stage, impl, options, timeout, on_error, line)


def _failure_verdict(use: PluginUse) -> Verdict:
    if use.on_error == "reject":
        return Verdict.reject(550, "5.3.0", "Message processing failed").by(use.name)
    if use.on_error == "continue":
        return CONTINUE
    return Verdict.tempfail(451, "4.3.0", "Temporary local problem, try again later").by(use.name)


async def run_stage(uses: list[PluginUse], args: dict[str, Any], session_id: str = "") -> Verdict:
    """Run one stage: each use in order, each awaited under its timeout.

    ``args`` holds every argument the stage offers (session, transaction, …, app); each
    implementation gets the ones it names, plus ``options``. Returns the first verdict that
    is not continue (with ``plugin`` set), or continue.
    """
    message = args.get("message")
    for use in uses:
        impl = use.impl
        try:
            kwargs = {n: (use.options if n == "options" else args[n]) for n in impl.argnames}
            if message is not None:
                message._current_plugin = use.name
            started = time.monotonic()
            result = impl.function(**kwargs)
            if inspect.isawaitable(result):
                async with asyncio.timeout(use.timeout):
                    result = await result
        except TimeoutError:
            log.error(
                "plugin %s timed out after %.1fs in %s (session %s); on_error=%s",
                use.name, time.monotonic() - started, use.stage, session_id, use.on_error,
            )  # fmt: skip
            result = _failure_verdict(use)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "plugin %s failed in %s (session %s); on_error=%s",
                use.name, use.stage, session_id, use.on_error,
            )  # fmt: skip
            result = _failure_verdict(use)
        finally:
            if message is not None:
                message._current_plugin = None
        if result is None:
            continue
        if not isinstance(result, Verdict):
            log.error(
                "plugin %s returned %r from %s, not a Verdict or None; on_error=%s",
                use.name, result, use.stage, use.on_error,
            )  # fmt: skip
            result = _failure_verdict(use)
        if result.action is not Action.CONTINUE:
            return result if result.plugin else result.by(use.name)
    return CONTINUE
