"""audiossl.cli.options: the shared plugin flags take the place of one parameter and build its value."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from audiossl.cli.options import (
    DataArgument,
    DownstreamSettings,
    Flag,
    OutOption,
    ResumeOption,
    SeedOption,
    UpstreamOption,
    downstream_options,
    option_group,
)


def _app(command) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)  # two commands: typer keeps the command name
    return app


def test_downstream_flags_build_the_config_in_place_of_the_parameter(tmp_path):
    seen: dict[str, Any] = {}

    @downstream_options(("max_steps", "lr", "seed"))
    def train(
        data: DataArgument,
        out: OutOption,
        upstream: UpstreamOption,
        settings: DownstreamSettings = None,
        resume: ResumeOption = False,
    ) -> None:
        seen.update(settings=settings, resume=resume, data=data)

    runner = CliRunner()
    app = _app(train)
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    flags = [flag for flag in ("--upstream", "--max-steps", "--lr", "--seed", "--config", "--set", "--resume")]
    positions = [result.output.index(flag + " ") for flag in flags]
    assert positions == sorted(positions)  # in place of `settings`, before --resume
    assert "--upstream-lr" not in result.output and "--mode" not in result.output
    args = ["train", str(tmp_path), "-o", str(tmp_path / "run"), "-u", "fbank", "--max-steps", "7", "--seed", "3"]
    result = runner.invoke(app, [*args, "--set", "lr=0.5", "--resume"])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert (settings.max_steps, settings.seed, settings.lr, seen["resume"]) == (7, 3, 0.5, True)


def test_option_group_passes_what_build_makes_and_refuses_clashes():
    group = option_group("pair", [Flag("seed", SeedOption), Flag("name", Any, "x")], lambda **v: (v["seed"], v["name"]))

    @group
    def command(first: int, pair: Any = None) -> Any:
        return first, pair

    assert command(1, seed=5, name="y") == (1, (5, "y"))
    with pytest.raises(TypeError, match="seed"):

        @group
        def clashing(seed: int, pair: Any = None) -> None: ...
