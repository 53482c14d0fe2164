"""Install a fake distribution on a ``sys.path`` entry, the way pip lays one out: for plugin and extension tests.

A ``<name>-<version>.dist-info`` folder with ``METADATA`` and ``entry_points.txt`` next to the
distribution's modules is all :mod:`importlib.metadata` needs to find its entry points, so a
test can "install" a third-party plugin or extension into a temporary folder and put that
folder on ``sys.path`` (``monkeypatch.syspath_prepend``) or ``PYTHONPATH`` (subprocesses).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path


def install_distribution(
    site: str | Path, name: str, version: str, entry_points: str, modules: Iterable[str | Path] = ()
) -> Path:
    """Write distribution ``name`` (its dist-info with ``entry_points`` text) and copy ``modules`` into ``site``."""
    site = Path(site)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    for module in modules:
        shutil.copy(module, site / Path(module).name)
    return site
