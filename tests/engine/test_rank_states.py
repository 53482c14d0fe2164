"""Per-process checkpoint entries (``TrainUnit.rank_state``): saved for every process, each given its own back.

One process here (the gathering is the engine's ``all_gather_objects``, a list of one): the
checkpoint holds ``rank_states`` = [this process's state at that step], a resume hands exactly that
state to ``load_rank_state``, and a checkpoint of another process count hands None.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from audiossl.engine import Engine, EngineConfig, TrainUnit
from audiossl.fileio import checkpoint_path, load_checkpoint
from audiossl.nn.outputs import LossOutput


class CountingUnit(TrainUnit):
    """A linear model on random batches; its rank state is how many batches it has drawn."""

    def __init__(self) -> None:
        self.drawn = 0
        self.restored: list[object] = []

    def setup(self, engine, restoring: bool) -> None:
        self.model = nn.Linear(3, 1)

    def batches(self):
        for _ in itertools.count():
            self.drawn += 1
            yield torch.randn(4, 3)

    def forward(self, model, item, step: int) -> LossOutput:
        return LossOutput(total=model(item).pow(2).mean())

    def state_dict(self):
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state, path) -> None:
        self.model.load_state_dict(state["model"])

    def rank_state(self):
        return {"drawn": self.drawn, "marker": torch.tensor([self.drawn * 10])}

    def load_rank_state(self, state, path) -> None:
        self.restored.append(state)


def _run(run_dir, max_steps: int, resume: bool = False) -> CountingUnit:
    unit = CountingUnit()
    config = EngineConfig(max_steps=max_steps, device="cpu", checkpoint_every=2, tensorboard=False, log_every=1)
    engine = Engine(unit, config, run_dir, resume=resume)
    try:
        engine.train()
    finally:
        engine.close()
    return unit


def test_rank_states_are_saved_and_each_process_gets_its_own_back(tmp_path):
    _run(tmp_path / "run", 2)
    state = load_checkpoint(checkpoint_path(tmp_path / "run", 2))
    assert len(state["rank_states"]) == 1
    assert state["rank_states"][0]["drawn"] == 2 and int(state["rank_states"][0]["marker"]) == 20

    resumed = _run(tmp_path / "run", 4, resume=True)
    assert len(resumed.restored) == 1 and resumed.restored[0]["drawn"] == 2

    state["rank_states"] = [{"drawn": 1}, {"drawn": 1}]  # as if written by two processes
    (tmp_path / "other").mkdir()
    torch.save(state, checkpoint_path(tmp_path / "other", 2))
    assert _run(tmp_path / "other", 3, resume=True).restored == [None]
