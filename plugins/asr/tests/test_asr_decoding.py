"""Greedy decoding against a slow loop; beam search against brute force, with a lexicon and an n-gram LM."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from audiossl.errors import ConfigError, DataError
from audiossl_asr.decoding import BeamSearchDecoder, BeamSearchOptions, greedy_decode
from audiossl_asr.tokenizer import BLANK, UNK, Tokenizer, train_tokenizer

pytest.importorskip("flashlight.lib.text.decoder", reason="beam search needs flashlight-text (audiossl-asr[decoder])")

CHARS = Tokenizer("char", units=[BLANK, UNK, "|", "a", "b"])
EXHAUSTIVE = BeamSearchOptions(beam_size=5000, beam_threshold=1e9, log_add=True)


def slow_greedy(log_probs: torch.Tensor, length: int) -> list[int]:
    out, previous = [], None
    for t in range(length):
        best = max(range(log_probs.shape[-1]), key=lambda v: log_probs[t, v].item())
        if best != previous and best != 0:
            out.append(best)
        previous = best
    return out


def test_greedy_matches_a_slow_loop_and_ignores_padding():
    generator = torch.Generator().manual_seed(0)
    log_probs = torch.randn(4, 12, 5, generator=generator).log_softmax(-1)  # (B, S, V)
    lengths = torch.tensor([12, 7, 1, 0])
    expected = [slow_greedy(log_probs[b], int(lengths[b])) for b in range(4)]
    assert greedy_decode(log_probs, lengths) == expected
    assert expected[3] == []
    padded = log_probs.clone()
    padded[1, 7:] = torch.randn(5, 5, generator=generator)
    assert greedy_decode(padded, lengths) == expected


def _labelling_log_prob(log_probs: torch.Tensor, labels: list[int]) -> float:
    """Exact log P(labels | frames) by torch's CTC forward algorithm (log_probs (T, V))."""
    frames = log_probs.shape[0]
    if not labels:
        return log_probs[:, 0].sum().item()
    targets, target_lengths = torch.tensor([labels]), torch.tensor([len(labels)])
    loss = F.ctc_loss(log_probs[:, None], targets, torch.tensor([frames]), target_lengths, reduction="none")
    return -loss.item()


@pytest.mark.parametrize(
    "tokenizer", [CHARS, train_tokenizer({"u": "ab ba aab"}, "bpe", 5)], ids=["char", "sentencepiece"]
)
def test_beam_search_finds_the_most_probable_labelling(tokenizer):
    """With no pruning and log-add merging, the beam's answer is the argmax over every labelling."""
    decoder = BeamSearchDecoder(tokenizer, EXHAUSTIVE)
    generator = torch.Generator().manual_seed(1)
    frames, vocab = 5, tokenizer.vocab_size
    candidates = [list(s) for n in range(frames + 1) for s in itertools.product(range(1, vocab), repeat=n)]
    for _ in range(12):
        log_probs = (2 * torch.randn(frames, vocab, generator=generator)).log_softmax(-1)  # (T, V)
        scores = [_labelling_log_prob(log_probs, c) for c in candidates]
        best = candidates[max(range(len(candidates)), key=scores.__getitem__)]
        assert decoder.unit_ids(log_probs[None], torch.tensor([frames])) == [best]


def test_beam_search_with_max_merging_finds_the_best_path():
    decoder = BeamSearchDecoder(CHARS, BeamSearchOptions(beam_size=5000, beam_threshold=1e9))
    generator = torch.Generator().manual_seed(2)
    frames = 5
    for _ in range(6):
        log_probs = (2 * torch.randn(frames, 5, generator=generator)).log_softmax(-1)
        path = max(
            itertools.product(range(5), repeat=frames),
            key=lambda p: sum(log_probs[t, p[t]].item() for t in range(frames)),
        )
        expected = [u for u, _ in itertools.groupby(path) if u != 0]
        assert decoder.unit_ids(log_probs[None], torch.tensor([frames])) == [expected]


