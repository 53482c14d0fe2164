"""The SUPERB-style learning-rate sweep: one run per learning rate, the best dev metric wins.

s3prl users pick a probe's learning rate by training it at a few values and keeping the one
with the best dev score (SUPERB, Yang et al. 2021, tunes the head's lr per task this way).
:func:`sweep_lr` does it in one call: the held-out split is drawn once (``OUT/heldout``) and
shared by every run, each learning rate of ``config.lr_grid`` trains in
``OUT/lr-sweep/lr-<value>`` (with early stopping and ``budget_minutes / len(grid)`` each),
``OUT/lr-sweep.json`` lists every run's best dev metric, and the winner's run files are copied
into ``OUT`` itself, so ``evaluate OUT`` scores the selected model. A finished lr run is
skipped when the sweep is started again with ``resume``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiossl.errors import ConfigError
from audiossl.fileio import atomic_path, atomic_write

if TYPE_CHECKING:
    from audiossl.downstream.task import DownstreamTask
    from audiossl.downstream.trainer import DownstreamConfig, DownstreamResult
    from audiossl.engine import Engine

logger = logging.getLogger(__name__)

#: Sub-folder of the sweep's runs, and the summary written beside it.
SWEEP_DIR = "lr-sweep"
SWEEP_FILE = "lr-sweep.json"
#: Files of the winning run copied into the sweep's output dir.
RUN_FILES = ("downstream.json", "task_state.json", "best.pt", "train.jsonl", "loss.png")


def lr_name(lr: float) -> str:
    """``lr-1e-03`` style folder name of a learning rate."""
    return f"lr-{lr:.0e}"


def sweep_lr(
    task: DownstreamTask,
    upstream_spec: str,
    train_dir: str | Path,
    out_dir: str | Path,
    config: DownstreamConfig,
    valid_dir: str | Path | None = None,
    *,
    train: Callable[..., DownstreamResult],
    resume: bool = False,
    callbacks: Sequence[Callable[[Engine], None]] = (),
) -> tuple[dict[str, Any], DownstreamResult | None]:
    """Train at every learning rate of ``config.lr_grid`` with ``train`` (the trainer's ``train_downstream``).

    Returns the summary (every run's best dev metric and the winner, also ``OUT/lr-sweep.json``)
    and the winner's result when it trained in this call (None when it was finished before).
    """
    from audiossl.data.kaldi import DataDir
    from audiossl.downstream.heldout import heldout_split, write_heldout
    from audiossl.fileio import latest_checkpoint

    def read_run_info(run_dir: Path) -> dict[str, Any]:
        return json.loads((Path(run_dir) / "downstream.json").read_text(encoding="utf-8"))

    if not config.early_stopping:
        raise ConfigError("an lr sweep selects on dev data: turn early stopping on (the default)")
    out_dir = Path(out_dir)
    if not resume and (out_dir / SWEEP_FILE).is_file():
        raise ConfigError("this dir already holds a finished lr sweep; resume it or choose another dir", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_dir = Path(train_dir)
    if valid_dir is None:
        data = DataDir.load(train_dir)
        split = heldout_split(
            data,
            fraction=config.heldout_fraction,
            min_utterances=config.heldout_min,
            by=config.heldout_by,
            stratify=task.stratify_label if config.heldout_by == "utterance" else None,
            seed=config.seed,
        )
        fit_dir, valid_dir = write_heldout(data, split, out_dir)
    else:
        fit_dir, valid_dir = train_dir, Path(valid_dir)
    grid = sorted(set(config.lr_grid))
    each = None if config.budget_minutes is None else config.budget_minutes / len(grid)
    rows: list[dict[str, Any]] = []
    results: dict[float, DownstreamResult] = {}
    for lr in grid:
        run_dir = out_dir / SWEEP_DIR / lr_name(lr)
        run_config = replace(config, lr=lr, lr_sweep=False, budget_minutes=each)
        finished = (run_dir / "best.pt").is_file() and read_run_info(run_dir).get("finished")
        logger.info("lr sweep: lr %.0e -> %s%s", lr, run_dir, " (finished, skipped)" if finished else "")
        if finished:
            info = read_run_info(run_dir)
            from audiossl.models import read_checkpoint

            best = read_checkpoint(run_dir / "best.pt", keys=("step", "dev"))
            result_row = {"lr": lr, "best_step": int(best["step"]), **{f"dev_{k}": v for k, v in best["dev"].items()}}
            rows.append({**result_row, "run_dir": str(run_dir), "steps": info.get("steps")})
            continue
        result = train(
            task,
            upstream_spec,
            fit_dir,
            run_dir,
            run_config,
            valid_dir=valid_dir,
            resume=resume and latest_checkpoint(run_dir) is not None,
            callbacks=callbacks,
        )
        results[lr] = result
        info = read_run_info(run_dir)
        info.update(finished=True, steps=result.step, stopped_by=result.stopped_by)
        with atomic_write(run_dir / "downstream.json") as handle:
            json.dump(info, handle, indent=2)
            handle.write("\n")
        rows.append(
            {
                "lr": lr,
                "best_step": result.best_step,
                "dev_metric": task.dev_metric,
                "dev_score": result.best_score,
                "run_dir": str(run_dir),
                "steps": result.step,
            }
        )
    scored = [row for row in rows if row["dev_score"] is not None]
    if not scored:
        raise ConfigError("no run of the lr sweep reached a dev evaluation (budget too small?)", out_dir)
    sign = 1.0 if task.dev_higher_is_better else -1.0
    winner = max(scored, key=lambda row: (sign * row["dev_score"], -row["lr"]))
    summary = {"metric": task.dev_metric, "higher_is_better": task.dev_higher_is_better, "runs": rows, "best": winner}
    winner_dir = Path(winner["run_dir"])
    for name in RUN_FILES:
        source = winner_dir / name
        if source.is_file():
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(source, tmp)
    for extra in winner_dir.glob("probe*"):
        with atomic_path(out_dir / extra.name) as tmp:
            shutil.copyfile(extra, tmp)
    info = read_run_info(out_dir)
    info["lr_sweep"] = summary
    with atomic_write(out_dir / "downstream.json") as handle:
        json.dump(info, handle, indent=2)
        handle.write("\n")
    with atomic_write(out_dir / SWEEP_FILE) as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    for row in rows:
        logger.info(
            "lr %.0e: best dev %s %s at step %s", row["lr"], row["dev_metric"], row["dev_score"], row["best_step"]
        )
    logger.info("lr sweep: lr %.0e selected (dev %s %.4f)", winner["lr"], task.dev_metric, winner["dev_score"])
    return summary, results.get(winner["lr"])
