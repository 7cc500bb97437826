"""The entry points of one group, found without importing :mod:`importlib.metadata`.

Importing importlib.metadata (email, csv, zipfile, pathlib...) costs more than the rest of a
command line's start-up. The entry points are the ``entry_points.txt`` of the distributions
(``*.dist-info``, ``*.egg-info`` folders) in the folders of ``sys.path``, read in its order, the
first distribution of a name winning, as :func:`importlib.metadata.entry_points` does. Where the
environment has distributions this does not read (a zip file on ``sys.path``, an import hook that
provides distributions), importlib.metadata is asked instead.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import import_module
from importlib.machinery import PathFinder
from typing import Any, NamedTuple


class EntryPoint(NamedTuple):
    """One entry point: its name, its ``module:attribute`` value, and the distribution that
    declares it: the path of its folder, or the Distribution importlib.metadata found."""

    name: str
    value: str
    dist: Any = None

    def load(self) -> Any:
        """The object the entry point names (importing its module)."""
        module, _, attribute = self.value.partition(":")
        found = import_module(module.strip())
        for name in attribute.split("[")[0].strip().split(".") if attribute.strip() else ():
            found = getattr(found, name)
        return found


def _path_finder(finder: Any) -> bool:
    """Whether ``finder`` finds distributions only in the folders of sys.path: the standard library's
    PathFinder, or the importlib_metadata backport's MetadataPathFinder (which some packages install)."""
    return finder is PathFinder or type(finder).__module__ == "importlib_metadata"


def _readable() -> bool:
    """Whether every distribution is in a folder of sys.path (no zip, no import hook of distributions)."""
    if any(getattr(f, "find_distributions", None) is not None and not _path_finder(f) for f in sys.meta_path):
        return False
    return not any(entry and os.path.isfile(entry) for entry in sys.path)


def _normalized(folder_name: str) -> str:
    """The distribution's name in a folder name (``Foo.Bar-1.0.dist-info``, ``foo.egg-info``),
    normalized as importlib.metadata does (``foo_bar``)."""
    stem = folder_name.rpartition(".")[0]
    return re.sub(r"[-_.]+", "_", stem.partition("-")[0]).lower()


def _parse(text: str, group: str, dist_path: str) -> list[EntryPoint]:
    """The entries of the section ``group``, read as importlib.metadata reads the file."""
    found, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section == group and "=" in line:
            name, _, value = line.partition("=")
            found.append(EntryPoint(name.strip(), value.strip(), dist_path))
    return found


def _scan(group: str) -> list[EntryPoint]:
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path:
        folder = entry or "."
        try:
            names = [n for n in os.listdir(folder) if n.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        for name in names:
            dist = _normalized(name)
            if dist in seen:
                continue
            seen.add(dist)
            path = os.path.join(folder, name)
            try:
                with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:  # no entry points (or an egg-info file): nothing to read
                continue
            if f"[{group}]" in text:
                found += _parse(text, group, path)
    return found


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` of the installed distributions, one per distribution and name."""
    if _readable():
        return _scan(group)
    from importlib import metadata

    return [EntryPoint(ep.name, ep.value, ep.dist) for ep in metadata.entry_points(group=group)]


def distribution(ep: EntryPoint) -> Any:
    """The :class:`importlib.metadata.Distribution` that declares ``ep``."""
    if not isinstance(ep.dist, str):
        return ep.dist
    from importlib import metadata

    return metadata.Distribution.at(ep.dist)
