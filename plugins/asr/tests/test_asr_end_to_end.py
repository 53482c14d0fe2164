"""End to end on the synthetic corpus: train a CTC head on a tiny pretrained upstream, decode, score.

Through the plugin's own commands (``audiossl asr train | decode | score``) and library calls:
files written, WER in range, beam search with max-merging equal to greedy on the trained
head's outputs, and the errors users hit first (empty transcript, missing text).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from audiossl.data.kaldi import read_table
from audiossl.downstream.trainer import DownstreamConfig, load_downstream, train_downstream
from audiossl.errors import DataError
from audiossl.testing.downstream import tiny_corpus, tiny_pretrained
from audiossl_asr.cli import app
from audiossl_asr.decoding import BeamSearchDecoder, BeamSearchOptions, greedy_decode
from audiossl_asr.task import ASRTask, tokenizer_of
from audiossl_asr.tokenizer import Tokenizer

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return tiny_corpus(tmp_path_factory.mktemp("asr-corpus"), speakers=2, utts_per_speaker=3)


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory) -> Path:
    return tiny_pretrained(tmp_path_factory.mktemp("asr-pretrained"), corpus, steps=1)


@pytest.fixture(scope="module")
def trained(corpus, pretrained, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("asr-run") / "run"
    result = runner.invoke(
        app,
        ["train", str(corpus), "--out", str(run_dir), "--upstream", str(pretrained), "--max-steps", "3",
         "--device", "cpu", "--batch-seconds", "8", "--lr", "0.01", "--set", "log_every=1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    return run_dir


def test_train_writes_a_run_with_its_tokenizer(trained, corpus):
    assert (trained / "tokenizer.json").is_file() and (trained / "task_state.json").is_file()
    assert list(trained.glob("ckpt-*.pt"))
    tokenizer = Tokenizer.load(trained)
    words = {w for text in read_table(corpus / "text").values() for w in text.split()}
    assert set("".join(words)) <= set(tokenizer.units)
    records = [json.loads(line) for line in (trained / "train.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("kind") == "train"]
    assert len(losses) == 3 and all(0 < loss < 1e4 for loss in losses)


def _has_flashlight() -> bool:
    import importlib.util

    return importlib.util.find_spec("flashlight") is not None


@pytest.mark.parametrize(
    "decoder",
    [
        "--greedy",
        pytest.param(
            "--beam",
            marks=pytest.mark.skipif(not _has_flashlight(), reason="beam search needs flashlight-text (optional)"),
        ),
    ],
)
def test_decode_then_score(decoder, trained, corpus, tmp_path):
    utts = set(read_table(corpus / "text"))
    out = tmp_path / decoder.strip("-")
    result = runner.invoke(app, ["decode", str(trained), str(corpus), "--out", str(out), decoder, "--device", "cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    hyps = read_table(out / "hyp.txt", allow_empty_value=True)
    assert set(hyps) == utts
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["wer"] <= 50.0 and 0.0 <= metrics["cer"] <= 50.0
    assert metrics["utterances"] == len(utts)
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
    scored = runner.invoke(app, ["score", str(corpus), str(out / "hyp.txt"), "--out", str(out / "score.json")])
    assert scored.exit_code == 0, scored.output
    assert "WER" in scored.output
    assert json.loads((out / "score.json").read_text())["metrics"] == metrics


@pytest.mark.skipif(not _has_flashlight(), reason="beam search needs flashlight-text (optional)")
def test_beam_with_max_merging_equals_greedy_on_trained_outputs(trained, corpus):
    """Without an LM the best path survives any beam, so max-merging beam search must return greedy's answer."""
    from audiossl.downstream.task import eval_batches

    model = load_downstream(trained, task=ASRTask(), device="cpu")
    tokenizer = tokenizer_of(model.state)
    decoder = BeamSearchDecoder(tokenizer, BeamSearchOptions(beam_size=4))
    with torch.no_grad():
        for _, hidden, lengths in eval_batches(model.upstream, corpus, ()):
            log_probs, frame_lengths = model.head(hidden, lengths)
            assert decoder.unit_ids(log_probs, frame_lengths) == greedy_decode(log_probs, frame_lengths)


def test_sentencepiece_run_and_evaluate(corpus, tmp_path):
    from audiossl.downstream.trainer import evaluate_downstream

    task = ASRTask(tokenizer="bpe", vocab_size=24, head="bilstm", hidden=16, layers=1)
    config = DownstreamConfig(max_steps=1, device="cpu", batch_seconds=8.0, log_every=1)
    train_downstream(task, "fbank:16000:32", corpus, tmp_path / "run", config)
    assert (tmp_path / "run" / "tokenizer.model").is_file()
    metrics = evaluate_downstream(
        tmp_path / "run", corpus, tmp_path / "eval", task=ASRTask(**task.options()), device="cpu"
    )
    assert 0.0 <= metrics["wer"] <= 50.0
    assert (tmp_path / "eval" / "hyp.txt").is_file() and (tmp_path / "eval" / "metrics.json").is_file()


def test_empty_transcript_and_missing_text_are_named(corpus, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    lines = (broken / "text").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].split()[0]
    (broken / "text").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = DownstreamConfig(max_steps=1, device="cpu")
    with pytest.raises(DataError, match="empty transcript") as error:
        train_downstream(ASRTask(), "fbank:16000:32", broken, tmp_path / "run", config)
    assert (error.value.path, error.value.line) == (str(broken / "text"), 2)
    (broken / "text").unlink()
    with pytest.raises(DataError) as error:
        train_downstream(ASRTask(), "fbank:16000:32", broken, tmp_path / "run2", config)
    assert "text" in str(error.value)


def test_check_data_warns_about_unseen_characters(corpus, tmp_path, caplog):
    from audiossl_asr.task import _state
    from audiossl_asr.tokenizer import read_transcripts, train_tokenizer

    state = _state(train_tokenizer(read_transcripts(corpus / "text"), "char"))
    ASRTask().check_data(corpus, state)
    assert "never seen" not in caplog.text
    other = tmp_path / "other"
    shutil.copytree(corpus, other)
    lines = (other / "text").read_text(encoding="utf-8").splitlines()
    lines[0] += " zebra"
    (other / "text").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ASRTask().check_data(other, state)
    assert "1 transcript(s) have characters never seen" in caplog.text and lines[0].split()[0] in caplog.text


def test_decode_without_transcripts_writes_hypotheses_only(trained, corpus, tmp_path):
    from audiossl_asr.recognize import decode_run

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(corpus, unlabelled)
    (unlabelled / "text").unlink()
    result = decode_run(trained, unlabelled, tmp_path / "out", device="cpu")
    assert result.score is None and result.metrics is None
    assert set(read_table(result.hypotheses, allow_empty_value=True)) == set(read_table(corpus / "utt2spk"))
    assert not (tmp_path / "out" / "metrics.json").exists()
