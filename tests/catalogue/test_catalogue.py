"""Every bad input of the catalogue (catalogue_cases.py) through the command line: exit 2, no
traceback, the file (and line) named, nothing half-written. A handful also run as a real
subprocess, to check the same end to end (no traceback on the terminal)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from catalogue_cases import CASES, Case
from catalogue_world import World, snapshot

from audiossl.cli.main import main

# A Python exception inside a libsndfile callback is printed as "Exception ignored ... Traceback":
# for the user that is a traceback, so here it fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

#: Fixtures a case may name in its templates, computed only when a case needs them.
LAZY = ("embeddings", "er_run")


def _prepare(case: Case, tmp_path, clean_corpus, clean_run, request) -> tuple[World, list[str], list[str]]:
    world = World(tmp_path, clean_corpus, clean_run)
    values = dict(case.build(world))
    text = " ".join(case.argv + case.names)
    for name in LAZY:
        if "{" + name + "}" in text:
            values[name] = request.getfixturevalue(name)
            world.lazy.add(name)
    fields = {"data": world.data, "out": world.out, "bad": world.bad, "run": clean_run, "tmp": tmp_path, **values}
    argv = [part.format(**fields) for part in case.argv]
    names = [name.format(**fields) for name in case.names]
    return world, argv, names


def test_the_catalogue_has_at_least_60_cases():
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, tmp_path, clean_corpus, clean_run, request, capsys, caplog):
    world, argv, names = _prepare(case, tmp_path, clean_corpus, clean_run, request)
    roots = [tmp_path, clean_corpus, clean_run, *(request.getfixturevalue(n) for n in LAZY if n in world.lazy)]
    before = snapshot(*roots)
    caplog.set_level(logging.INFO)
    try:
        code = main(argv)
    except BaseException as error:  # what escapes main() is a traceback for the user
        pytest.fail(f"audiossl {' '.join(argv)}\nraised {type(error).__name__}: {error}")
    captured = capsys.readouterr()
    output = captured.out + captured.err + caplog.text
    shown = f"audiossl {' '.join(argv)}\n--- output ---\n{output}"
    assert code == 2, shown
    assert "Traceback" not in output, shown
    for name in names:
        assert name in output, f"{name!r} not named\n{shown}"
    assert not world.marker.exists(), f"a malicious pickle ran code\n{shown}"
    after = snapshot(*roots)
    if case.resumable:  # the run dir of a run that had started stays, for --resume; no temporary files in it
        run_dir = str(world.out)
        leftovers = [path for path in after if path.startswith(run_dir + "/")]
        assert not [path for path in leftovers if Path(path).name.startswith(".")], f"temporary files\n{shown}"
        after = {path: state for path, state in after.items() if path != run_dir and path not in leftovers}
    added = sorted(set(after) - set(before))
    changed = sorted(p for p in before if p in after and before[p] != after[p])
    removed = sorted(set(before) - set(after))
    assert not (added or changed or removed), f"left behind {added}, changed {changed}, removed {removed}\n{shown}"


#: Cases also run as `python -m audiossl.cli ...`: the terminal shows no traceback either.
END_TO_END = [
    "audio/truncated-data/extract",
    "audio/rf64-huge-declared-size/validate",  # libsndfile seeking before the start must not print a traceback
    "set/wrong-type/pretrain",
    "checkpoint/malicious-pickle/extract",
    "config/yaml-error/pretrain",
]


@pytest.mark.parametrize("case_id", END_TO_END)
def test_bad_input_end_to_end(case_id, tmp_path, clean_corpus, clean_run, request):
    case = next(case for case in CASES if case.id == case_id)
    world, argv, names = _prepare(case, tmp_path, clean_corpus, clean_run, request)
    result = subprocess.run([sys.executable, "-m", "audiossl.cli", *argv], capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    assert all(name in output for name in names), output
    assert not world.marker.exists()
