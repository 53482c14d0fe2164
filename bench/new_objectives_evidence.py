"""The FSDD probe evidence of bench/ssl_evidence.py for the issue-20 objectives: data2vec, BEST-RQ,
WavLM-style denoising masked prediction and a DistilHuBERT-style distilled student.

Same data, split, fbank inputs, batches, optimiser, CPU budget and probe as the table of the
existing objectives (this script adds rows to ``bench/ssl_evidence.RUNS`` and runs its ``main``;
every option of that script applies). Per-run changes, beyond the common ones of that script:

* every run reads utterances from 0.1 s, with spans of 5 tokens starting at 10% of the tokens
  (at least one), as the wav2vec2/w2vbert/hubert rows do;
* ``data2vec-ast``: AST reading pairs of frames (like the mspm-ast row), average of the top 3 of
  4 blocks, EMA decay 0.999 -> 0.9999 over 2500 updates (about the steps the budget allows);
* ``bestrq-conformer``, ``wavlm-conformer``: the presets (WavLM-style with quantizer targets,
  utterance mixing of 20% of the utterances, no noise);
* ``distil-conformer``: a 2-block student (``--layers`` does not apply to it) distilling blocks
  2, 3 and 4 of ``--teacher`` (default: the shared w2v-BERT Conformer of /work/ckpt, 4 x 144,
  pretrained on the same FSDD train audio).

    nice -n 10 env OMP_NUM_THREADS=1 python bench/new_objectives_evidence.py --out exp/new_objectives \\
        --cpu-minutes 2 --layers 4 --threads 1 --runs data2vec-ast --json exp/new_objectives/data2vec-ast.json

``--baselines RUN,...`` also probes fbank and the random encoder for those runs; the others reuse
the columns of the table row with the same architecture (same seed and statistics, so the same
numbers).

Results and their reading: docs/results.md, section "New objectives on FSDD".
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ssl_evidence  # noqa: E402

from audiossl.data.features import compute_global_stats  # noqa: E402
from audiossl.data.fsdd import prepare_fsdd  # noqa: E402
from audiossl.fileio import atomic_write  # noqa: E402
from audiossl.train import load_pretrained  # noqa: E402

#: The teacher of the distilled student (a run dir or checkpoint any audiossl upstream loader reads).
TEACHER = os.environ.get("DISTIL_TEACHER", "/work/ckpt/w2vbert-fsdd/run")

SPANS = [
    "data.min_utt_seconds=0.1",
    "objective.config.mask.span_length=5",
    "objective.config.mask.start_prob=0.1",
    "objective.config.mask.min_spans=1",
]

NEW_RUNS = {
    "data2vec-ast": (
        "data2vec-ast-tiny",
        [*SPANS, "objective.config.top_k=3", "objective.config.ema_anneal_end_step=2500"],
    ),
    "bestrq-conformer": ("bestrq-conformer-tiny", SPANS),
    "wavlm-conformer": ("wavlm-conformer-tiny", SPANS),
    "distil-conformer": (
        "distill-conformer-tiny",
        ["data.min_utt_seconds=0.1", f"objective.config.teacher={TEACHER}", "objective.config.teacher_layers=[2,3,4]"],
    ),
    # the same student, distilled from the teacher named by DISTIL_TEACHER_2 (a second teacher, e.g. a later checkpoint)
    "distil-conformer-2": (
        "distill-conformer-tiny",
        [
            "data.min_utt_seconds=0.1",
            f"objective.config.teacher={os.environ.get('DISTIL_TEACHER_2', TEACHER)}",
            "objective.config.teacher_layers=[2,3,4]",
        ],
    ),
}

#: The table's own runs (same protocol), e.g. ``w2vbert-conformer`` as an anchor at a shorter budget.
TABLE_RUNS = dict(ssl_evidence.RUNS)

_base_overrides = ssl_evidence.run_overrides


def run_overrides(name: str, layers: int | None, stats: Path) -> tuple[str, list[str]]:
    """ssl_evidence's overrides, except that the distilled student keeps its preset's 2 blocks."""
    preset, sets = _base_overrides(name, layers, stats)
    if name.startswith("distil"):
        sets = [item for item in sets if not item.startswith("encoder.overrides.num_layers=")]
    return preset, sets


def main() -> None:
    """ssl_evidence's loop over runs, with the baselines (fbank, random) only where ``--baselines`` asks.

    The fbank and random columns of a run are fixed by its architecture, seed and statistics, so the
    rows of an architecture already in the table (AST 4 x 192 frames, Conformer 4 x 144) reuse them;
    a new architecture (the 2-block student) needs its own.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--fsdd", type=Path, default=ssl_evidence.REPO.parent / "shared" / "data" / "fsdd" / "recordings"
    )
    parser.add_argument("--out", type=Path, default=ssl_evidence.REPO / "exp" / "new_objectives")
    parser.add_argument("--cpu-minutes", type=float, default=10.0, help="Pretraining budget per objective.")
    parser.add_argument(
        "--runs",
        default=",".join(NEW_RUNS),
        help=f"Comma-separated subset of {', '.join(NEW_RUNS)} (or a run of bench/ssl_evidence.py, as an anchor).",
    )
    parser.add_argument("--layers", type=int, default=4, help="Blocks of every encoder but the student (0 = presets').")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads.")
    parser.add_argument("--baselines", default="", help="Comma-separated runs that also probe fbank and random.")
    parser.add_argument("--probe", type=Path, action="append", default=[], help="Also probe this checkpoint (teacher).")
    parser.add_argument("--json", type=Path, default=None, help="Results file (default: OUT/new_objectives.json).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    ssl_evidence.RUNS.clear()
    ssl_evidence.RUNS.update({**TABLE_RUNS, **NEW_RUNS})
    ssl_evidence.run_overrides = run_overrides
    data = args.out / "data"
    if not (data / "test" / "wav.scp").is_file():
        prepare_fsdd(args.fsdd, data)
    if not (args.out / ssl_evidence.STATS).is_file():
        frontend = {"sample_rate": 8000, "num_mel_bins": 64}
        compute_global_stats(data / "train", "fbank", frontend, sample_rate=8000).save(args.out / ssl_evidence.STATS)
    baselines = set(filter(None, args.baselines.split(",")))
    results: dict = {"runs": {}}
    for checkpoint in args.probe:
        results.setdefault("probes", {})[str(checkpoint)] = ssl_evidence.evaluate(
            load_pretrained(checkpoint), "encoder", data
        )
        logging.info("%s: %s", checkpoint, json.dumps(results["probes"][str(checkpoint)]))
    for name in filter(None, args.runs.split(",")):
        summary = ssl_evidence.pretrain_run(name, args.layers or None, data / "train", args.out, args.cpu_minutes)
        run_dir = args.out / "runs" / name
        pretrained = load_pretrained(run_dir)
        entry = {"pretraining": summary, "pretrained": ssl_evidence.evaluate(pretrained, "encoder", data)}
        if name in baselines:
            entry["fbank"] = ssl_evidence.evaluate(pretrained, "fbank", data)
            entry["random"] = ssl_evidence.evaluate(load_pretrained(run_dir, random_init=True, seed=1), "encoder", data)
        results["runs"][name] = entry
        logging.info("%s: %s", name, json.dumps({k: v for k, v in entry.items() if k != "pretraining"}))
    results["meta"] = {
        "date": datetime.date.today().isoformat(),
        "threads": args.threads,
        "torch": torch.__version__,
        "teacher": TEACHER,
        "command": " ".join(sys.argv),
    }
    target = args.json or args.out / "new_objectives.json"
    with atomic_write(target) as handle:
        json.dump(results, handle, indent=1)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
