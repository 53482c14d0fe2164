"""Evidence for ``dino``: speaker EER on FSDD from frozen embeddings, against fbank statistics and a random encoder.

Protocol (the data, statistics and CPU-time budget of bench/ssl_evidence.py):

1. **DINO**: a 4-block Conformer-Tiny (144 wide, 2 stacked 64-bin fbank frames per token) is
   pretrained with ``dino`` on the FSDD *train* audio (no labels) for about ``--cpu-minutes``
   of process CPU time: two global views of 0.8 s and two local views of 0.3 s per utterance
   (most digits last 0.3-0.6 s, so a global view is usually the whole utterance), each with
   generated noise (white, pink, synthetic babble; 5-20 dB) and reverberation.
2. **Cluster-aware iteration** (optional, ``--cluster-minutes`` > 0): the DINO student's
   mean-pooled train embeddings are clustered by k-means into ``--speakers`` pseudo-speakers,
   and the model is trained on with the AAM-softmax classifier, the dynamic loss-gate (refitted
   every epoch) and label correction (``objective.config.cluster``), starting from the DINO
   weights; one run per ``--cluster-dino-weights`` entry (0: DINO loss off, as Han et al.).
3. **Scoring**: every pair of the 300 test utterances (6 speakers; 44 850 trials, 7 350 of
   them same-speaker) is scored by the cosine of two frozen utterance embeddings, and the
   equal error rate is computed (scikit-learn's ROC; cross-checked with the sv plugin's
   ``compute_eer`` when it is importable). Embeddings:

   * ``fbank``: mean and standard deviation over frames of the normalised fbank (128 dims);
   * ``random``: the mean over frames of the last layer of the same architecture, random weights;
   * ``dino`` / ``dino+cluster``: the same from the trained student.

   Each is scored raw and after subtracting the mean embedding of the train split (the
   usual cosine back-end; nothing is fitted on the test split).

    python bench/dino_evidence.py --out exp/dino_evidence --cpu-minutes 6 --cluster-minutes 3 \\
        --cluster-dino-weights 0,1 --threads 1

Results and their reading: docs/results.md.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
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

from ssl_evidence import STATS, CpuBudget, StepClock, labels  # noqa: E402

from audiossl.cluster.speakers import cluster_speakers, extract_embeddings, write_pseudo_labels  # noqa: E402
from audiossl.data.dataset import AudioDataset, collate  # noqa: E402
from audiossl.data.features import compute_global_stats  # noqa: E402
from audiossl.data.fsdd import prepare_fsdd  # noqa: E402
from audiossl.fileio import atomic_write  # noqa: E402
from audiossl.nn.masking import lengths_to_mask  # noqa: E402
from audiossl.train import load_pretrained, pretrain, resolve_config  # noqa: E402
from audiossl.train.checkpoint import latest_checkpoint  # noqa: E402
from audiossl.train.logging import read_records  # noqa: E402

log = logging.getLogger("dino_evidence")

PRESET = "dino-conformer-tiny"

#: FSDD (8 kHz, digits of 0.15-2.3 s) and the CPU budget: the settings of bench/ssl_evidence.py.
COMMON = [
    "data.sample_rate=8000",
    "data.frontend_config.num_mel_bins=64",
    "encoder.overrides.input.num_bins=64",
    "encoder.overrides.num_layers=4",
    "data.max_seconds_per_batch=16",
    "data.max_utt_seconds=null",
    "data.min_utt_seconds=0.1",
    "data.num_workers=0",
    "run.device=cpu",
    "run.log_every=10",
    "run.tensorboard=false",
    "optim.lr=1.0e-3",
    "objective.config.global_seconds=0.8",
    "objective.config.local_crops=2",
    "objective.config.local_seconds=0.3",
    "objective.config.head_hidden_dim=512",
    "objective.config.bottleneck_dim=128",
    "objective.config.num_prototypes=1024",
    "objective.config.momentum=0.99",
]


def overrides(stats: Path, steps: int, extra: list[str] = ()) -> list[str]:
    warmup = max(steps // 10, 5)
    return [
        *COMMON,
        f"data.global_stats={stats}",
        f"run.max_steps={steps}",
        f"run.checkpoint_every={steps}",
        f"optim.warmup_steps={warmup}",
        f"objective.config.momentum_steps={steps}",
        f"objective.config.teacher_warmup_steps={warmup}",
        *extra,
    ]


def train(name: str, data: Path, work: Path, cpu_minutes: float, extra: list[str] = ()) -> dict:
    """Calibrate CPU-s per step, then pretrain ``name`` within the budget (reusing a finished run)."""
    run_dir = work / "runs" / name
    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and latest_checkpoint(run_dir) is not None:
        log.info("%s: reusing %s", name, run_dir)
        return json.loads(summary_path.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    calibration = work / "calibration" / name
    shutil.rmtree(calibration, ignore_errors=True)
    clock = StepClock()
    pretrain(resolve_config(PRESET, overrides(work / STATS, 8, extra)), [data], calibration, callbacks=[clock])
    per_step = float(np.median(np.diff(clock.times)))
    shutil.rmtree(calibration, ignore_errors=True)
    budget = cpu_minutes * 60.0
    steps = max(int(budget / per_step), 20)
    sets = overrides(work / STATS, steps, extra)
    log.info("%s: %.2f CPU-s/step -> %d steps", name, per_step, steps)
    cpu_start, wall_start = time.process_time(), time.monotonic()
    result = pretrain(resolve_config(PRESET, sets), [data], run_dir, callbacks=[CpuBudget(1.3 * budget, per_step)])
    records = [r for r in read_records(run_dir / "train.jsonl") if r.get("kind") == "train"]
    summary = {
        "name": name,
        "overrides": sets,
        "steps": result.step,
        "planned_steps": steps,
        "stopped_by": result.stopped_by,
        "cpu_minutes": (time.process_time() - cpu_start) / 60.0,
        "wall_minutes": (time.monotonic() - wall_start) / 60.0,
        "calibrated_cpu_s_per_step": per_step,
        "first": {"loss": records[0]["loss"], "metrics": records[0]["metrics"]} if records else None,
        "last": {"loss": records[-1]["loss"], "metrics": records[-1]["metrics"]} if records else None,
    }
    with atomic_write(summary_path) as handle:
        json.dump(summary, handle, indent=1)
    return summary


@torch.no_grad()
def fbank_statistics(model, data_dir: Path) -> tuple[list[str], torch.Tensor]:
    """Mean and standard deviation over frames of the model's normalised fbank: (N, 2C)."""
    dataset = AudioDataset(data_dir, sample_rate=model.sample_rate)
    rows = []
    for start in range(0, len(dataset), 64):
        batch = collate(dataset[list(range(start, min(start + 64, len(dataset))))])
        features, lengths = model.inputs(batch.waveforms, batch.lengths)  # (B, F, C)
        valid = lengths_to_mask(lengths, features.shape[1]).unsqueeze(-1).float()  # (B, F, 1)
        count = valid.sum(1).clamp_min(1)
        mean = (features * valid).sum(1) / count
        std = (((features - mean.unsqueeze(1)) ** 2 * valid).sum(1) / count).sqrt()
        rows.append(torch.cat([mean, std], dim=1))
    return list(dataset.ids), torch.cat(rows)