def test_beam_search_respects_lengths_and_returns_text():
    decoder = BeamSearchDecoder(CHARS, EXHAUSTIVE)
    log_probs = torch.full((2, 6, 5), -9.0)
    for t, unit in enumerate([3, 0, 4, 2, 4, 4]):  # "ab|bb" ... second utterance keeps 3 frames
        log_probs[:, t, unit] = 0.0
    log_probs = log_probs.log_softmax(-1)
    assert decoder(log_probs, torch.tensor([6, 3])) == ["ab b", "ab"]
    assert decoder.unit_ids(log_probs, torch.tensor([6, 3])) == [[3, 4, 2, 4], [3, 4]]


def _emissions(tokenizer: Tokenizer, frames: list[dict[str, float]]) -> torch.Tensor:
    log_probs = torch.full((1, len(frames), tokenizer.vocab_size), 1e-4)
    for t, probabilities in enumerate(frames):
        for unit, p in probabilities.items():
            log_probs[0, t, tokenizer.units.index(unit)] = p
    return (log_probs / log_probs.sum(-1, keepdim=True)).log()  # (1, T, V)


# Frames that greedy reads as "aa", though "aa" is not a word of the lexicon below.
AMBIGUOUS = [{"a": 0.6, "b": 0.4}, {BLANK: 0.9}, {"a": 0.55, "b": 0.45}, {"|": 0.9}]


def _arpa(path, ab: float, ba: float):
    """A bigram ARPA model (KenLM needs order 2) whose unigrams set the preference between 'ab' and 'ba'."""
    path.write_text(
        "\\data\\\nngram 1=5\nngram 2=1\n\n\\1-grams:\n-99\t<s>\t0\n-1\t</s>\n-5\t<unk>\n"
        f"{ab}\tab\t0\n{ba}\tba\t0\n\n\\2-grams:\n-1\t<s>\tab\n\n\\end\\\n",
        encoding="utf-8",
    )
    return path


def test_lexicon_and_language_model(tmp_path):
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("ab\nba extra columns are ignored\n\n", encoding="utf-8")
    log_probs, lengths = _emissions(CHARS, AMBIGUOUS), torch.tensor([4])
    assert CHARS.decode(greedy_decode(log_probs, lengths)[0]) == "aa"
    assert BeamSearchDecoder(CHARS)(log_probs, lengths) == ["aa"]
    assert BeamSearchDecoder(CHARS, BeamSearchOptions(lexicon=str(lexicon)))(log_probs, lengths) == ["ab"]
    prefers_ba = _arpa(tmp_path / "ba.arpa", ab=-3.0, ba=-0.05)
    options = BeamSearchOptions(lexicon=str(lexicon), lm=str(prefers_ba), lm_weight=1.0)
    assert BeamSearchDecoder(CHARS, options)(log_probs, lengths) == ["ba"]
    prefers_ab = _arpa(tmp_path / "ab.arpa", ab=-0.05, ba=-3.0)
    options = BeamSearchOptions(lexicon=str(lexicon), lm=str(prefers_ab), lm_weight=1.0)
    assert BeamSearchDecoder(CHARS, options)(log_probs, lengths) == ["ab"]


def test_lexicon_with_sentencepiece_units(tmp_path):
    tokenizer = train_tokenizer({"u": "ab ba aab"}, "bpe", 5)  # units: blank, unk, a, b, ▁
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("ab\nba\n", encoding="utf-8")
    frames = [{"▁": 0.9}, {"a": 0.6, "b": 0.4}, {BLANK: 0.9}, {"a": 0.55, "b": 0.45}]
    log_probs, lengths = _emissions(tokenizer, frames), torch.tensor([4])
    assert BeamSearchDecoder(tokenizer)(log_probs, lengths) == ["aa"]
    assert BeamSearchDecoder(tokenizer, BeamSearchOptions(lexicon=str(lexicon)))(log_probs, lengths) == ["ab"]


def test_lexicon_errors(tmp_path):
    with pytest.raises(ConfigError, match="lexicon file not found"):
        BeamSearchDecoder(CHARS, BeamSearchOptions(lexicon=str(tmp_path / "missing.txt")))
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("ab\nabc\n", encoding="utf-8")
    with pytest.raises(DataError, match="abc") as error:
        BeamSearchDecoder(CHARS, BeamSearchOptions(lexicon=str(lexicon)))
    assert error.value.line == 2
    with pytest.raises(ConfigError, match="language model"):
        BeamSearchDecoder(CHARS, BeamSearchOptions(lm=str(tmp_path / "missing.arpa")))
