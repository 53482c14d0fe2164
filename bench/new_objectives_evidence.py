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
        --cpu-minutes 10 --layers 4 --threads 1 --runs data2vec-ast --json exp/new_objectives/data2vec-ast.json

Results and their reading: docs/results.md, section "New objectives on FSDD".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ssl_evidence  # noqa: E402

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
        "distil-conformer-tiny",
        ["data.min_utt_seconds=0.1", f"objective.config.teacher={TEACHER}", "objective.config.teacher_layers=[2,3,4]"],
    ),
}

_base_overrides = ssl_evidence.run_overrides


def run_overrides(name: str, layers: int | None, stats: Path) -> tuple[str, list[str]]:
    """ssl_evidence's overrides, except that the distilled student keeps its preset's 2 blocks."""
    preset, sets = _base_overrides(name, layers, stats)
    if name.startswith("distil"):
        sets = [item for item in sets if not item.startswith("encoder.overrides.num_layers=")]
    return preset, sets


if __name__ == "__main__":
    ssl_evidence.RUNS.clear()
    ssl_evidence.RUNS.update(NEW_RUNS)
    ssl_evidence.run_overrides = run_overrides
    if "--out" not in sys.argv:
        sys.argv += ["--out", str(ssl_evidence.REPO / "exp" / "new_objectives")]
    ssl_evidence.main()
