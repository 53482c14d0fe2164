"""data validate: --nj 2 and --shard I/N + --facts report the unsharded run's problems, in the same order."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.cli.main import main
from audiossl.data.validate import merge_audio_facts, read_audio_facts, save_audio_facts, validate_data_dir


@pytest.fixture(scope="module")
def broken(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus with problems spread over the recordings: rates, channels, a missing and a truncated file."""
    root = tmp_path_factory.mktemp("broken") / "data"
    shutil.copytree(corpus, root)
    lines = (root / "wav.scp").read_text().splitlines()
    paths = [Path(line.split(" ", 1)[1]) for line in lines]
    local = [root / "wav" / path.name for path in paths]
    (root / "wav.scp").write_text("".join(f"{line.split()[0]} {p}\n" for line, p in zip(lines, local, strict=True)))
    audio, rate = soundfile.read(local[1])
    soundfile.write(local[1], audio[::2], rate // 2)  # another sample rate (and a wrong utt2dur)
    soundfile.write(local[5], np.stack([audio, audio], axis=1), rate)  # two channels
    local[7].unlink()  # missing
    local[9].write_bytes(local[9].read_bytes()[:100])  # truncated
    return root


def test_jobs_and_shards_find_the_same_problems_in_order(broken: Path, tmp_path: Path) -> None:
    one = validate_data_dir(broken)
    assert len(one) >= 4 and any("sample rate" in p.message for p in one) and any("channel" in p.message for p in one)
    paths = []
    for index in (2, 0, 1):
        paths.append(tmp_path / f"facts.shard-{index}-of-3.json")
        save_audio_facts(read_audio_facts(broken, shard=f"{index}/3"), paths[-1])
    assert validate_data_dir(broken, audio_facts=merge_audio_facts(paths)) == one


def test_cli_shards_then_report(broken: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "validate", str(broken)]) == 2
    expected = capsys.readouterr().err
    facts = tmp_path / "facts.json"
    for index in range(2):
        assert main(["data", "validate", str(broken), "--shard", f"{index}/2", "--facts", str(facts)]) == 0
    capsys.readouterr()
    assert main(["data", "validate", str(broken), "--facts", str(facts)]) == 2
    assert capsys.readouterr().err == expected
    assert main(["data", "validate", str(broken), "--nj", "2"]) == 2
    assert capsys.readouterr().err == expected
    (tmp_path / "facts.shard-1-of-2.json").unlink()
    assert main(["data", "validate", str(broken), "--facts", str(facts)]) == 2
    assert "shard(s) 1/2 missing" in capsys.readouterr().err
