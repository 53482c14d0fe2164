"""CTC prefix scores against a slow sum over every frame alignment."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from audiossl.nn.ctc_prefix import CTCPrefixScorer, ctc_prefix_log_prob

BLANK, EOS = 0, 3


def collapse(path: tuple[int, ...]) -> list[int]:
    out, previous = [], None
    for symbol in path:
        if symbol != previous and symbol != BLANK:
            out.append(symbol)
        previous = symbol
    return out


def slow_prefix_probability(log_probs: torch.Tensor, prefix: list[int], exact: bool) -> float:
    """Sum over all V^T alignments (eos never emitted by CTC here) whose collapse starts with / equals prefix."""
    probs = log_probs.double().exp()
    frames = probs.shape[0]
    total = 0.0
    for path in itertools.product(range(3), repeat=frames):  # symbols blank, 1, 2
        labels = collapse(path)
        if (labels == prefix) if exact else (labels[: len(prefix)] == prefix):
            total += float(torch.prod(probs[torch.arange(frames), torch.tensor(path)]))
    return total


def test_prefix_scores_equal_sum_over_alignments() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    logits[:, EOS] = -30.0  # CTC never emits eos
    log_probs = F.log_softmax(logits, dim=-1)
    for prefix in ([], [1], [2], [1, 1], [1, 2], [2, 1, 2], [1, 1, 1], [2, 2, 1]):
        expected = slow_prefix_probability(log_probs, prefix, exact=False)
        got = ctc_prefix_log_prob(log_probs, prefix, BLANK, EOS)
        assert math.isclose(math.exp(got), expected, rel_tol=1e-4, abs_tol=1e-9), prefix
        # eos: the probability of exactly this output
        exact = slow_prefix_probability(log_probs, prefix, exact=True)
        got_exact = ctc_prefix_log_prob(log_probs, [*prefix, EOS], BLANK, EOS)
        assert math.isclose(math.exp(got_exact), exact, rel_tol=1e-4, abs_tol=1e-9), prefix


def test_full_sequence_score_matches_torch_ctc_loss() -> None:
    torch.manual_seed(1)
    log_probs = F.log_softmax(torch.randn(12, 6), dim=-1)
    target = [2, 2, 4, 1]
    reference = -F.ctc_loss(
        log_probs.unsqueeze(1), torch.tensor([target]), torch.tensor([12]), torch.tensor([4]), blank=0, reduction="sum"
    )
    got = ctc_prefix_log_prob(log_probs, [*target, 5], blank=0, eos=5)
    assert math.isclose(got, float(reference), rel_tol=1e-5)


def test_vectorised_candidates_equal_one_at_a_time() -> None:
    torch.manual_seed(2)
    log_probs = F.log_softmax(torch.randn(7, 5), dim=-1)
    scorer = CTCPrefixScorer(log_probs, blank=0, eos=4)
    state = scorer.initial_state()
    candidates = torch.tensor([[1, 2, 3]])
    psi, forward = scorer.score(state, candidates)
    state = scorer.extend(psi, forward, candidates, torch.tensor([0, 0]), torch.tensor([0, 1]))  # "1" and "2"
    all_tokens = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    scores, _ = scorer.score(state, all_tokens)
    assert scores[0, 0] == float("-inf")  # blank is never a token
    for row, prefix in enumerate(([1], [2])):
        for column, token in enumerate(all_tokens[row].tolist()[1:], start=1):
            expected = ctc_prefix_log_prob(log_probs, [*prefix, token], blank=0, eos=4)
            assert math.isclose(float(scores[row, column]), expected, rel_tol=1e-5), (prefix, token)
