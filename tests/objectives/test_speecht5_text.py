"""Text corpus checks, tokenizers and BART text infilling statistics (Lewis et al. 2020: 30%, Poisson(3.5))."""

from __future__ import annotations

import math

import pytest
import torch

from audiossl.data.text import (
    BOS,
    EOS,
    MASK,
    SPECIALS,
    CharTokenizer,
    InfillConfig,
    TextBatches,
    build_tokenizer,
    denoising_batch,
    encode_corpus,
    infill,
    read_text_corpus,
    tokenizer_from_state,
)
from audiossl.errors import DataError


def test_infill_statistics_match_the_specification() -> None:
    generator = torch.Generator().manual_seed(0)
    config = InfillConfig(ratio=0.3, poisson_lambda=3.5)
    masked_tokens = total_tokens = spans = 0
    for _ in range(300):
        tokens = torch.randint(len(SPECIALS), 60, (200,), generator=generator)
        noisy, masked = infill(tokens, config, 60, generator)
        # Measured from the output: every span (even an empty one) left one mask token behind.
        spans += int((noisy == MASK).sum())
        masked_tokens += int(masked.sum())
        total_tokens += tokens.numel()
        # The kept tokens are the original minus the masked ones, in order.
        assert torch.equal(noisy[noisy != MASK], tokens[~masked])
    assert abs(masked_tokens / total_tokens - 0.3) < 0.005
    # Mean span length: Poisson mean 3.5 (the last span of each sentence is cut at the budget: a small bias down).
    assert abs(masked_tokens / spans - 3.5) < 0.15


def test_infill_is_reproducible_and_random_spans() -> None:
    tokens = torch.arange(5, 45)
    a = infill(tokens, InfillConfig(), 50, torch.Generator().manual_seed(3))
    b = infill(tokens, InfillConfig(), 50, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    noisy, masked = infill(tokens, InfillConfig(random_ratio=1.0), 50, torch.Generator().manual_seed(3))
    assert MASK not in noisy.tolist() and int(masked.sum()) == math.ceil(0.3 * 40)


def test_denoising_batch_layout() -> None:
    sentences = [torch.tensor([5, 6, 7, 8]), torch.tensor([9, 10])]
    batch = denoising_batch(sentences, InfillConfig(), 20, torch.Generator().manual_seed(0))
    assert batch.decoder_input[0].tolist() == [BOS, 5, 6, 7, 8]
    assert batch.target[0].tolist() == [5, 6, 7, 8, EOS]
    assert batch.target[1, :3].tolist() == [9, 10, EOS] and batch.target_lengths.tolist() == [5, 3]


def test_corpus_errors_name_the_line(tmp_path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentence"):
        read_text_corpus(empty)
    control = tmp_path / "control.txt"
    control.write_text("fine\nbad \x07 bell\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"control.txt:2: .*U\+0007"):
        read_text_corpus(control)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"ok\nok\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin.txt:3: not UTF-8"):
        read_text_corpus(latin)
    good = tmp_path / "good.txt"
    good.write_text("one two\n\nthree four five six seven\n", encoding="utf-8")
    sentences = read_text_corpus(good)
    tokenizer = CharTokenizer.from_sentences(sentences)
    with pytest.raises(DataError, match=r"good.txt:3: .*limit of 10"):
        encode_corpus(sentences, tokenizer, 10, good)
    with pytest.raises(DataError, match=r"x.txt:7: characters the tokenizer cannot represent: \['Z'\]"):
        tokenizer.encode("one Z", ("x.txt", 7))


def test_sentencepiece_round_trip_and_state(tmp_path) -> None:
    corpus = tmp_path / "c.txt"
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    corpus.write_text("\n".join(" ".join(words[(i + j) % 6] for j in range(4)) for i in range(60)), encoding="utf-8")
    sentences = read_text_corpus(corpus)
    tokenizer = build_tokenizer(sentences, "sentencepiece", vocab_size=40)
    again = tokenizer_from_state(tokenizer.state())
    ids = again.encode("gamma delta alpha")
    assert again.decode(ids) == "gamma delta alpha" and min(ids) >= len(SPECIALS)
    with pytest.raises(DataError, match="cannot represent"):
        again.encode("qqq")


def test_text_batches_cover_an_epoch_disjointly_across_ranks() -> None:
    ranks = [TextBatches(10, 2, seed=4, rank=r, world_size=2) for r in range(2)]
    seen = [i for k in range(2) for r in ranks for i in r.indices(k)]  # 2 global batches x 2 ranks x 2 = 8
    seen += [i for r in ranks for i in r.indices(2)][:2]
    assert sorted(seen) == list(range(10))
    assert TextBatches(10, 2, seed=4, rank=1, world_size=2).indices(7) == ranks[1].indices(7)
