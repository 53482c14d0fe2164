from __future__ import annotations

from audiossl.cli.main import main
from audiossl.objectives import OBJECTIVES


def test_objectives_list_names_every_objective(capsys):
    assert main(["objectives", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == OBJECTIVES.names()
    assert {"mspm", "wav2vec2", "w2vbert"} <= set(OBJECTIVES.names())