def eer(scores: np.ndarray, targets: np.ndarray) -> float:
    """Equal error rate from scikit-learn's ROC: the mean of the two rates where they cross."""
    from sklearn.metrics import roc_curve

    false_alarm, hit, _ = roc_curve(targets, scores)
    miss = 1.0 - hit
    index = int(np.nanargmin(np.abs(miss - false_alarm)))
    return float((miss[index] + false_alarm[index]) / 2.0)


def plugin_eer(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """The sv plugin's EER (interpolated crossing), when the plugin is importable."""
    sys.path.insert(0, str(REPO / "plugins" / "sv"))
    try:
        from audiossl_sv.metrics import compute_eer
    except ImportError:
        return None
    return float(compute_eer(scores, targets).eer)


def score(test: torch.Tensor, speakers: list[str], mean: torch.Tensor | None) -> dict:
    """EER of all test pairs under cosine scoring (after subtracting ``mean`` when given)."""
    points = test - mean if mean is not None else test
    points = torch.nn.functional.normalize(points.double(), dim=1)
    cosine = (points @ points.T).numpy()
    pairs = np.array(list(itertools.combinations(range(len(speakers)), 2)))  # (P, 2)
    values = cosine[pairs[:, 0], pairs[:, 1]]
    spk = np.array(speakers)
    targets = (spk[pairs[:, 0]] == spk[pairs[:, 1]]).astype(int)
    return {
        "eer": eer(values, targets),
        "eer_plugin": plugin_eer(values, targets),
        "trials": len(values),
        "targets": int(targets.sum()),
    }


def evaluate(name: str, embed, data: Path) -> dict:
    """Raw and train-mean-subtracted cosine EER of the embeddings ``embed(split_dir) -> (ids, (N, D))``."""
    train_ids, train_x = embed(data / "train")
    test_ids, test_x = embed(data / "test")
    spk = dict(line.split(maxsplit=1) for line in (data / "test" / "utt2spk").read_text().splitlines())
    speakers = [spk[utt].strip() for utt in test_ids]
    result = {"raw": score(test_x, speakers, None), "mean_subtracted": score(test_x, speakers, train_x.mean(0))}
    result["dim"] = int(test_x.shape[1])
    log.info(
        "%s: EER raw %.2f%%, mean-subtracted %.2f%%",
        name,
        100 * result["raw"]["eer"],
        100 * result["mean_subtracted"]["eer"],
    )
    return result


def pseudo_labels(run_dir: Path, data: Path, out: Path, speakers: int) -> dict:
    """Cluster the train embeddings into pseudo-speakers, write ``out/utt2pseudo``; their agreement with the truth."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    ids, embeddings = extract_embeddings(load_pretrained(run_dir), data / "train")
    pseudo = cluster_speakers(embeddings - embeddings.mean(0), speakers, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    write_pseudo_labels(out / "utt2pseudo", ids, pseudo)
    truth = {}
    for table in ("utt2spk", "utt2digit"):
        values, _ = labels(data / "train", ids, table)
        truth[table] = {
            "ari": float(adjusted_rand_score(values.numpy(), pseudo.numpy())),
            "nmi": float(normalized_mutual_info_score(values.numpy(), pseudo.numpy())),
        }
    return truth


def table(results: dict) -> str:
    lines = ["| embedding | EER raw cosine (%) | EER mean-subtracted cosine (%) |", "|---|---|---|"]
    for name, entry in results["eval"].items():
        lines.append(f"| {name} | {100 * entry['raw']['eer']:.2f} | {100 * entry['mean_subtracted']['eer']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=REPO.parent / "shared" / "data" / "fsdd" / "recordings")
    parser.add_argument("--out", type=Path, default=REPO / "exp" / "dino_evidence")
    parser.add_argument("--cpu-minutes", type=float, default=6.0, help="DINO pretraining budget.")
    parser.add_argument("--cluster-minutes", type=float, default=3.0, help="Cluster-aware iteration budget (0: skip).")
    parser.add_argument("--speakers", type=int, default=6, help="Pseudo-speakers k of the clustering.")
    parser.add_argument(
        "--cluster-dino-weights",
        default="0",
        help="Comma-separated DINO loss weights of the cluster-aware runs (0: classification only, Han et al.).",
    )
    parser.add_argument("--threads", type=int, default=1, help="Torch threads.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    data = args.out / "data"
    if not (data / "test" / "wav.scp").is_file():
        prepare_fsdd(args.fsdd, data)
    if not (args.out / STATS).is_file():
        frontend = {"sample_rate": 8000, "num_mel_bins": 64}
        compute_global_stats(data / "train", "fbank", frontend, sample_rate=8000).save(args.out / STATS)
    results: dict = {"runs": {}, "eval": {}}
    results["runs"]["dino"] = train("dino", data / "train", args.out, args.cpu_minutes)
    dino_dir = args.out / "runs" / "dino"
    model = load_pretrained(dino_dir)
    results["eval"]["fbank"] = evaluate("fbank", lambda d: fbank_statistics(model, d), data)
    random_model = load_pretrained(dino_dir, random_init=True, seed=1)
    results["eval"]["random"] = evaluate("random", lambda d: extract_embeddings(random_model, d), data)
    results["eval"]["dino"] = evaluate("dino", lambda d: extract_embeddings(model, d), data)
    if args.cluster_minutes > 0:
        pseudo_dir = args.out / "pseudo"
        results["pseudo_labels"] = pseudo_labels(dino_dir, data, pseudo_dir, args.speakers)
        log.info("pseudo-labels vs truth: %s", results["pseudo_labels"])
        from audiossl.train.data import TrainData

        epoch = len(TrainData([data / "train"], resolve_config(PRESET, overrides(args.out / STATS, 1)).data, seed=0))
        extra = [
            f"objective.config.cluster.labels={pseudo_dir / 'utt2pseudo'}",
            f"objective.config.cluster.init={dino_dir}",
            f"objective.config.cluster.gate_every={epoch}",  # the loss-gate is refitted every epoch
            f"objective.config.cluster.gate_after={epoch}",
        ]
        for weight in (float(w) for w in args.cluster_dino_weights.split(",")):
            name = "dino+cluster" if weight == 0 else f"dino+cluster, dino_weight {weight:g}"
            sets = [*extra, f"objective.config.dino_weight={weight}"]
            results["runs"][name] = train(
                name.replace(", ", "_").replace(" ", ""), data / "train", args.out, args.cluster_minutes, sets
            )
            clustered = load_pretrained(args.out / "runs" / name.replace(", ", "_").replace(" ", ""))
            results["eval"][name] = evaluate(name, lambda d, m=clustered: extract_embeddings(m, d), data)
    results["meta"] = {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
    }
    print()
    print(table(results))
    target = args.out / "dino_evidence.json"
    with atomic_write(target) as handle:
        json.dump(results, handle, indent=1)
    print(f"\nwrote {target}")


if __name__ == "__main__":
    main()
