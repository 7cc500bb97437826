"""The plugin manager: finds connectors through entry points, once, lazily.

Nothing is loaded at import time, so a command line built on it starts fast. A hookimpl whose
name matches no spec (a misspelling) fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pluggy

from connector.sdk import hookspecs
from connector.sdk.errors import PluginError
from connector.sdk.manifest import Manifest

#: Connectors register themselves under this entry-point group.
ENTRY_POINT_GROUP = "connector_sdk.connectors"
#: Comma-separated entry-point names that must not be loaded (a block list).
BLOCK_ENV = "CONNECTOR_SDK_BLOCK"
#: Set to 1 to check every connector's manifest and schemas against their metaschemas when they
#: are collected (:meth:`Manifest.check`, which runs skip): for connector authors.
CHECK_ENV = "CONNECTOR_SDK_CHECK_MANIFESTS"


def create_plugin_manager(
    plugins: Iterable[Any] = (),
    *,
    entry_points: bool = True,
    block: Iterable[str] = (),
) -> pluggy.PluginManager:
    """A plugin manager with the SDK's hook specs and the given connectors.

    :param plugins: connector plugins (modules or objects) to register directly.
    :param entry_points: also load every connector installed under :data:`ENTRY_POINT_GROUP`.
    :param block: entry-point names not to load (added to those in ``$CONNECTOR_SDK_BLOCK``).
    :raises PluginError: a connector fails to load or implements a hook with no spec.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = set(block) | {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}
    for name in blocked:
        pm.set_blocked(name)
    for plugin in plugins:
        try:
            pm.register(plugin)
        except (pluggy.PluginValidationError, ValueError) as exc:  # a hookimpl with a wrong argument
            raise PluginError(f"connector plugin {plugin!r} is broken: {' '.join(str(exc).split())}") from None
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # an installed connector that does not import
            raise PluginError(f"a connector failed to load: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"connector plugin {exc.plugin!r} is broken: {exc}") from None
    return pm


class Connectors:
    """The installed connectors, addressed by manifest id.

    :param check: also check each manifest and its schemas against their metaschemas as they
        are collected (:meth:`Manifest.check`: a connector author's check, costly, off for runs);
        by default on when ``$CONNECTOR_SDK_CHECK_MANIFESTS`` is ``1``.
    """

    def __init__(self, pm: pluggy.PluginManager, *, check: bool | None = None) -> None:
        self.pm = pm
        self.check = os.environ.get(CHECK_ENV, "").strip() == "1" if check is None else check
        self._manifests: dict[str, Manifest] | None = None

    @property
    def manifests(self) -> dict[str, Manifest]:
        if self._manifests is None:
            found: dict[str, Manifest] = {}
            for manifest in self.pm.hook.connector_manifest():
                if manifest.id in found:
                    raise PluginError(f"two installed connectors share the id {manifest.id!r}")
                if self.check:
                    manifest.check()
                found[manifest.id] = manifest
            self._manifests = found
        return self._manifests

    def manifest(self, connector_id: str) -> Manifest:
        try:
            return self.manifests[connector_id]
        except KeyError:
            installed = ", ".join(sorted(self.manifests)) or "none"
            raise PluginError(f"no connector {connector_id!r} is installed (installed: {installed})") from None

    @property
    def hook(self) -> Any:
        return self.pm.hook


_default: Connectors | None = None


def installed_connectors() -> Connectors:
    """The connectors installed in this environment, loaded on first use and then kept."""
    global _default
    if _default is None:
        _default = Connectors(create_plugin_manager())
    return _default
