"""The plugin manager: finds connectors through entry points, once, lazily.

Nothing is loaded at import time, so a command line built on it starts fast. A hookimpl whose
name matches no spec (a misspelling) fails loudly instead of being silently ignored. Each
connector plugin is registered under its manifest id, and :meth:`Connectors.get` returns a
:class:`Connector` whose methods call that plugin only: no hook compares connector ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from connector.sdk import hookspecs
from connector.sdk.entrypoints import EntryPoint, distribution, entry_points
from connector.sdk.errors import ConnectorError, PluginError

if TYPE_CHECKING:
    from connector.sdk.commands import Command
    from connector.sdk.documents import Document, Result
    from connector.sdk.listener import Listener
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
    """A plugin manager with the SDK's hook specs and the given connectors, each registered
    under its manifest id.

    :param plugins: connector plugins (modules or objects) to register directly.
    :param entry_points: also load every connector installed under :data:`ENTRY_POINT_GROUP`;
        one whose entry-point name is not its manifest id is registered again under the id.
    :param block: entry-point names (or manifest ids) not to load (added to those in
        ``$CONNECTOR_SDK_BLOCK``).
    :raises PluginError: a connector fails to load, implements a hook with no spec, has no
        manifest, or has the id of another.
    """
    pm = _PluginManager(hookspecs.PROJECT)
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
            pm.load_entry_points(ENTRY_POINT_GROUP)
        except Exception as exc:  # an installed connector that does not import
            raise PluginError(f"a connector failed to load: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"connector plugin {exc.plugin!r} is broken: {exc}") from None
    _register_under_ids(pm)
    return pm


class _PluginManager(pluggy.PluginManager):
    """pluggy's, loading entry points without importing importlib.metadata (:mod:`connector.sdk.entrypoints`):
    the distribution of each connector is read only when asked for."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self._loaded: list[tuple[Any, EntryPoint]] = []

    def load_entry_points(self, group: str) -> int:
        """Load and register every plugin of the entry-point ``group`` (as ``load_setuptools_entrypoints``)."""
        count = 0
        for ep in entry_points(group):
            if self.has_plugin(ep.name) or self.is_blocked(ep.name):
                continue
            plugin = ep.load()
            self.register(plugin, name=ep.name)
            self._loaded.append((plugin, ep))
            count += 1
        return count

    def list_plugin_distributions(self) -> list[tuple[Any, Any]]:
        return [(plugin, distribution(ep)) for plugin, ep in self._loaded]

    def list_plugin_distinfo(self) -> list[tuple[Any, Any]]:
        return [(plugin, _DistInfo(dist)) for plugin, dist in self.list_plugin_distributions()]


