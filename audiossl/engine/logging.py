"""Run logs: JSONL records, TensorBoard scalars, a loss-curve PNG, window averages and health warnings.

``RUN_DIR/train.jsonl`` gets one JSON object per line, appended and flushed as it is written:
``{"kind": "train", "step", "epoch", "lr", "loss", "loss_ema", "parts": {...}, "metrics": {...},
"grad_norm", "utt_per_s", "audio_s_per_s", "elapsed_s", "warnings": [...]}`` every
``log_every`` steps, ``{"kind": "valid", "step", "loss", "parts"}`` after a validation, and
``{"kind": "event", ...}`` for starts, resumes and stops. On a resume the engine first cuts the
log back to the restored step (:func:`truncate_records`), so every step appears once; readers
still keep the last record of a step (:func:`read_records`) for logs written before that.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from audiossl.fileio import atomic_path, atomic_write
from audiossl.nn.outputs import LossOutput

logger = logging.getLogger("audiossl.engine")

#: Metric the objectives report for the codebook use (wav2vec 2.0 family).
PERPLEXITY_METRIC = "code_perplexity"
#: Metric an objective with frame labels reports for |label frames - encoder frames|.
LENGTH_DRIFT_METRIC = "length_drift"


class RunLogger:
    """Appends records to ``train.jsonl`` and mirrors numbers to TensorBoard (main process only)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.path = self.run_dir / "train.jsonl"
        self._file = None
        self._writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  (kept open for the run)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        """Append one JSON line and flush it; send its numbers to TensorBoard under ``kind/name``."""
        if not self.enabled:
            return
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        if self._writer is not None and "step" in record and record.get("kind") != "event":
            for name, value in flatten(record).items():
                if name not in ("step", "epoch", "kind") and isinstance(value, (int, float)):
                    self._writer.add_scalar(f"{record.get('kind', 'train')}/{name}", value, record["step"])
            self._writer.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"parts": {"a": 1}}`` -> ``{"parts/a": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def read_records(path: str | Path, kind: str = "train") -> list[dict[str, Any]]:
    """Records of ``kind`` from a JSONL log, one per step (the last written wins), by step."""
    by_step: dict[int, dict[str, Any]] = {}
    path = Path(path)
    if not path.is_file():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("kind") == kind and "step" in record:
            by_step[int(record["step"])] = record
    return [by_step[step] for step in sorted(by_step)]


def truncate_records(path: str | Path, step: int) -> int:
    """Rewrite a JSONL log atomically, keeping only records up to ``step``; return how many were dropped.

    A resumed run restarts from its checkpoint's step: the records a killed run wrote after that
    checkpoint would otherwise appear twice. Records without a step (none today) are kept.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            dropped += 1
            continue
        if "step" in record and int(record["step"]) > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        with atomic_write(path) as handle:
            handle.write("".join(f"{line}\n" for line in kept))
    return dropped


def plot_loss_curve(jsonl_path: str | Path, png_path: str | Path) -> Path | None:
    """Plot training loss (and its parts, and validation loss) against step into a PNG, atomically."""
    train = read_records(jsonl_path, "train")
    valid = read_records(jsonl_path, "valid")
    if not train and not valid:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    steps = [r["step"] for r in train]
    if train:
        axis.plot(steps, [r["loss"] for r in train], label="loss", linewidth=1.5)
        for part in sorted({name for r in train for name in r.get("parts", {})}):
            axis.plot(
                steps, [r.get("parts", {}).get(part, math.nan) for r in train], label=part, linewidth=0.8, alpha=0.8
            )
    if valid:
        axis.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="valid loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return png_path


class WindowMeter:
    """Sums of losses, parts and metrics over the steps since the last log line.

    Each name is averaged over the steps that reported it, so a part that only some steps have
    (speech and text steps taking turns) is logged at its own mean, not diluted by the others.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.utterances = 0
        self.audio_seconds = 0.0

    def add(self, values: dict[str, float], utterances: int, audio_seconds: float) -> None:
        self.steps += 1
        for name, value in values.items():
            self.sums[name] += value
            self.counts[name] += 1
        self.utterances += utterances
        self.audio_seconds += audio_seconds

    def means(self) -> dict[str, float]:
        return {name: total / max(self.counts[name], 1) for name, total in self.sums.items()}


class LossEMA:
    """Bias-corrected exponential moving average of the training loss."""

    def __init__(self, decay: float, value: float = 0.0, count: int = 0):
        self.decay = decay
        self.value = value
        self.count = count

    def update(self, loss: float) -> None:
        self.value = self.decay * self.value + (1.0 - self.decay) * loss
        self.count += 1

    @property
    def mean(self) -> float:
        """The average so far (NaN before the first update)."""
        if self.count == 0:
            return math.nan
        return self.value / (1.0 - self.decay**self.count)


def health_warnings(metrics: dict[str, float], collapse_perplexity: float, max_length_drift: float) -> list[str]:
    """Human-readable warnings for metrics that signal a failing run.

    Codebook collapse: ``code_perplexity`` under ``collapse_perplexity`` (the quantizer uses only a
    handful of entries; contrastive targets become trivial). Length drift: ``length_drift`` (frames
    between target labels and encoder outputs) above ``max_length_drift`` (labels made with another
    frame rate or front-end).
    """
    found = []
    perplexity = metrics.get(PERPLEXITY_METRIC)
    if perplexity is not None and perplexity < collapse_perplexity:
        found.append(
            f"codebook collapse: {PERPLEXITY_METRIC} {perplexity:.2f} < {collapse_perplexity:g} "
            "(raise the diversity weight or the Gumbel temperature, or lower the lr)"
        )
    drift = metrics.get(LENGTH_DRIFT_METRIC)
    if drift is not None and abs(drift) > max_length_drift:
        found.append(
            f"label/frame length drift: {LENGTH_DRIFT_METRIC} {drift:.2f} frames > {max_length_drift:g} "
            "(targets were made with a different frame rate or front-end)"
        )
    return found


def format_eta(seconds: float) -> str:
    """``3725`` -> ``1:02:05``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def loss_values(out: LossOutput) -> dict[str, float]:
    """Loss, parts and metrics of one forward pass as floats (one device transfer)."""
    tensors = {"loss": out.total, **{f"parts/{name}": value for name, value in out.parts.items()}}
    stacked = torch.stack([value.detach().float().reshape(()) for value in tensors.values()]).cpu().tolist()
    values = dict(zip(tensors, stacked, strict=True))
    values.update({f"metrics/{name}": float(value) for name, value in out.metrics.items()})
    return values


def merge_sums(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Per-name sums over a list of dicts."""
    merged: dict[str, float] = defaultdict(float)
    for values in dicts:
        for name, value in values.items():
            merged[name] += value
    return dict(merged)
