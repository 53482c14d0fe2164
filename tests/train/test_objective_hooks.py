"""The trainer's objective hooks: objective-made forward inputs, end-of-step calls, crop offsets."""

from __future__ import annotations

import torch
from train_helpers import StandinConfig, StandinObjective, tiny_config

from audiossl.data.dataset import AudioDataset
from audiossl.objectives.base import OBJECTIVES, ObjectiveSpec
from audiossl.train import pretrain

HOOKED = "hooked_standin"


class HookedObjective(StandinObjective):
    """The stand-in, recording what the hooks saw."""

    seen: list[tuple[list[str], torch.Tensor, torch.Tensor]] = []
    steps: list[int] = []

    def batch_inputs(self, batch, inputs, generator=None):
        kwargs = super().batch_inputs(batch, inputs, generator)
        HookedObjective.seen.append((list(batch.ids), batch.offsets.clone(), batch.lengths.clone()))
        return kwargs

    def on_step_end(self, step: int) -> None:
        HookedObjective.steps.append(step)


def test_trainer_calls_batch_inputs_and_on_step_end(varied_dir, tmp_path):
    HookedObjective.seen.clear()
    HookedObjective.steps.clear()
    OBJECTIVES.register(HOOKED)(ObjectiveSpec(HOOKED, StandinConfig, HookedObjective, "hook test"))
    try:
        config = tiny_config(objective={"name": HOOKED, "config": {}}, run={"max_steps": 3, "checkpoint_every": 3})
        pretrain(config, [varied_dir], tmp_path / "run")
    finally:
        OBJECTIVES._items.pop(HOOKED, None)
    assert HookedObjective.steps == [1, 2, 3]
    assert len(HookedObjective.seen) >= 3  # one call per micro-batch
    for ids, offsets, lengths in HookedObjective.seen:
        assert len(ids) == offsets.shape[0] == lengths.shape[0]
        assert offsets.dtype == torch.float64 and bool((offsets >= 0).all())


def test_crop_offsets_locate_the_window_in_the_full_utterance(varied_dir):
    full = AudioDataset(varied_dir, sample_rate=16000)
    cropped = AudioDataset(varied_dir, sample_rate=16000, max_seconds=1.0, crop_seed=3)
    moved = 0
    for index in range(len(full)):
        whole, window = full[index], cropped[index]
        assert whole.offset == 0.0
        start = round(window.offset * 16000)
        assert 0 <= window.offset <= max(whole.waveform.shape[0] / 16000 - 1.0, 0.0) + 1e-9
        torch.testing.assert_close(window.waveform, whole.waveform[start : start + window.waveform.shape[0]])
        moved += window.offset > 0
    assert moved >= 1  # the 1.5 s and 1.2 s utterances are cropped somewhere after their start