class _DistInfo:
    """A distribution as ``list_plugin_distinfo`` gives it (pkg_resources' ``project_name`` too)."""

    def __init__(self, dist: Any) -> None:
        self._dist = dist

    @property
    def project_name(self) -> str:
        return str(self._dist.metadata["name"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dist, name)


def _register_under_ids(pm: pluggy.PluginManager) -> None:
    """Register every plugin again under its manifest id where its name is another (an
    entry-point name that differs, or pluggy's own name for a directly registered plugin)."""
    for name, plugin in list(pm.list_name_plugin()):
        if plugin is None:  # a blocked name
            continue
        connector_id = _manifest_of(pm, plugin, name).id
        if name == connector_id:
            continue
        other = pm.get_plugin(connector_id)
        if other is not None:
            raise PluginError(f"two installed connectors share the id {connector_id!r} ({_label(pm, other)} "
                              f"and {_label(pm, plugin)})")
        pm.unregister(plugin)
        pm.register(plugin, name=connector_id)  # None when the id is blocked: not loaded either


def _manifest_of(pm: pluggy.PluginManager, plugin: Any, name: str) -> Manifest:
    from connector.sdk.manifest import Manifest

    impls = [i for i in pm.hook.connector_manifest.get_hookimpls() if i.plugin is plugin]
    if not impls:
        raise PluginError(f"connector plugin {name!r} implements no connector_manifest: a connector has one")
    try:
        manifest = impls[0].function()
    except ConnectorError:
        raise
    except Exception as exc:
        raise PluginError(f"connector plugin {name!r} failed to give its manifest: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())}") from None
    if not isinstance(manifest, Manifest):
        raise PluginError(f"connector plugin {name!r} returned {type(manifest).__name__} from connector_manifest, "
                          "not a Manifest")
    return manifest


def _label(pm: pluggy.PluginManager, plugin: Any) -> str:
    return repr(pm.get_name(plugin) or plugin)


class Connector:
    """One installed connector: its manifest, and one method per hook that calls its plugin only.

    The hooks are called through pluggy (``subset_hook_caller``), with its checks: the arguments
    by name, as the specs say. A hook the connector does not implement returns None.
    """

    def __init__(self, pm: pluggy.PluginManager, connector_id: str, manifest: Manifest) -> None:
        self.id = connector_id
        self.manifest = manifest
        self._pm = pm
        plugin = pm.get_plugin(connector_id)
        self._others = [p for _, p in pm.list_name_plugin() if p is not None and p is not plugin]

    def __repr__(self) -> str:
        return f"<Connector {self.id!r}>"

    def _call(self, hook: str, **kwargs: Any) -> Any:
        return self._pm.subset_hook_caller(hook, remove_plugins=self._others)(**kwargs)

    def validate(self, connection: Mapping[str, Any], operation: Mapping[str, Any] | None) -> list[str] | None:
        return self._call("connector_validate", connection=connection, operation=operation)

    def max_document_size(self, connection: Mapping[str, Any], operation: Mapping[str, Any]) -> int | None:
        return self._call("connector_max_document_size", connection=connection, operation=operation)

    def open(self, connection: Mapping[str, Any]) -> Any | None:
        return self._call("connector_open", connection=connection)

    def check(self, connection: Mapping[str, Any]) -> str | None:
        return self._call("connector_check", connection=connection)

    def send(self, connection: Any, operation: Mapping[str, Any],
             documents: Iterable[Document]) -> Iterator[Result] | None:
        return self._call("connector_send", connection=connection, operation=operation, documents=documents)

    def listen(self, connection: Any, operation: Mapping[str, Any], listener: Listener) -> int | None:
        return self._call("connector_listen", connection=connection, operation=operation, listener=listener)

    def describe_operation(self, operation: Mapping[str, Any]) -> str | None:
        return self._call("connector_describe_operation", operation=operation)

    def commands(self) -> list[Command]:
        return list(self._call("connector_commands") or [])


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
        self._connectors: dict[str, Connector] = {}

    @property
    def manifests(self) -> dict[str, Manifest]:
        """Every installed connector's manifest, by id (the name its plugin is registered under)."""
        if self._manifests is None:
            found: dict[str, Manifest] = {}
            for impl in self.pm.hook.connector_manifest.get_hookimpls():
                manifest = impl.function()
                if manifest.id != impl.plugin_name:
                    raise PluginError(f"the connector registered as {impl.plugin_name!r} has the manifest id "
                                      f"{manifest.id!r}: register it with create_plugin_manager")
                if self.check:
                    manifest.check()
                found[manifest.id] = manifest
            self._manifests = dict(sorted(found.items()))
        return self._manifests

    def manifest(self, connector_id: str) -> Manifest:
        try:
            return self.manifests[connector_id]
        except KeyError:
            raise PluginError(f"no connector {connector_id!r} is installed (installed: {self._installed()})") from None

    def _installed(self) -> str:
        return ", ".join(self.manifests) or "none"

    def get(self, connector_id: str) -> Connector:
        """The connector installed under ``connector_id``; PluginError naming the installed ones."""
        connector = self._connectors.get(connector_id)
        if connector is None:
            connector = self._connectors[connector_id] = Connector(self.pm, connector_id, self.manifest(connector_id))
        return connector

    def resolve(self, connector_id: str | None, default: str | None = None) -> str:
        """The connector to use: ``connector_id`` when given, else the only installed one, else
        ``default`` when it is installed; PluginError naming the installed ones otherwise."""
        if connector_id is not None:
            self.manifest(connector_id)
            return connector_id
        if len(self.manifests) == 1:
            return next(iter(self.manifests))
        if default is not None:
            self.manifest(default)
            return default
        if not self.manifests:
            raise PluginError("no connector is installed")
        raise PluginError(f"several connectors are installed ({self._installed()}): say which one to use")


_default: Connectors | None = None


def installed_connectors() -> Connectors:
    """The connectors installed in this environment, loaded on first use and then kept."""
    global _default
    if _default is None:
        _default = Connectors(create_plugin_manager())
    return _default
