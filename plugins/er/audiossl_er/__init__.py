"""audiossl plugins: utterance classification over any label (``audiossl cls``) and emotion recognition (``er``).

Utterance pooling (mean, mean + std, or attentive statistics) and a linear or MLP classifier
on an upstream's weighted layer sum; optional inverse-frequency class weights; reports name
both WA (weighted accuracy: overall accuracy) and UA (unweighted accuracy: mean per-class
recall), the two figures emotion papers give since IEMOCAP's classes are imbalanced; a
confusion-matrix PNG; leave-speaker-out folds. This module stays light (no torch import):
audiossl imports it at every start-up to mount the commands.
"""

from __future__ import annotations

from typing import Any

from audiossl.downstream.plugin import Plugin

__version__ = "0.1.0"

#: The label table the er task reads (utt2emo); the cls task reads any utt2<label>.
LABEL = "emo"
#: The reference probe's arrays in a run dir.
PROBE_FILE = "probe.npz"


def make_task(**options: Any):
    """An :class:`audiossl_er.task.EmotionTask` built with ``options`` (see its docstring)."""
    # lazy: the task pulls in torch; every `audiossl` start-up imports this package
    from audiossl_er.task import EmotionTask

    return EmotionTask(**options)


def make_cls_task(**options: Any):
    """An :class:`audiossl_er.task.ClassificationTask` (any ``utt2<label>``) built with ``options``."""
    from audiossl_er.task import ClassificationTask

    return ClassificationTask(**options)


def cls_plugin() -> Plugin:
    """The entry point (group ``audiossl.plugins``, name ``cls``): classification over any utt2<label>."""
    from audiossl_er.cli import cls_app

    return Plugin(
        name="cls",
        version=__version__,
        description="Utterance classification over any utt2<label> (keywords, intent, speaker/language id, "
        "emotion): WA and UA beside a linear probe, confusion matrix, speaker folds.",
        labels=(),
        task_factory=make_cls_task,
        cli=cls_app,
    )


def plugin() -> Plugin:
    """The entry point (group ``audiossl.plugins``, name ``er``)."""
    # lazy: audiossl_er.cli imports make_task from this package (import cycle)
    from audiossl_er.cli import app

    return Plugin(
        name="er",
        version=__version__,
        description="Emotion recognition: pooled features + classifier, WA and UA, confusion matrix, speaker folds.",
        labels=(LABEL,),
        task_factory=make_task,
        cli=app,
    )
