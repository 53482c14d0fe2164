"""Evidence that HuBERT pretraining learns: two HuBERT iterations on FSDD, probed like bench/ssl_evidence.py.

The protocol of ``bench/ssl_evidence.py`` (same data, split, input features, encoder shrink,
probe, seeds and baselines), with the ``hubert`` objective run by
:func:`audiossl.train.iterations.run_iterations` on the FSDD *train* audio (no labels):

1. iteration 1: k-means (k = 100) of 39-dim MFCC frames, labels, pretraining;
2. iteration 2: k-means (k = 100) of block ``--layer`` of iteration 1's encoder, labels, pretraining.

The pretraining budget ``--cpu-minutes`` is split equally between the iterations; the steps
come from a short calibration run on throwaway MFCC labels. Each iteration's labels are scored
against the spoken digit (PNMI, purity: the digit of the utterance on every frame), and the
digit and speaker probes run on fbank, a random encoder, and the encoders of both iterations.

    python bench/hubert_evidence.py --out exp/hubert_evidence --cpu-minutes 10 --layers 4 --threads 1

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
sys.path.insert(0, str(REPO / "bench"))

from ssl_evidence import COMMON, STATS, StepClock, evaluate  # noqa: E402

from audiossl.cluster.kmeans import KMeansConfig  # noqa: E402
from audiossl.cluster.pipeline import FitConfig, fit_kmeans_dir, label_with_kmeans_dir  # noqa: E402
from audiossl.data.features import compute_global_stats  # noqa: E402
from audiossl.data.fsdd import prepare_fsdd  # noqa: E402
from audiossl.fileio import atomic_write  # noqa: E402
from audiossl.train import load_pretrained, pretrain, resolve_config  # noqa: E402
from audiossl.train.iterations import IterationsConfig, IterationSpec, run_iterations  # noqa: E402

log = logging.getLogger("hubert_evidence")

PRESET = "hubert-conformer-tiny"

#: As the wav2vec2/w2vbert runs of ssl_evidence: spans of 5 tokens (100 ms) for 0.15-2.3 s digits.
HUBERT = [
    "data.min_utt_seconds=0.1",
    "objective.config.mask.span_length=5",
    "objective.config.mask.start_prob=0.1",
    "objective.config.mask.min_spans=1",
]

#: k-means as fairseq's HuBERT recipe but with 5 restarts (FSDD has ~10^5 frames).
KMEANS = KMeansConfig(n_clusters=100, n_init=5)


def overrides(layers: int, work: Path) -> list[str]:
    return [*COMMON, f"data.global_stats={work / STATS}", *HUBERT, f"encoder.overrides.num_layers={layers}"]


def calibrate(layers: int, data: Path, work: Path, steps: int = 8) -> float:
    """CPU seconds per step of hubert pretraining (median over steps 2..N, on quick MFCC labels)."""
    target = work / "calibration"
    shutil.rmtree(target, ignore_errors=True)
    quick = FitConfig(sample_rate=8000, sample_fraction=0.2, kmeans=KMeansConfig(n_clusters=100, n_init=1, max_iter=3))
    fit_kmeans_dir([data], target / "kmeans", quick, progress=False)
    label_with_kmeans_dir(target / "kmeans", data, target / "labels", progress=False)
    sets = [*overrides(layers, work), f"objective.config.labels={target / 'labels'}"]
    config = resolve_config(PRESET, [*sets, f"run.max_steps={steps}", f"run.checkpoint_every={steps}"])
    clock = StepClock()
    pretrain(config, [data], target / "run", callbacks=[clock])
    shutil.rmtree(target, ignore_errors=True)
    return float(np.median(np.diff(clock.times)))


def iterations(layers: int, layer: int, data: Path, work: Path, cpu_minutes: float) -> dict:
    """Both iterations within the budget (finished stages are reused); what they did and how long it took."""
    summary_path = work / "iterations.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    per_step = calibrate(layers, data, work)
    steps = max(int(cpu_minutes * 60.0 / 2 / per_step), 20)
    warmup = max(steps // 10, 5)
    sets = [*overrides(layers, work), f"run.checkpoint_every={steps}", f"optim.warmup_steps={warmup}"]
    plan = IterationsConfig(
        pretrain=PRESET,
        overrides=sets,
        iterations=[
            IterationSpec(n_clusters=100, max_steps=steps),
            IterationSpec(n_clusters=100, layer=layer, max_steps=steps),
        ],
        kmeans=KMEANS,
        reference="digit",
    )
    log.info("hubert: %.2f CPU-s/step -> %d steps per iteration (warm-up %d)", per_step, steps, warmup)
    cpu_start, wall_start = time.process_time(), time.monotonic()
    result = run_iterations(plan, [data], work / "run", progress=False)
    summary = {
        "calibrated_cpu_s_per_step": per_step,
        "steps_per_iteration": steps,
        "cpu_minutes_total": (time.process_time() - cpu_start) / 60.0,
        "wall_minutes_total": (time.monotonic() - wall_start) / 60.0,
        "ran": result.ran,
        "iterations": result.summaries,
        "overrides": sets,
        "layer": layer,
    }
    with atomic_write(summary_path) as handle:
        json.dump(summary, handle, indent=1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=REPO.parent / "shared" / "data" / "fsdd" / "recordings")
    parser.add_argument("--out", type=Path, default=REPO / "exp" / "hubert_evidence")
    parser.add_argument("--cpu-minutes", type=float, default=10.0, help="Pretraining budget of both iterations.")
    parser.add_argument("--layers", type=int, default=4, help="Blocks of the encoder.")
    parser.add_argument("--layer", type=int, default=3, help="Block of iteration 1 clustered for iteration 2.")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads (1 wastes no CPU time spinning).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    data = args.out / "data"
    if not (data / "test" / "wav.scp").is_file():
        prepare_fsdd(args.fsdd, data)
    if not (args.out / STATS).is_file():
        frontend = {"sample_rate": 8000, "num_mel_bins": 64}
        compute_global_stats(data / "train", "fbank", frontend, sample_rate=8000).save(args.out / STATS)
    summary = iterations(args.layers, args.layer, data / "train", args.out, args.cpu_minutes)
    run = args.out / "run"
    first = load_pretrained(run / "iter1" / "pretrain")
    results = {
        "pretraining": summary,
        "fbank": evaluate(first, "fbank", data),
        "random": evaluate(load_pretrained(run / "iter1" / "pretrain", random_init=True, seed=1), "encoder", data),
        "iter1": evaluate(first, "encoder", data),
        "iter2": evaluate(load_pretrained(run / "iter2" / "pretrain"), "encoder", data),
        "meta": {
            "date": datetime.date.today().isoformat(),
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
            "command": " ".join(sys.argv),
        },
    }

    def cell(scores: dict) -> str:
        return f"{100 * scores['accuracy']:.1f} ± {100 * scores['std']:.1f}"

    print("\n| features | digit | speaker |\n|---|---|---|")
    for kind in ("fbank", "random", "iter1", "iter2"):
        print(f"| {kind} | {cell(results[kind]['digit'])} | {cell(results[kind]['speaker'])} |")
    print((run / "summary.txt").read_text())
    with atomic_write(args.out / "hubert_evidence.json") as handle:
        json.dump(results, handle, indent=1)
    print(f"wrote {args.out / 'hubert_evidence.json'}")


if __name__ == "__main__":
    main()
