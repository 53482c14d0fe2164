"""Beam search for any decoder with a key/value cache, with optional joint CTC prefix scoring.

Joint decoding as in ESPnet (Watanabe et al. 2017): every hypothesis carries

``score = (1 - ctc_weight) * sum log p_att(y_i | y_<i, X) + ctc_weight * log psi_ctc(y | X)``

where ``psi_ctc`` is the CTC prefix probability (:mod:`audiossl.nn.ctc_prefix`), and ``eos``
closes a hypothesis with the CTC probability of the complete sequence. Finished hypotheses are
ranked by the length-normalised score ``score / (len + 1) ** length_penalty`` (``len`` tokens
plus eos; 0 = raw sums, 1 = mean per token).

At every step the ``beam_size`` best extensions of the running hypotheses are kept (as in
ESPnet, those that end in eos leave the beam). The search stops at ``max_length`` tokens, when
no hypothesis runs, or as soon as no running hypothesis can beat the best finished one: every
increment is a log-probability (<= 0), so a running score can only fall, and its normalised
score is bounded by ``score / (max_length + 1) ** length_penalty``. With a beam as wide as
every prefix, the result is the exhaustive optimum (a test compares it with brute force).

The decoder is anything with ``init_cache(memory (1, S, Dm), memory_lengths (1,)) -> cache``,
``step(tokens (N,), cache) -> (log-probabilities (N, V), cache)`` and ``cache.reorder(rows)``:
:class:`~audiossl.nn.decoder.TextDecoder` on any audiossl encoder's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from audiossl.nn.ctc_prefix import CTCPrefixScorer

NEG_INF = float("-inf")


class IncrementalDecoder(Protocol):
    """What :func:`beam_search` needs from a decoder."""

    def init_cache(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> Any: ...

    def step(self, tokens: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]: ...


@dataclass(kw_only=True)
class BeamSearchConfig:
    """Beam search settings (ESPnet-style joint CTC/attention decoding)."""

    beam_size: int = 10
    """Hypotheses kept per step."""

    ctc_weight: float = 0.3
    """Weight of the CTC prefix score (0 = attention only, 1 = CTC only); needs CTC log-probabilities when > 0."""

    length_penalty: float = 1.0
    """Exponent of the length normalisation of finished hypotheses (0 = none, 1 = per-token mean)."""

    max_length: int | None = None
    """Most tokens per hypothesis (eos excluded); None = the number of memory frames."""

    pre_beam: int | None = None
    """Candidates per hypothesis scored by CTC (the attention decoder's best); None = 1.5 x beam_size;
    values >= the vocabulary size score every token (exact)."""

    nbest: int = 1
    """Finished hypotheses returned, best first."""

    def __post_init__(self) -> None:
        from audiossl.errors import ConfigError

        if self.beam_size < 1 or self.nbest < 1:
            raise ConfigError("beam_size and nbest must be >= 1")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ConfigError(f"ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if self.length_penalty < 0:
            raise ConfigError(f"length_penalty must be >= 0, got {self.length_penalty}")


@dataclass
class Hypothesis:
    """A finished hypothesis: ``tokens`` without sos/eos, its normalised ``score`` and raw parts."""

    tokens: list[int]
    score: float
    attention_score: float
    ctc_score: float


def normalised(score: float, length: int, penalty: float) -> float:
    """``score / length ** penalty`` (``length`` counts eos)."""
    return score / (length**penalty) if penalty else score


@torch.no_grad()
def beam_search(
    decoder: IncrementalDecoder,
    memory: torch.Tensor,
    *,
    sos: int,
    eos: int,
    config: BeamSearchConfig | None = None,
    ctc_log_probs: torch.Tensor | None = None,
    blank: int | None = None,
) -> list[Hypothesis]:
    """Decode one utterance: ``memory`` (S, Dm) encoder output; ``ctc_log_probs`` (T, V) for joint decoding.

    ``blank`` (the CTC blank index, shared vocabulary) and ``sos`` (when it differs from eos) are
    never emitted. Returns up to ``config.nbest`` hypotheses, best normalised score first.
    """
    config = config or BeamSearchConfig()
    weight = config.ctc_weight
    if weight > 0 and (ctc_log_probs is None or blank is None):
        raise ValueError("ctc_weight > 0 needs ctc_log_probs (T, V) and the blank index")
    device = memory.device
    max_length = config.max_length if config.max_length is not None else memory.shape[0]
    lengths = torch.tensor([memory.shape[0]], device=device)
    cache = decoder.init_cache(memory.unsqueeze(0), lengths)
    scorer = CTCPrefixScorer(ctc_log_probs, blank, eos) if weight > 0 else None
    ctc_state = scorer.initial_state() if scorer is not None else None
    tokens = torch.full((1, 1), sos, dtype=torch.long, device=device)  # (N, 1 + t): sos first
    attention = torch.zeros(1, device=device)  # (N,) summed attention log-probabilities
    finished: list[Hypothesis] = []
    best_finished = NEG_INF
    for t in range(max_length + 1):
        log_probs, cache = decoder.step(tokens[:, -1], cache)  # (N, V)
        log_probs = log_probs.float().clone()
        vocab = log_probs.shape[1]
        if blank is not None:
            log_probs[:, blank] = NEG_INF
        if sos != eos:
            log_probs[:, sos] = NEG_INF
        if t == max_length:  # only eos may follow the longest hypotheses
            forced = torch.full_like(log_probs, NEG_INF)
            forced[:, eos] = log_probs[:, eos]
            log_probs = forced
        width = vocab if scorer is None else min(vocab, config.pre_beam or int(1.5 * config.beam_size))
        attention_next, candidates = log_probs.topk(width, dim=1)  # (N, K)
        attention_next = attention.unsqueeze(1) + attention_next
        # -inf (a token never emitted) stays -inf even at ctc_weight 1, where 0 * -inf would be NaN.
        joint = torch.where(torch.isinf(attention_next), attention_next, (1.0 - weight) * attention_next)
        if scorer is not None:
            psi, forward = scorer.score(ctc_state, candidates)  # (N, K)
            joint = joint + weight * psi
        flat = joint.flatten()
        keep = min(config.beam_size, int(torch.isfinite(flat).sum()))
        if keep == 0:
            break
        best, order = flat.topk(keep)
        rows, columns = order // width, order % width
        chosen = candidates[rows, columns]  # (M,)
        ended = chosen == eos
        for index in ended.nonzero().flatten().tolist():
            row, column = int(rows[index]), int(columns[index])
            total = float(best[index])
            hypothesis = Hypothesis(
                tokens=tokens[row, 1:].tolist(),
                score=normalised(total, t + 1, config.length_penalty),
                attention_score=float(attention_next[row, column]),
                ctc_score=float(psi[row, column]) if scorer is not None else 0.0,
            )
            finished.append(hypothesis)
            best_finished = max(best_finished, hypothesis.score)
        running = ~ended
        if not bool(running.any()):
            break
        rows, columns, chosen = rows[running], columns[running], chosen[running]
        tokens = torch.cat([tokens[rows], chosen.unsqueeze(1)], dim=1)
        attention = attention_next[rows, columns]
        if scorer is not None:
            ctc_state = scorer.extend(psi, forward, candidates, rows, columns)
        cache = cache.reorder(rows)
        bound = float(best[running].max())
        if len(finished) >= config.nbest and best_finished >= normalised(bound, max_length + 1, config.length_penalty):
            break
    finished.sort(key=lambda h: h.score, reverse=True)
    return finished[: config.nbest]


def beam_search_batch(
    decoder: IncrementalDecoder,
    memory: torch.Tensor,
    memory_lengths: torch.Tensor,
    *,
    sos: int,
    eos: int,
    config: BeamSearchConfig | None = None,
    ctc_log_probs: torch.Tensor | None = None,
    ctc_lengths: torch.Tensor | None = None,
    blank: int | None = None,
) -> list[list[Hypothesis]]:
    """:func:`beam_search` for every item of a padded batch: ``memory`` (B, S, Dm), ``memory_lengths`` (B,);
    ``ctc_log_probs`` (B, T, V) with ``ctc_lengths`` (B,) (None = ``memory_lengths``)."""
    results = []
    for item in range(memory.shape[0]):
        length = int(memory_lengths[item])
        item_ctc = None
        if ctc_log_probs is not None:
            frames = int((ctc_lengths if ctc_lengths is not None else memory_lengths)[item])
            item_ctc = ctc_log_probs[item, :frames]
        results.append(
            beam_search(
                decoder,
                memory[item, :length],
                sos=sos,
                eos=eos,
                config=config,
                ctc_log_probs=item_ctc,
                blank=blank,
            )
        )
    return results
