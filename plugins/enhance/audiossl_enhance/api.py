"""Python entry points for orchestration (``audiossl superb``): data preparation, and train + evaluate in one call.

:func:`run_task` trains one (upstream, task) pair into ``OUT/run`` and scores it into
``OUT/eval``, resumably: a pair whose ``OUT/eval/metrics.json`` exists is not recomputed, and
a run with checkpoints resumes. The metrics dict is what ``evaluate`` returns (``se``:
``PESQ``, ``STOI``, ``SI-SNRi``...; ``ss``: ``SI-SDRi``...); :data:`HEADLINE` names the one
SUPERB reports per task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audiossl.errors import ConfigError
from audiossl.fileio import latest_checkpoint

#: Metric SUPERB reports per task (higher is better for both).
HEADLINE = {"se": "PESQ", "ss": "SI-SDRi"}


def make_task(name: str, **options: Any):
    """The ``se`` or ``ss`` task with ``options`` (hidden_dim, num_layers, n_fft, ... see MaskTask)."""
    from audiossl_enhance import make_se_task, make_ss_task

    factories = {"se": make_se_task, "ss": make_ss_task}
    if name not in factories:
        raise ConfigError(f"task must be se or ss, got {name!r}")
    return factories[name](**options)


def prepare_data(
    name: str,
    source_dir: str | Path,
    out_dir: str | Path,
    *,
    sample_rate: int = 16000,
    seed: int = 0,
    snrs_db: Sequence[float] = (0.0, 5.0, 10.0, 15.0),
    per_utterance: int = 1,
) -> Path:
    """Pairs (``se``: noise at ``snrs_db``) or two-speaker mixtures (``ss``) of ``source_dir`` in ``out_dir``.

    Resumable and deterministic (see :mod:`audiossl_enhance.mixtures`); returns ``out_dir``.
    """
    from audiossl_enhance.mixtures import MixSettings, NoiseSettings, make_mixtures, make_noisy_pairs

    if name == "se":
        make_noisy_pairs(source_dir, out_dir, NoiseSettings(snrs_db=tuple(snrs_db), sample_rate=sample_rate, seed=seed))
    elif name == "ss":
        make_mixtures(source_dir, out_dir, MixSettings(per_utterance=per_utterance, sample_rate=sample_rate, seed=seed))
    else:
        raise ConfigError(f"task must be se or ss, got {name!r}")
    return Path(out_dir)


def run_task(
    name: str,
    upstream: str,
    train_dir: str | Path,
    test_dir: str | Path,
    out_dir: str | Path,
    *,
    valid_dir: str | Path | None = None,
    config: Any = None,
    task_options: dict[str, Any] | None = None,
    device: str = "auto",
) -> dict[str, float]:
    """Train ``name`` (``se`` / ``ss``) on ``upstream`` with ``train_dir`` and score ``test_dir``; the metrics.

    ``config`` is a :class:`~audiossl.downstream.DownstreamConfig` (default: its defaults).
    """
    from audiossl.downstream.trainer import evaluate_downstream, train_downstream

    out_dir = Path(out_dir)
    run_dir, eval_dir = out_dir / "run", out_dir / "eval"
    done = eval_dir / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))["metrics"]
    task = make_task(name, **(task_options or {}))
    resume = latest_checkpoint(run_dir) is not None
    train_downstream(task, upstream, train_dir, run_dir, config, valid_dir=valid_dir, resume=resume)
    return evaluate_downstream(run_dir, test_dir, eval_dir, task=task, device=device)
