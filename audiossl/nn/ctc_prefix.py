"""CTC prefix scoring (Watanabe et al. 2017, "Hybrid CTC/attention architecture", Algorithm 2).

For a prefix ``g`` and a candidate token ``c``, the CTC *prefix probability* of ``h = g + c`` is
the probability that the CTC output (the collapsed alignment) starts with ``h``: the sum over
every frame alignment whose collapsed label sequence has ``h`` as a prefix. For ``c = eos`` it
is the probability that the output is exactly ``g``. Joint CTC/attention decoding (ESPnet)
adds ``psi(h) - psi(g)`` to the attention decoder's log-probability of ``c``.

The forward variables ``r^n_t(g)`` (paths of frames ``1..t`` collapsing to ``g`` and ending in
its last label) and ``r^b_t(g)`` (ending in blank) are kept per hypothesis; scoring extends
them for many candidates at once, vectorised over (hypotheses, candidates), with one loop over
frames. Everything is in log space, fp32.

Vocabulary: the CTC head and the decoder share one index space; ``blank`` is a CTC-only index
(never a decoder output: its prefix score is -inf) and ``eos`` scores the complete sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


@dataclass
class CTCPrefixState:
    """Prefix scoring state of N hypotheses.

    ``forward``: (N, T, 2) log ``r^n_t`` and ``r^b_t`` of each prefix.
    ``score``: (N,) log prefix probability ``psi`` of each prefix (0 for the empty prefix).
    ``last``: (N,) long, the prefix's last token (-1 for the empty prefix).
    """

    forward: torch.Tensor
    score: torch.Tensor
    last: torch.Tensor

    def select(self, rows: torch.Tensor) -> CTCPrefixState:
        """The states of ``rows`` (M,)."""
        return CTCPrefixState(self.forward[rows], self.score[rows], self.last[rows])


class CTCPrefixScorer:
    """Prefix scores of one utterance's CTC log-posteriors ``log_probs`` (T, V) (log-softmax outputs)."""

    def __init__(self, log_probs: torch.Tensor, blank: int, eos: int):
        if log_probs.dim() != 2 or log_probs.shape[0] < 1:
            raise ValueError(f"CTC log_probs must be (T, V) with T >= 1, got {tuple(log_probs.shape)}")
        self.log_probs = log_probs.float()  # (T, V)
        self.blank = blank
        self.eos = eos
        self.frames, self.vocab_size = self.log_probs.shape

    def initial_state(self) -> CTCPrefixState:
        """The state of the empty prefix: only blanks so far, ``psi = 1``."""
        forward = torch.full((1, self.frames, 2), NEG_INF, device=self.log_probs.device)
        forward[0, :, 1] = torch.cumsum(self.log_probs[:, self.blank], dim=0)
        zero = torch.zeros(1, device=self.log_probs.device)
        return CTCPrefixState(forward, zero, torch.full((1,), -1, dtype=torch.long, device=self.log_probs.device))

    def score(self, state: CTCPrefixState, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix scores of every ``candidates`` (N, K) long token after each of the N prefixes.

        Returns ``psi`` (N, K) log prefix probabilities of the extended prefixes and their
        forward variables (N, K, T, 2), for :meth:`extend`.
        """
        x = self.log_probs  # (T, V)
        count, width = candidates.shape
        frames = self.frames
        x_c = x[:, candidates].permute(1, 2, 0)  # (N, K, T)
        x_blank = x[:, self.blank]  # (T,)
        previous = state.forward  # (N, T, 2)
        total = torch.logaddexp(previous[..., 0], previous[..., 1])  # (N, T)
        # A repeated label needs a blank in between: only paths ending in blank may continue.
        repeat = candidates == state.last.unsqueeze(1)  # (N, K)
        phi = torch.where(repeat.unsqueeze(-1), previous[..., 1].unsqueeze(1), total.unsqueeze(1))  # (N, K, T)
        empty = (state.last < 0).view(count, 1)  # (N, 1)
        r_n = torch.full((count, width, frames), NEG_INF, device=x.device)
        r_b = torch.full((count, width, frames), NEG_INF, device=x.device)
        r_n[..., 0] = torch.where(empty, x_c[..., 0], torch.full_like(x_c[..., 0], NEG_INF))
        for t in range(1, frames):
            r_n[..., t] = torch.logaddexp(r_n[..., t - 1], phi[..., t - 1]) + x_c[..., t]
            r_b[..., t] = torch.logaddexp(r_n[..., t - 1], r_b[..., t - 1]) + x_blank[t]
        # psi = r^n_1(h) + sum_{t >= 2} phi_{t-1}(g) p_t(c)
        starts = torch.cat([r_n[..., :1], phi[..., :-1] + x_c[..., 1:]], dim=-1)  # (N, K, T)
        psi = torch.logsumexp(starts, dim=-1)  # (N, K)
        psi = torch.where(candidates == self.eos, total[:, -1].unsqueeze(1).expand(-1, width), psi)
        psi = psi.masked_fill(candidates == self.blank, NEG_INF)
        return psi, torch.stack([r_n, r_b], dim=-1)

    def extend(
        self,
        psi: torch.Tensor,
        forward: torch.Tensor,
        candidates: torch.Tensor,
        rows: torch.Tensor,
        columns: torch.Tensor,
    ) -> CTCPrefixState:
        """The states of the chosen extensions: prefix ``rows`` (M,) with candidate ``columns`` (M,)."""
        return CTCPrefixState(forward[rows, columns], psi[rows, columns], candidates[rows, columns])


def ctc_prefix_log_prob(log_probs: torch.Tensor, prefix: list[int], blank: int, eos: int | None = None) -> float:
    """Log prefix probability of the token list ``prefix`` under ``log_probs`` (T, V), step by step.

    With ``eos`` given and ``prefix`` ending in it, the log probability of exactly ``prefix[:-1]``.
    """
    scorer = CTCPrefixScorer(log_probs, blank, -1 if eos is None else eos)
    state = scorer.initial_state()
    for token in prefix:
        candidates = torch.tensor([[token]], device=log_probs.device)
        psi, forward = scorer.score(state, candidates)
        state = scorer.extend(psi, forward, candidates, torch.tensor([0]), torch.tensor([0]))
    return float(state.score[0])
