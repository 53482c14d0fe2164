"""Evidence that pretraining learns: linear probes on frozen features of FSDD, against two baselines.

For each objective (mspm on AST and on bidirectional Mamba, wav2vec2 and w2vbert on the
Conformer) a tiny encoder is pretrained with ``audiossl.train.pretrain`` on the FSDD *train*
audio (no labels) within a CPU-time budget. Then the same probe is trained on frozen features
of the train split and scored on the test split, for two tasks (digit, speaker), on:

* ``pretrained``: the pretrained encoder;
* ``random``: the same architecture with random weights (same input pipeline);
* ``fbank``: the normalised log-mel features themselves, mean-pooled.

The probe: a learned softmax-weighted sum of the layers (:class:`WeightedLayerSum`, each layer
layer-normed per frame), mean-pooled over valid frames, then a linear classifier, trained with
Adam on the whole train split for a fixed number of steps (no tuning on the test split). Layer
norm is per frame and per layer and the weighted sum and the mean are linear, so the probe is
computed on pooled per-layer features: mean(sum_l w_l LN(h_l)) = sum_l w_l mean(LN(h_l)).

Budget: the number of steps is set from a short calibration so the pretraining takes about
``--cpu-minutes`` of process CPU time (all threads; data loading runs in-process), with a hard
stop at 1.3x. The run is resumable: finished pretraining runs are reused.

    python bench/ssl_evidence.py --out exp/ssl_evidence --cpu-minutes 10 --layers 4 --threads 1

Results and their reading: docs/results.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiossl.data.dataset import AudioDataset, collate  # noqa: E402
from audiossl.data.features import compute_global_stats  # noqa: E402
from audiossl.data.fsdd import prepare_fsdd  # noqa: E402
from audiossl.downstream.featurizer import WeightedLayerSum, mean_pool  # noqa: E402
from audiossl.fileio import atomic_write  # noqa: E402
from audiossl.train import load_pretrained, pretrain, resolve_config  # noqa: E402
from audiossl.train.checkpoint import latest_checkpoint  # noqa: E402
from audiossl.train.logging import read_records  # noqa: E402

log = logging.getLogger("ssl_evidence")

#: Global fbank statistics of the FSDD train split, shared by every run (and the fbank baseline).
STATS = "global_stats.npz"

#: FSDD is 8 kHz; 64 mel bins keep every filter wider than an FFT bin at that rate.
COMMON = [
    "data.sample_rate=8000",
    "data.frontend_config.num_mel_bins=64",
    "encoder.overrides.input.num_bins=64",
    "data.max_seconds_per_batch=16",
    "data.max_utt_seconds=null",
    "data.num_workers=0",
    "run.device=cpu",
    "run.log_every=10",
    "run.tensorboard=false",
    "optim.lr=1.0e-3",
]

#: name -> (preset, extra overrides). AST and Mamba read stacked frames (SSAST's frame variant,
#: which SSAST found better for speech; the presets' 16 x 16 patches would leave a 0.4 s digit
#: with 8 tokens, and mean-pooling patches mixes frequency bands); the SSAST chunks then mask
#: time spans. Spans of 5 tokens (100 ms) instead of 10 for utterances of 0.15-2.3 s.
FRAMES = ["encoder.overrides.input.kind=frame", "encoder.overrides.input.frame_stack=2"]
RUNS = {
    "mspm-ast": ("mspm-ast-tiny", FRAMES),
    "mspm-mamba": ("mspm-mamba-tiny", FRAMES),
    "wav2vec2-conformer": (
        "wav2vec2-conformer-tiny",
        [
            "data.min_utt_seconds=0.1",
            "objective.config.mask.span_length=5",
            "objective.config.mask.start_prob=0.1",
            "objective.config.mask.min_spans=1",
        ],
    ),
    "w2vbert-conformer": (
        "w2vbert-conformer-tiny",
        [
            "data.min_utt_seconds=0.1",
            "objective.config.mask.span_length=5",
            "objective.config.mask.start_prob=0.1",
            "objective.config.mask.min_spans=1",
        ],
    ),
}


class CpuBudget:
    """Trainer callback: stop once the steps have used ``limit_s`` CPU seconds (counted from the first step)."""

    def __init__(self, limit_s: float, first_step_s: float):
        self.start: float | None = None
        self.limit_s = limit_s - first_step_s

    def __call__(self, trainer) -> None:  # noqa: ANN001
        now = time.process_time()
        self.start = now if self.start is None else self.start
        if now - self.start > self.limit_s:
            trainer.request_stop("cpu budget")


class StepClock:
    """Trainer callback recording process CPU time at every step (for the calibration)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, trainer) -> None:  # noqa: ANN001
        self.times.append(time.process_time())


