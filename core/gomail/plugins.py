"""The plugin registry: pluggy, fed from the ``gomail`` entry-point group.

The core's own pipeline pieces are registered by gomail-core's entry points, so they are
found exactly like third-party plugins. As in pytest, a hook implementation is any function
named ``gomail_<hook>``; the ``@gomail.hookimpl`` marker is optional.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from gomail import hookspecs
from gomail.options import Option

log = logging.getLogger("gomail.plugins")


class PluginError(Exception):
    """A plugin could not be loaded or does not fit the contract."""


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


class _Manager(pluggy.PluginManager):
    def parse_hookimpl_opts(self, plugin: Any, name: str):  # type: ignore[override]
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("gomail_"):
            method = getattr(plugin, name, None)
            if inspect.isroutine(method):
                opts = {
                    "wrapper": False,
                    "hookwrapper": False,
                    "optionalhook": False,
                    "tryfirst": False,
                    "trylast": False,
                    "specname": None,
                }
        return opts


class PluginManager:
    """Installed plugins by name, and the hook implementations each provides."""

    def __init__(self) -> None:
        self.pm = _Manager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._info: dict[str, PluginInfo] = {}
        self.broken: dict[str, str] = {}

    def load_entrypoints(self) -> None:
        """Register every plugin of the ``gomail`` entry-point group.

        A plugin that fails to load is remembered in ``broken`` (name → reason) rather than
        stopping the server; using it in a pipeline is an error.
        """
        for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
            if ep.name in self._info or ep.name in self.broken:
                continue
            dist = ep.dist.name if ep.dist else "?"
            ver = ep.dist.version if ep.dist else "?"
            try:
                obj = ep.load()
                self.register(obj, ep.name, dist, ver)
            except Exception as exc:  # a broken third-party plugin must not stop the server
                reason = f"{type(exc).__name__}: {exc}"
                self.broken[ep.name] = reason
                log.warning("plugin %s (%s %s) failed to load: %s", ep.name, dist, ver, reason)

    def register(self, obj: Any, name: str, distribution: str = "-", version: str = "-") -> None:
        """Register a module, class (instantiated here) or instance under ``name``."""
        if inspect.isclass(obj):
            obj = obj()
        try:
            self.pm.register(obj, name=name)
            unknown = [
                hook
                for hook in dir(obj)
                if hook.startswith("gomail_") and not getattr(self.pm.hook, hook).has_spec()
            ]
            if unknown:
                self.pm.unregister(name=name)
                raise PluginError(f"unknown hook {', '.join(unknown)} (see gomail.hookspecs)")
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from None
        hooks = tuple(
            sorted(h.name.removeprefix("gomail_") for h in self.pm.get_hookcallers(obj) or ())
        )
        self._info[name] = PluginInfo(name, distribution, version, hooks)

    def names(self) -> list[str]:
        return sorted(self._info)

    def info(self) -> list[PluginInfo]:
        return [self._info[n] for n in self.names()]

    def has(self, name: str) -> bool:
        return name in self._info

    def impl(self, name: str, hook: str) -> pluggy.HookImpl | None:
        """The implementation of ``gomail_<hook>`` by plugin ``name``, if it has one."""
        plugin = self.pm.get_plugin(name)
        caller = getattr(self.pm.hook, f"gomail_{hook}")
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                return impl
        return None

    def options(self, name: str) -> dict[str, Option]:
        """The options plugin ``name`` declares (empty when it declares none)."""
        impl = self.impl(name, "plugin_options")
        if impl is None:
            return {}
        declared = impl.function()
        if not isinstance(declared, dict) or not all(
            isinstance(v, Option) for v in declared.values()
        ):
            raise PluginError(f"plugin {name}: gomail_plugin_options must return {{name: Option}}")
        return declared

    def impls(self, hook: str) -> list[tuple[str, pluggy.HookImpl]]:
        """Every (plugin name, implementation) of a broadcast hook."""
        caller = getattr(self.pm.hook, f"gomail_{hook}")
        return [(impl.plugin_name, impl) for impl in caller.get_hookimpls()]
