"""The SUPERB tasks audiossl runs: which plugin trains each, which label it reads, which metric ranks it.

Names and metrics follow SUPERB (Yang et al., 2021) and its follow-ups: KS, IC, SID and ER
by accuracy (the classifiers' ``WA``, weighted accuracy = overall accuracy), ASR by WER (the
asr plugin's ``wer``, a fraction), PR by PER, SV by EER (the sv plugin's ``eer_percent``),
QbE by MTWV, SE by PESQ, SS by SI-SDRi; LID (accuracy) is not one of SUPERB's but uses the
same classifier. A data config may name another plugin, metric or task options for a task
(``plugin:``, ``metric:``, ``higher_is_better:``, ``options:``), e.g. while a plugin is renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal


@dataclass(frozen=True)
class TaskSpec:
    """How ``audiossl superb`` runs one task."""

    name: str
    """SUPERB task name (``ks``, ``asr``...)."""
    plugin: str
    """The downstream plugin (entry point of ``audiossl.plugins``) whose task factory builds it."""
    metric: str
    """Key of the metrics dict the task's evaluation returns that ranks upstreams."""
    higher_is_better: bool = True
    """True for accuracies and MTWV, False for error rates (WER, PER, EER)."""
    label: str | None = None
    """Default label table (a file name in every data dir, e.g. ``utt2kw``); None when the task needs none."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the plugin's task factory."""
    kind: Literal["downstream", "qbe"] = "downstream"
    """``downstream``: trained with :func:`audiossl.downstream.train_downstream`; ``qbe``: searched, not trained."""
    description: str = ""


#: SUPERB's task names (in SUPERB's order), plus lid.
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("pr", "pr", "PER", False, "text.phn", description="phoneme recognition (CTC), phone error rate"),
        TaskSpec("ks", "cls", "WA", True, "utt2kw", description="keyword spotting, accuracy"),
        TaskSpec("qbe", "qbe", "MTWV", True, "words.ctm", kind="qbe", description="query by example, MTWV"),
        TaskSpec("sid", "cls", "WA", True, "utt2spk", description="speaker identification, accuracy"),
        TaskSpec("asr", "asr", "wer", False, "text", description="speech recognition (CTC), word error rate"),
        TaskSpec("ic", "cls", "WA", True, "utt2intent", description="intent classification, accuracy"),
        TaskSpec("sv", "sv", "eer_percent", False, "utt2spk", description="speaker verification, equal error rate"),
        TaskSpec("er", "er", "WA", True, "utt2emo", description="emotion recognition, accuracy (WA)"),
        TaskSpec("lid", "cls", "WA", True, "utt2lang", description="language identification, accuracy"),
        TaskSpec("se", "se", "PESQ", True, None, description="speech enhancement, PESQ"),
        TaskSpec("ss", "ss", "SI-SDRi", True, None, description="source separation, SI-SDR improvement"),
    )
}


def label_name(label_file: str) -> str:
    """The :class:`~audiossl.data.dataset.AudioDataset` label of a label file: utt2kw -> kw, utt2spk -> spk."""
    return label_file[len("utt2") :] if label_file.startswith("utt2") else label_file


def task_options(spec: TaskSpec, label_file: str | None) -> dict[str, Any]:
    """The factory options of a classifier task reading ``label_file`` (the generic classifier's ``label``)."""
    options = dict(spec.options)
    if spec.plugin == "cls" and label_file is not None:
        options.setdefault("label", label_name(label_file))
    return options


def customised(spec: TaskSpec, **changes: Any) -> TaskSpec:
    """``spec`` with the data config's overrides (None values ignored)."""
    return replace(spec, **{k: v for k, v in changes.items() if v is not None})