def run_overrides(name: str, layers: int | None, stats: Path) -> tuple[str, list[str]]:
    preset, extra = RUNS[name]
    sets = [*COMMON, f"data.global_stats={stats}", *extra]
    if layers is not None:
        sets.append(f"encoder.overrides.num_layers={layers}")
        if name.startswith("w2vbert"):
            sets.append(f"objective.config.contrastive_layer={max(layers // 2, 1)}")
    return preset, sets


def calibrate(name: str, layers: int | None, data: Path, work: Path, steps: int = 8) -> float:
    """CPU seconds per optimizer step of run ``name`` (median over steps 2..N of a short run)."""
    preset, sets = run_overrides(name, layers, work / STATS)
    config = resolve_config(preset, [*sets, f"run.max_steps={steps}", f"run.checkpoint_every={steps}"])
    target = work / "calibration" / name
    shutil.rmtree(target, ignore_errors=True)
    clock = StepClock()
    pretrain(config, [data], target, callbacks=[clock])
    per_step = float(np.median(np.diff(clock.times)))
    shutil.rmtree(target, ignore_errors=True)
    return per_step


def pretrain_run(name: str, layers: int | None, data: Path, work: Path, cpu_minutes: float) -> dict:
    """Pretrain ``name`` within the budget (reusing a finished run); its steps, CPU time and losses."""
    run_dir = work / "runs" / name
    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and latest_checkpoint(run_dir) is not None:
        log.info("%s: reusing %s", name, run_dir)
        return json.loads(summary_path.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    per_step = calibrate(name, layers, data, work)
    budget = cpu_minutes * 60.0
    max_steps = max(int(budget / per_step), 20)
    warmup = max(max_steps // 10, 5)
    preset, sets = run_overrides(name, layers, work / STATS)
    config = resolve_config(
        preset,
        [*sets, f"run.max_steps={max_steps}", f"run.checkpoint_every={max_steps}", f"optim.warmup_steps={warmup}"],
    )
    log.info("%s: %.2f CPU-s/step -> %d steps (warm-up %d)", name, per_step, max_steps, warmup)
    cpu_start, wall_start = time.process_time(), time.monotonic()
    result = pretrain(config, [data], run_dir, callbacks=[CpuBudget(1.3 * budget, per_step)])
    records = read_records(run_dir / "train.jsonl")
    summary = {
        "name": name,
        "preset": preset,
        "overrides": sets,
        "steps": result.step,
        "planned_steps": max_steps,
        "stopped_by": result.stopped_by,
        "cpu_minutes": (time.process_time() - cpu_start) / 60.0,
        "wall_minutes": (time.monotonic() - wall_start) / 60.0,
        "calibrated_cpu_s_per_step": per_step,
        "first_loss": records[0]["loss"] if records else None,
        "last_loss": records[-1]["loss"] if records else None,
        "parameters": sum(p.numel() for p in load_pretrained(run_dir).encoder.parameters()),
    }
    with atomic_write(summary_path) as handle:
        json.dump(summary, handle, indent=1)
    return summary


@torch.no_grad()
def pooled_layers(model, data_dir: Path, mode: str, batch_seconds: float = 64.0) -> tuple[torch.Tensor, list[str]]:
    """Per-utterance pooled features (N, L, D) and ids: encoder layers (``mode`` encoder) or fbank (L = 1)."""
    dataset = AudioDataset(data_dir, sample_rate=model.sample_rate)
    order = np.argsort(dataset.durations)
    batches, batch, longest = [], [], 0.0
    for index in order.tolist():
        seconds = dataset.durations[index]
        if batch and max(longest, seconds) * (len(batch) + 1) > batch_seconds:
            batches.append(batch)
            batch, longest = [], 0.0
        batch.append(index)
        longest = max(longest, seconds)
    batches.append(batch)
    features = [None] * len(dataset)
    for indices in batches:
        items = collate(dataset[indices])
        inputs, lengths = model.inputs(items.waveforms, items.lengths)
        if mode == "fbank":
            pooled = mean_pool(inputs, lengths).unsqueeze(1)  # (B, 1, C)
        else:
            output = model.encoder(inputs, lengths).without_prefix()
            stacked = torch.stack(output.layers)  # (L, B, S, D)
            normed = torch.nn.functional.layer_norm(stacked, stacked.shape[-1:])
            pooled = torch.stack([mean_pool(layer, output.lengths) for layer in normed], dim=1)  # (B, L, D)
        for row, index in enumerate(indices):
            features[index] = pooled[row]
    return torch.stack(features), list(dataset.ids)


def train_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, classes: int, seed: int, steps: int = 500
) -> torch.nn.Module:
    """Weighted layer sum + linear classifier on pooled features (N, L, D), full-batch Adam."""
    torch.manual_seed(seed)
    featurizer = WeightedLayerSum(train_x.shape[1], normalize=False)
    head = torch.nn.Linear(train_x.shape[2], classes)
    probe = torch.nn.ModuleDict({"featurizer": featurizer, "head": head})
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    layers_first = train_x.transpose(0, 1)  # (L, N, D)
    for _ in range(steps):
        logits = head(featurizer(layers_first))
        loss = torch.nn.functional.cross_entropy(logits, train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return probe


def probe_accuracy(train_x, train_y, test_x, test_y, classes: int, seeds: int = 3) -> tuple[float, float, list[float]]:
    """Mean and standard deviation of the test accuracy over probe seeds, and the mean layer weights."""
    accuracies, weights = [], []
    for seed in range(seeds):
        probe = train_probe(train_x, train_y, classes, seed)
        with torch.no_grad():
            logits = probe["head"](probe["featurizer"](test_x.transpose(0, 1)))
        accuracies.append(float((logits.argmax(dim=1) == test_y).float().mean()))
        weights.append(probe["featurizer"].weights.detach())
    return float(np.mean(accuracies)), float(np.std(accuracies)), torch.stack(weights).mean(0).tolist()


def labels(data_dir: Path, ids: list[str], table: str) -> tuple[torch.Tensor, list[str]]:
    values = dict(line.split(maxsplit=1) for line in (data_dir / table).read_text().splitlines())
    names = sorted({values[utt].strip() for utt in ids})
    return torch.tensor([names.index(values[utt].strip()) for utt in ids]), names


def evaluate(model, mode: str, data: Path) -> dict:
    """Digit and speaker probe accuracies of one feature extractor."""
    train_x, train_ids = pooled_layers(model, data / "train", mode)
    test_x, test_ids = pooled_layers(model, data / "test", mode)
    scores = {}
    for task, table in (("digit", "utt2digit"), ("speaker", "utt2spk")):
        train_y, names = labels(data / "train", train_ids, table)
        test_values = dict(line.split(maxsplit=1) for line in (data / "test" / table).read_text().splitlines())
        test_y = torch.tensor([names.index(test_values[utt].strip()) for utt in test_ids])
        mean, std, weights = probe_accuracy(train_x, train_y, test_x, test_y, len(names))
        scores[task] = {"accuracy": mean, "std": std, "layer_weights": weights}
    return scores


def table(runs: dict) -> str:
    """Markdown table: test accuracy (mean ± std over probe seeds) per run and feature kind."""

    def cell(scores: dict) -> str:
        return f"{100 * scores['accuracy']:.1f} ± {100 * scores['std']:.1f}"

    lines = [
        "| run | steps | CPU-min | digit: fbank | digit: random | digit: pretrained "
        "| speaker: fbank | speaker: random | speaker: pretrained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in runs.items():
        summary = entry["pretraining"]
        cells = [cell(entry[kind][task]) for task in ("digit", "speaker") for kind in ("fbank", "random", "pretrained")]
        lines.append(f"| {name} | {summary['steps']} | {summary['cpu_minutes']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=REPO.parent / "shared" / "data" / "fsdd" / "recordings")
    parser.add_argument("--out", type=Path, default=REPO / "exp" / "ssl_evidence")
    parser.add_argument("--cpu-minutes", type=float, default=10.0, help="Pretraining budget per objective.")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"Comma-separated subset of {', '.join(RUNS)}.")
    parser.add_argument("--layers", type=int, default=4, help="Blocks of every encoder (0 = the presets' depth).")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads (1 wastes no CPU time spinning).")
    parser.add_argument("--json", type=Path, default=None, help="Results file (default: OUT/ssl_evidence.json).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    data = args.out / "data"
    if not (data / "test" / "wav.scp").is_file():
        prepare_fsdd(args.fsdd, data)
    if not (args.out / STATS).is_file():
        frontend = {"sample_rate": 8000, "num_mel_bins": 64}
        compute_global_stats(data / "train", "fbank", frontend, sample_rate=8000).save(args.out / STATS)
    results: dict = {"runs": {}}
    layers = args.layers or None
    for name in args.runs.split(","):
        summary = pretrain_run(name, layers, data / "train", args.out, args.cpu_minutes)
        run_dir = args.out / "runs" / name
        pretrained = load_pretrained(run_dir)
        results["runs"][name] = {
            "pretraining": summary,
            "fbank": evaluate(pretrained, "fbank", data),  # with this run's normalisation statistics
            "random": evaluate(load_pretrained(run_dir, random_init=True, seed=1), "encoder", data),
            "pretrained": evaluate(pretrained, "encoder", data),
        }
        log.info("%s: %s", name, json.dumps({k: v for k, v in results["runs"][name].items() if k != "pretraining"}))
    results["meta"] = {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
    }
    print()
    print(table(results["runs"]))
    target = args.json or args.out / "ssl_evidence.json"
    with atomic_write(target) as handle:
        json.dump(results, handle, indent=1)
    print(f"\nwrote {target}")


if __name__ == "__main__":
    main()
