"""``audiossl pretrain``: self-supervised pretraining of an encoder with an objective.

``audiossl pretrain --config mspm-ast-tiny --data data/train --out exp/ssl1 --set run.max_steps=500``
trains; ``--resume`` continues the newest checkpoint of ``--out``; ``--list-configs`` prints
the shipped presets. Under ``torchrun --nproc_per_node N -m audiossl.cli pretrain ...`` the
same command trains with DistributedDataParallel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from audiossl.errors import ConfigError
from audiossl.fileio import ensure_writable_dir, removed_if_failed

#: Where a run records its data dirs, so ``--resume`` can do without ``--data``.
RUN_INFO = "run.json"


def pretrain(
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Shipped preset name (see --list-configs) or YAML file.")
    ] = None,
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="Kaldi-style data dir of training audio (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run dir: checkpoints, logs, loss curve.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value: key.sub=value (repeatable).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
    text: Annotated[
        Path | None,
        typer.Option(
            "--text",
            help="Plain text corpus, one sentence a line, for objectives with a text modality (speecht5): "
            "sets objective.config.text.",
        ),
    ] = None,
    list_configs: Annotated[bool, typer.Option("--list-configs", help="List the shipped presets and exit.")] = False,
) -> int:
    """Pretrain an encoder with a self-supervised objective."""
    # lazy: audiossl.train pulls in torch; every `audiossl` start-up imports this module
    from audiossl.engine.budget import TIME_BUDGET
    from audiossl.fileio import atomic_write
    from audiossl.train import list_presets, pretrain, resolve_config
    from audiossl.train.checkpoint import latest_checkpoint
    from audiossl.train.trainer import STOP_EXIT_CODES

    if list_configs:
        rows = list_presets()
        width = max(len(name) for name, _ in rows)
        for name, description in rows:
            typer.echo(f"{name:<{width}}  {description}")
        return 0
    if out is None:
        raise typer.BadParameter("--out RUN_DIR is required", param_hint="--out")
    ensure_writable_dir(out)  # before the config and the data are read: fails first, naming the path
    info_path = out / RUN_INFO
    saved = json.loads(info_path.read_text(encoding="utf-8")) if resume and info_path.is_file() else {}
    if config is None:
        if not resume:
            raise typer.BadParameter("--config is required (a preset name or a YAML file)", param_hint="--config")
        config = str(out / "config.yaml")
        if not Path(config).is_file():
            raise ConfigError("--resume without --config needs the run's config.yaml", config)
    data_dirs = [str(d) for d in data] if data else saved.get("data")
    if not data_dirs:
        raise typer.BadParameter("--data DIR is required", param_hint="--data")
    if text is not None:  # an absolute path, so --resume finds it from anywhere
        overrides = [*(overrides or []), f"objective.config.text={text.resolve()}"]
    settings = resolve_config(config, list(overrides or []))
    # A run that fails before it trained (missing data, a bad table) leaves no OUT behind; one that trained stays.
    with removed_if_failed(out, started=lambda path: (path / "train.jsonl").exists() or latest_checkpoint(path)):
        if os.environ.get("RANK", "0") == "0" and (resume or latest_checkpoint(out) is None):  # the main process
            with atomic_write(info_path) as handle:
                json.dump({"data": data_dirs, "config": config, "overrides": list(overrides or [])}, handle, indent=1)
        result = pretrain(settings, data_dirs, out, resume=resume)
    main_process = os.environ.get("RANK", "0") == "0"
    if result.stopped_by == TIME_BUDGET:  # the planned end of a budgeted run, not a failure
        if main_process:
            typer.echo(
                f"stopped at step {result.step} of {settings.run.max_steps}: run.max_minutes="
                f"{settings.run.max_minutes:g} spent; checkpoint {result.checkpoint} (continue with --resume)",
                err=True,
            )
        return 0
    if result.stopped_by is not None:
        if main_process:
            typer.echo(f"stopped at step {result.step} ({result.stopped_by}); continue with --resume", err=True)
        return STOP_EXIT_CODES.get(result.stopped_by, 1)
    if main_process:
        typer.echo(f"finished step {result.step}: {result.checkpoint}")
    return 0
