"""Phoneme recognition: PER against an edit-distance loop, transcript parsing errors, FSDD phones, end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiossl.cli.main import main
from audiossl.data.fsdd import DIGIT_PHONES, prepare_fsdd
from audiossl.data.kaldi import DataDir
from audiossl.data.synth import LEXICON
from audiossl.downstream.trainer import DownstreamConfig, evaluate_downstream, train_downstream
from audiossl.errors import DataError
from audiossl.testing.downstream import tiny_corpus
from audiossl_pr.metrics import phone_error_rate
from audiossl_pr.phones import PhoneSet, data_dir_phones, read_lexicon, read_phone_table
from audiossl_pr.task import PRTask


def _levenshtein(a: list[str], b: list[str]) -> int:
    """Edits (substitution, deletion, insertion, each 1) turning ``a`` into ``b``: the textbook table."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[-1][-1]


def test_per_equals_an_edit_distance_loop():
    rng = random.Random(0)
    inventory = ["sh", "s", "h", "a", "aa", "t"]  # multi-letter phones are single units
    references, hypotheses = [], []
    for _ in range(40):
        references.append([rng.choice(inventory) for _ in range(rng.randint(1, 8))])
        hypotheses.append([rng.choice(inventory) for _ in range(rng.randint(0, 9))])
    score = phone_error_rate(references, hypotheses)
    edits = sum(_levenshtein(r, h) for r, h in zip(references, hypotheses, strict=True))
    assert score.edits == edits and score.reference_phones == sum(map(len, references))
    assert score.as_dict()["PER"] == pytest.approx(edits / score.reference_phones)
    # "s h" against "sh" is two edits of phones, not one of characters
    assert phone_error_rate([["sh"]], [["s", "h"]]).edits == 2


def test_phone_set_round_trip():
    phones = PhoneSet.from_transcripts([["b", "a"], ["a", "sh"]])
    assert phones.units == ["<blank>", "a", "b", "sh", "<unk>"] and phones.vocab_size == 5
    assert phones.encode(["sh", "zz", "a"]) == [3, 4, 1]
    assert phones.decode([0, 3, 1]) == ["sh", "a"]


def test_parsing_errors_name_file_and_line(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("sun s a n\n\nmoon\n")
    with pytest.raises(DataError, match=rf"{lexicon}:3:.*no value"):
        read_lexicon(lexicon)
    lexicon.write_text("sun s a n\nsun s u n\n")
    with pytest.raises(DataError, match=rf"{lexicon}:2:.*second pronunciation.*line 1"):
        read_lexicon(lexicon)
    phn = tmp_path / "text.phn"
    phn.write_text("u1 s a n\nu1 m u n\n")
    with pytest.raises(DataError, match=rf"{phn}:2:.*duplicate utterance 'u1'"):
        read_phone_table(phn)
    data = tmp_path / "d"
    data.mkdir()
    (data / "text").write_text("u1 sun\nu2 sun star\n")
    (data / "lexicon.txt").write_text("sun s a n\n")
    with pytest.raises(DataError, match=r"text:2:.*'star' is not in the lexicon"):
        data_dir_phones(data)
    (data / "lexicon.txt").unlink()
    with pytest.raises(DataError, match="no phone transcripts"):
        data_dir_phones(data)


def test_fsdd_writes_digit_lexicon_and_phones(tmp_path):
    recordings = tmp_path / "rec"
    recordings.mkdir()
    for name in ("7_jackson_0.wav", "7_jackson_5.wav", "0_theo_9.wav", "0_theo_1.wav"):
        sf.write(recordings / name, np.zeros(800, dtype=np.int16), 8000, subtype="PCM_16")
    prepare_fsdd(recordings, tmp_path / "fsdd")
    train = tmp_path / "fsdd" / "train"
    assert read_phone_table(train / "text.phn") == {
        "jackson-7-05": list(DIGIT_PHONES["seven"]),
        "theo-0-09": list(DIGIT_PHONES["zero"]),
    }
    lexicon = read_lexicon(train / "lexicon.txt")
    assert lexicon == {word: list(phones) for word, phones in DIGIT_PHONES.items()}
    # the lexicon path and the text.phn path give the same phones
    assert data_dir_phones(train, lexicon)[0] == read_phone_table(train / "text.phn")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return tiny_corpus(tmp_path_factory.mktemp("pr") / "corpus", speakers=2, utts_per_speaker=4)


def test_train_and_evaluate_from_the_lexicon(synth, tmp_path):
    """The synthetic corpus' lexicon.txt + text give the phones; a held-out dev part finds them too."""
    config = DownstreamConfig(max_steps=3, device="cpu", batch_seconds=8.0, heldout_min=2, heldout_fraction=0.25)
    task = PRTask(hidden=8, layers=1)
    result = train_downstream(task, "fbank", synth, tmp_path / "run", config)
    assert result.step >= 1
    state = json.loads((tmp_path / "run" / "task_state.json").read_text())
    expected = sorted({p for word in LEXICON for p in word.phones} & set(state["phones"]))
    assert state["phones"] == expected and state["head_stride"] == 2  # 100 frames/s fbank: pairs of frames
    metrics = evaluate_downstream(tmp_path / "run", synth, tmp_path / "eval", device="cpu")
    hyp = read_phone_table_allow_empty(tmp_path / "eval" / "hyp.phn")
    assert set(hyp) == set(DataDir.load(synth).utterance_ids)
    refs = data_dir_phones(synth)[0]
    edits = sum(_levenshtein(refs[u], hyp[u]) for u in refs)
    assert metrics["phone_edits"] == edits and metrics["PER"] == pytest.approx(edits / sum(map(len, refs.values())))


def read_phone_table_allow_empty(path: Path) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in path.read_text().splitlines() if line.strip()}


def test_cli_with_text_phn_and_bad_lexicon(synth, tmp_path, capsys):
    data = DataDir.load(synth).save(tmp_path / "data")
    phones = data_dir_phones(synth)[0]
    (data / "text.phn").write_text("".join(f"{u} {' '.join(p)}\n" for u, p in sorted(phones.items())))
    assert not (data / "lexicon.txt").exists()  # phones from text.phn only
    run, out = tmp_path / "run", tmp_path / "out"
    args = ["pr", "train", str(data), "-o", str(run), "-u", "fbank", "--hidden", "8", "--layers", "1"]
    assert main([*args, "--max-steps", "2", "--batch-seconds", "8", "--device", "cpu", "--no-early-stopping"]) == 0
    assert main(["pr", "evaluate", str(run), str(data), "-o", str(out), "--device", "cpu"]) == 0
    assert "PER" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert report["metrics"]["reference_phones"] == sum(map(len, phones.values()))
    bad = tmp_path / "bad_lexicon.txt"
    bad.write_text("sun s a n\nmoon\n")
    args = ["pr", "train", str(synth), "-o", str(tmp_path / "r2"), "-u", "fbank", "--lexicon", str(bad)]
    assert main([*args, "--max-steps", "1", "--device", "cpu"]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
