"""Beam search (with joint CTC prefix scoring) against brute force over every sequence of a tiny vocabulary."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from audiossl.nn.beam_search import BeamSearchConfig, beam_search, beam_search_batch
from audiossl.nn.decoder import DecoderConfig, TextDecoder

BLANK, SOS_EOS, VOCAB, MAX_TOKENS = 0, 3, 4, 3


def build() -> tuple[TextDecoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    decoder = TextDecoder(VOCAB, DecoderConfig(dim=16, num_layers=2, num_heads=2, ffn_dim=32, dropout=0.0)).eval()
    memory = torch.randn(6, 16)
    ctc_log_probs = F.log_softmax(torch.randn(6, VOCAB) * 2, dim=-1)
    return decoder, memory, ctc_log_probs


def brute_force(decoder, memory, ctc_log_probs, ctc_weight: float, penalty: float) -> tuple[list[int], float]:
    """Best normalised joint score over every sequence of tokens {1, 2} up to MAX_TOKENS, scored independently:
    attention by one teacher-forced pass, CTC by torch's ctc_loss."""
    best = (None, -math.inf)
    for length in range(MAX_TOKENS + 1):
        for tokens in itertools.product((1, 2), repeat=length):
            inputs = torch.tensor([[SOS_EOS, *tokens]])
            with torch.no_grad():
                logits = decoder(inputs, torch.tensor([length + 1]), memory.unsqueeze(0), torch.tensor([6]))
            log_probs = F.log_softmax(logits[0], dim=-1)
            targets = [*tokens, SOS_EOS]
            attention = float(sum(log_probs[i, token] for i, token in enumerate(targets)))
            ctc = 0.0
            if ctc_weight > 0:
                ctc = -float(
                    F.ctc_loss(
                        ctc_log_probs.unsqueeze(1),
                        torch.tensor([list(tokens) or [1]])[:, :length],
                        torch.tensor([6]),
                        torch.tensor([length]),
                        blank=BLANK,
                        reduction="sum",
                        zero_infinity=False,
                    )
                )
            score = ((1 - ctc_weight) * attention + ctc_weight * ctc) / (length + 1) ** penalty
            if score > best[1]:
                best = (list(tokens), score)
    return best


@pytest.mark.parametrize("ctc_weight", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("penalty", [0.0, 1.0])
def test_wide_beam_finds_the_brute_force_optimum(ctc_weight: float, penalty: float) -> None:
    decoder, memory, ctc_log_probs = build()
    expected_tokens, expected_score = brute_force(decoder, memory, ctc_log_probs, ctc_weight, penalty)
    config = BeamSearchConfig(
        beam_size=16, ctc_weight=ctc_weight, length_penalty=penalty, max_length=MAX_TOKENS, pre_beam=VOCAB
    )
    with torch.no_grad():
        (best,) = beam_search(
            decoder, memory, sos=SOS_EOS, eos=SOS_EOS, config=config, ctc_log_probs=ctc_log_probs, blank=BLANK
        )
    assert best.tokens == expected_tokens
    assert math.isclose(best.score, expected_score, rel_tol=1e-4, abs_tol=1e-5)


def test_narrow_beam_never_beats_the_optimum_and_batch_equals_items() -> None:
    decoder, memory, ctc_log_probs = build()
    _, optimum = brute_force(decoder, memory, ctc_log_probs, 0.3, 1.0)
    config = BeamSearchConfig(beam_size=2, ctc_weight=0.3, max_length=MAX_TOKENS, nbest=2)
    with torch.no_grad():
        alone = beam_search(
            decoder, memory, sos=SOS_EOS, eos=SOS_EOS, config=config, ctc_log_probs=ctc_log_probs, blank=BLANK
        )
        padded_memory = torch.cat([memory, torch.full((3, 16), 50.0)]).unsqueeze(0).repeat(2, 1, 1)
        padded_ctc = torch.cat([ctc_log_probs, torch.zeros(3, VOCAB)]).unsqueeze(0).repeat(2, 1, 1)
        batch = beam_search_batch(
            decoder,
            padded_memory,
            torch.tensor([6, 6]),
            sos=SOS_EOS,
            eos=SOS_EOS,
            config=config,
            ctc_log_probs=padded_ctc,
            blank=BLANK,
        )
    assert alone[0].score <= optimum + 1e-6
    assert alone[0].score >= alone[-1].score
    assert [h.tokens for h in batch[0]] == [h.tokens for h in alone] == [h.tokens for h in batch[1]]
    assert BLANK not in alone[0].tokens
