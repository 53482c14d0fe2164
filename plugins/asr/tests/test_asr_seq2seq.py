"""Seq2seq ASR (attention decoder + joint CTC): the hybrid loss and the joint search scores against slow
loops written here, padding invariance, and the task end to end on the synthetic corpus (train, decode, errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from audiossl.cli.main import main
from audiossl.data.kaldi import read_table
from audiossl.nn.beam_search import BeamSearchConfig, beam_search
from audiossl.testing.downstream import tiny_corpus, tiny_pretrained
from audiossl_asr.cli import app
from audiossl_asr.seq2seq import Seq2SeqConfig, Seq2SeqHead, seq2seq_decode, seq2seq_loss

runner = CliRunner()
V, D = 7, 12  # units 0 (blank) .. 5, eos 6; frame width


def _head(ctc_weight: float = 0.4, smoothing: float = 0.1, seed: int = 0) -> Seq2SeqHead:
    torch.manual_seed(seed)
    config = Seq2SeqConfig(
        decoder_dim=16,
        decoder_layers=2,
        decoder_heads=2,
        decoder_ffn=32,
        dropout=0.0,
        max_length=12,
        ctc_weight=ctc_weight,
        label_smoothing=smoothing,
    )
    return Seq2SeqHead(D, V, config).eval()


def _slow_ctc_log_prob(log_probs: torch.Tensor, target: list[int], blank: int = 0) -> float:
    """log p(target | x) by the textbook CTC forward recursion over the blank-extended target, in loops."""
    ext = [blank]
    for unit in target:
        ext += [unit, blank]
    frames = log_probs.shape[0]
    alpha = [[-math.inf] * len(ext) for _ in range(frames)]
    log_probs = log_probs.detach()
    alpha[0][0] = float(log_probs[0, ext[0]])
    if len(ext) > 1:
        alpha[0][1] = float(log_probs[0, ext[1]])
    for t in range(1, frames):
        for s in range(len(ext)):
            terms = [alpha[t - 1][s]]
            if s >= 1:
                terms.append(alpha[t - 1][s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[t - 1][s - 2])
            top = max(terms)
            total = -math.inf if top == -math.inf else top + math.log(sum(math.exp(v - top) for v in terms))
            alpha[t][s] = total + float(log_probs[t, ext[s]])
    last = [alpha[-1][-1]] + ([alpha[-1][-2]] if len(ext) > 1 else [])
    top = max(last)
    return top + math.log(sum(math.exp(v - top) for v in last))


def _slow_attention_log_probs(head: Seq2SeqHead, memory: torch.Tensor, prefix: list[int]) -> torch.Tensor:
    """Next-unit log-probabilities after ``[eos] + prefix`` from a fresh teacher-forced pass of one item (no cache)."""
    tokens = torch.tensor([[head.eos, *prefix]])
    logits = head.decoder(tokens, torch.tensor([len(prefix) + 1]), memory[None], torch.tensor([len(memory)]))
    return logits[0, -1].float().log_softmax(-1)


@torch.no_grad()
def test_hybrid_loss_equals_slow_loops() -> None:
    head = _head(ctc_weight=0.4, smoothing=0.1)
    lengths = torch.tensor([9, 6])
    hidden = torch.randn(2, 9, D)
    targets = [[1, 2, 2, 3], [4, 5]]
    out = seq2seq_loss(head, hidden, lengths, targets, ["a", "b"])
    ctc_terms, ce_terms = [], []
    for item, target in enumerate(targets):
        memory = hidden[item, : lengths[item]]
        log_probs = head.ctc(memory).log_softmax(-1)
        ctc_terms.append(-_slow_ctc_log_prob(log_probs, target) / len(target))  # torch 'mean': per target unit
        for position, unit in enumerate([*target, head.eos]):
            step = _slow_attention_log_probs(head, memory, target[:position])
            ce_terms.append(-(0.9 * step[unit] + 0.1 * step.mean()))  # smoothing: uniform over all V outputs
    ctc = sum(ctc_terms) / len(ctc_terms)
    attention = sum(ce_terms) / len(ce_terms)
    assert float(out.parts["ctc"]) == pytest.approx(float(ctc), rel=1e-4)
    assert float(out.parts["attention"]) == pytest.approx(float(attention), rel=1e-4)
    assert float(out.total) == pytest.approx(0.4 * float(ctc) + 0.6 * float(attention), rel=1e-4)


@pytest.mark.parametrize(("ctc_weight", "penalty"), [(0.0, 1.0), (0.5, 1.0), (0.3, 0.0)])
def test_joint_search_scores_equal_slow_loops(ctc_weight: float, penalty: float) -> None:
    head = _head(ctc_weight=0.5, seed=3)
    memory = torch.randn(8, D)
    config = BeamSearchConfig(beam_size=4, ctc_weight=ctc_weight, length_penalty=penalty, max_length=6, nbest=3)
    log_probs = head.ctc_log_probs(memory[None])[0]
    hypotheses = beam_search(
        head.decoder, memory, sos=head.eos, eos=head.eos, config=config, ctc_log_probs=log_probs, blank=0
    )
    assert hypotheses
    for hypothesis in hypotheses:
        units = hypothesis.tokens
        attention = sum(
            float(_slow_attention_log_probs(head, memory, units[:i])[unit]) for i, unit in enumerate([*units, head.eos])
        )
        ctc = _slow_ctc_log_prob(log_probs, units) if ctc_weight > 0 else 0.0
        joint = (1 - ctc_weight) * attention + ctc_weight * ctc
        assert hypothesis.attention_score == pytest.approx(attention, abs=1e-4)
        assert hypothesis.ctc_score == pytest.approx(ctc, abs=1e-4)
        assert hypothesis.score == pytest.approx(joint / (len(units) + 1) ** penalty, abs=1e-4)
        assert 0 not in units and head.eos not in units


def test_padded_batch_decodes_like_each_item_alone() -> None:
    head = _head(ctc_weight=0.5, seed=5)
    hidden, lengths = torch.randn(3, 10, D), torch.tensor([10, 4, 7])
    search = BeamSearchConfig(beam_size=3, ctc_weight=0.5, max_length=6)
    together = seq2seq_decode(head, hidden, lengths, search)
    alone = [
        seq2seq_decode(head, hidden[i : i + 1, :n], lengths[i : i + 1], search)[0] for i, n in enumerate([10, 4, 7])
    ]
    assert together == alone
    batch = seq2seq_loss(head, hidden, lengths, [[1], [2, 3], [4]], ["a", "b", "c"])
    single = seq2seq_loss(head, hidden[1:2, :4], lengths[1:2], [[2, 3]], ["b"])
    assert math.isfinite(float(batch.total)) and math.isfinite(float(single.total))


def test_joint_decoding_refuses_a_head_without_ctc() -> None:
    from audiossl.errors import ConfigError

    head = _head(ctc_weight=0.0)
    with pytest.raises(ConfigError, match="trained with ctc_weight 0"):
        seq2seq_decode(head, torch.randn(1, 5, D), torch.tensor([5]), BeamSearchConfig(ctc_weight=0.3))


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return tiny_corpus(tmp_path_factory.mktemp("s2s-corpus"), speakers=2, utts_per_speaker=3)


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory) -> Path:
    return tiny_pretrained(tmp_path_factory.mktemp("s2s-pretrained"), corpus, steps=1)


def test_seq2seq_train_decode_score(corpus, pretrained, tmp_path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", str(corpus), "--out", str(run), "--upstream", str(pretrained), "--model", "seq2seq",
         "--decoder-dim", "32", "--decoder-layers", "1", "--decoder-ffn", "64", "--max-steps", "3",
         "--device", "cpu", "--batch-seconds", "8", "--lr", "0.003", "--set", "log_every=1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    info = json.loads((run / "downstream.json").read_text())
    assert info["task_options"]["model"] == "seq2seq" and info["task_options"]["ctc_weight"] == 0.3
    records = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    assert len(train) == 3 and all({"ctc", "attention"} == set(r["parts"]) for r in train)
    out = tmp_path / "dec"
    decoded = runner.invoke(
        app,
        ["decode", str(run), str(corpus), "--out", str(out), "--beam-size", "3", "--ctc-weight", "0.5",
         "--device", "cpu"],
    )  # fmt: skip
    assert decoded.exit_code == 0, decoded.output + repr(decoded.exception)
    assert set(read_table(out / "hyp.txt", allow_empty_value=True)) == set(read_table(corpus / "text"))
    report = json.loads((out / "metrics.json").read_text())
    assert report["decoder"] == "seq2seq beam" and 0.0 <= report["metrics"]["wer"] <= 50.0


def test_transcripts_longer_than_the_decoder_are_named_exit_2(corpus, pretrained, tmp_path, capsys) -> None:
    text = read_table(corpus / "text")
    limit = 12  # characters + word boundaries + eos
    too_long = sorted(
        utt for utt, words in text.items() if len(words.replace(" ", "")) + len(words.split()) + 1 > limit
    )
    assert too_long, "the tiny corpus has transcripts longer than the limit"
    code = main(
        ["asr", "train", str(corpus), "--out", str(tmp_path / "run"), "--upstream", "fbank:16000:32",
         "--model", "seq2seq", "--max-length", str(limit), "--max-steps", "1", "--device", "cpu"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"longer than the decoder's maximum of {limit} units" in err and "Traceback" not in err
    assert all(repr(utt) in err for utt in too_long[:5])
    assert str(corpus / "text") in err
