"""Plugin discovery through entry points: a third-party plugin is found, mounted and used; broken ones are reported.

A fake distribution is "installed" the way pip does it: a ``*.dist-info`` folder with METADATA
and entry_points.txt on ``sys.path``, next to the plugin's module (tests/downstream/thirdparty).
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from audiossl.cli.plugins import mount_plugins
from audiossl.downstream.plugin import (
    ENTRY_POINT_GROUP,
    STRICT_ENV,
    Plugin,
    PluginError,
    discover_plugins,
    get_plugin,
)
from audiossl.testing.distributions import install_distribution

THIRDPARTY = Path(__file__).resolve().parent / "thirdparty"
DIST = "fake-audiossl-plugins"

ENTRY_POINTS = f"""[{ENTRY_POINT_GROUP}]
spkid = audiossl_spkid:plugin
broken = audiossl_missing_module:plugin
notaplugin = audiossl_spkid:NOT_A_PLUGIN
"""


def install_fake_distribution(site: Path, entry_points: str = ENTRY_POINTS) -> Path:
    """Write the dist-info of a fake distribution and its module into ``site`` (a sys.path entry)."""
    return install_distribution(site, DIST, "0.3.0", entry_points, [THIRDPARTY / "audiossl_spkid.py"])


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = install_fake_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("audiossl_spkid", None)


def ours() -> list[metadata.EntryPoint]:
    """The fake distribution's entry points among everything installed (real plugins may be broken or absent)."""
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == DIST]


def test_third_party_plugin_is_discovered_and_broken_ones_are_reported(fake_site, caplog):
    assert {ep.name for ep in ours()} == {"spkid", "broken", "notaplugin"}
    plugins, errors = discover_plugins(ours(), strict=False)
    assert list(plugins) == ["spkid"]
    plugin = plugins["spkid"]
    assert isinstance(plugin, Plugin) and plugin.version == "0.3.0" and plugin.distribution == DIST
    assert plugin.labels == ("spk",) and plugin.task_factory().name == "spkid"
    assert sorted(error.plugin for error in errors) == ["broken", "notaplugin"]
    by_name = {error.plugin: error for error in errors}
    assert "ModuleNotFoundError" in by_name["broken"].error and "audiossl_missing_module" in by_name["broken"].error
    assert "expected audiossl.downstream.Plugin" in by_name["notaplugin"].error
    assert "broken" in caplog.text and STRICT_ENV in caplog.text  # logged as warnings
    # The whole installed set is discovered too, whatever else is installed.
    installed, _ = discover_plugins(strict=False)
    assert installed["spkid"].distribution == DIST


def test_strict_mode_makes_a_broken_plugin_fatal(fake_site, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(PluginError, match="broken"):
        discover_plugins(ours())
    monkeypatch.setenv(STRICT_ENV, "0")
    plugins, errors = discover_plugins(ours())
    assert "spkid" in plugins and len(errors) == 2


def test_duplicate_names_and_clashes_with_builtins_are_reported(tmp_path, monkeypatch):
    site = install_fake_distribution(
        tmp_path / "site",
        f"[{ENTRY_POINT_GROUP}]\nspkid = audiossl_spkid:plugin\ndata = audiossl_spkid:plugin\n",
    )
    monkeypatch.syspath_prepend(str(site))
    try:
        root = typer.Typer()
        root.add_typer(typer.Typer(), name="spkid")  # a built-in already called spkid
        errors = mount_plugins(root, ours())
        # Both entry points build a plugin named spkid: the second is a duplicate, the first clashes.
        assert len(errors) == 2 and all(error.plugin == "spkid" for error in errors)
        assert any("already taken" in error.error for error in errors)
        assert any("clashes with a built-in" in error.error for error in errors)
    finally:
        sys.modules.pop("audiossl_spkid", None)


def test_plugin_commands_are_mounted_on_an_app(fake_site):
    root = typer.Typer()

    @root.command()
    def version() -> None:
        typer.echo("1.0")

    errors = mount_plugins(root, ours())
    assert len(errors) == 2
    result = CliRunner().invoke(root, ["spkid", "hello", "--name", "tests"])
    assert result.exit_code == 0, result.output
    assert "spkid says hello to tests" in result.output
    assert CliRunner().invoke(root, ["version"]).output.strip() == "1.0"


def test_get_plugin_names_missing_and_broken_plugins(fake_site):
    assert get_plugin("spkid").name == "spkid"
    with pytest.raises(PluginError, match="ModuleNotFoundError"):
        get_plugin("broken")
    with pytest.raises(PluginError, match="not installed"):
        get_plugin("no-such-plugin")


def _audiossl(site: Path, *args: str, strict: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``audiossl`` command in a fresh process that sees the fake distribution."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    env[STRICT_ENV] = "1" if strict else "0"
    code = "from audiossl.cli.main import run; run()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


def test_start_up_mounts_plugins_and_survives_broken_ones(tmp_path):
    site = install_fake_distribution(tmp_path / "site")
    hello = _audiossl(site, "spkid", "hello", "--name", "cli")
    assert hello.returncode == 0, hello.stderr
    assert "spkid says hello to cli" in hello.stdout
    assert "broken" in hello.stderr and "audiossl_missing_module" in hello.stderr  # reported, not fatal
    strict = _audiossl(site, "spkid", "hello", strict=True)
    assert strict.returncode == 2
    assert "'broken'" in strict.stderr and "'notaplugin'" in strict.stderr and "Traceback" not in strict.stderr


def test_plugins_list_shows_versions_distributions_and_broken_ones(fake_site):
    from audiossl.cli.main import app

    listing = CliRunner().invoke(app, ["plugins", "list"])
    assert listing.exit_code == 0, listing.output
    row = next(line for line in listing.output.splitlines() if line.startswith("spkid"))
    assert row.split()[:4] == ["spkid", "0.3.0", DIST, "spk"] and "third-party example" in row
    assert "BROKEN broken: ModuleNotFoundError" in listing.output and "BROKEN notaplugin" in listing.output
