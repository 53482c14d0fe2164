"""Speech translation end to end on the synthetic corpus (train, translate, BLEU) and its bad-input errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sacrebleu
from typer.testing import CliRunner

from audiossl.data.kaldi import read_table
from audiossl.downstream.trainer import DownstreamConfig, train_downstream
from audiossl.errors import DataError
from audiossl_speecht5.cli_st import app
from audiossl_speecht5.st import STTask

runner = CliRunner()
SMALL = ["--decoder-dim", "32", "--decoder-layers", "1", "--decoder-heads", "2", "--decoder-ffn", "64"]


@pytest.fixture(scope="module")
def trained(corpus, pretrained, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("st") / "run"
    result = runner.invoke(
        app,
        ["train", str(corpus), "--out", str(run), "--upstream", str(pretrained), *SMALL, "--max-steps", "3",
         "--device", "cpu", "--batch-seconds", "8", "--set", "log_every=1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    return run


def test_train_logs_translation_and_source_ctc_losses(trained) -> None:
    records = [json.loads(line) for line in (trained / "train.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    assert len(train) == 3 and all(set(r["parts"]) == {"attention", "ctc"} for r in train)
    state = json.loads((trained / "task_state.json").read_text())
    assert state["lang"] == "qaa" and state["source"]["kind"] == "char" and state["target"]["kind"] == "char"


def test_translate_and_score_with_sacrebleu(trained, corpus, tmp_path) -> None:
    out = tmp_path / "tr"
    result = runner.invoke(app, ["translate", str(trained), str(corpus), "--out", str(out), "--beam-size", "2",
                                 "--max-length", "6", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    hyps = read_table(out / "hyp.qaa.txt", allow_empty_value=True)
    refs = read_table(corpus / "text.qaa")
    assert set(hyps) == set(refs)
    ids = sorted(refs)
    expected = sacrebleu.corpus_bleu([hyps[u] for u in ids], [[refs[u] for u in ids]]).score
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["bleu"] == pytest.approx(expected)
    scored = runner.invoke(app, ["score", str(corpus), str(out / "hyp.qaa.txt"), "--out", str(out / "s.json")])
    assert scored.exit_code == 0 and json.loads((out / "s.json").read_text())["bleu"] == pytest.approx(expected)


def test_translation_ids_not_in_wav_scp_are_named(corpus, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    table = broken / "text.qaa"
    table.write_text(table.read_text() + "stranger-0001 sol lunu\n")
    line = len(table.read_text().splitlines())
    config = DownstreamConfig(max_steps=1, device="cpu")
    with pytest.raises(DataError, match="'stranger-0001' is not in") as caught:
        train_downstream(STTask(decoder_dim=32, decoder_heads=2), "fbank:16000:32", broken, tmp_path / "run", config)
    assert (caught.value.path, caught.value.line) == (str(table), line)


def test_translations_longer_than_the_decoder_are_named(corpus, tmp_path) -> None:
    refs = read_table(corpus / "text.qaa")
    limit = 10
    long = sorted(u for u, words in refs.items() if len(words.replace(" ", "")) + len(words.split()) + 1 > limit)
    assert long
    config = DownstreamConfig(max_steps=1, device="cpu")
    task = STTask(decoder_dim=32, decoder_heads=2, max_length=limit)
    with pytest.raises(DataError, match=f"maximum of {limit} units") as caught:
        train_downstream(task, "fbank:16000:32", corpus, tmp_path / "run", config)
    assert repr(long[0]) in str(caught.value) and caught.value.path == str(corpus / "text.qaa")
