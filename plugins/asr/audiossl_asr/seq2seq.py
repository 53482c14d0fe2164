"""Attention encoder-decoder recognition on any upstream, with joint CTC (Kim, Hori and Watanabe, 2017).

The upstream's frames (B, S, D) are the memory of an autoregressive Transformer decoder
(:class:`audiossl.nn.decoder.TextDecoder`) that predicts the units one by one; a linear CTC
layer on the same frames adds the CTC loss, weighted by ``ctc_weight``:

``loss = ctc_weight * CTC + (1 - ctc_weight) * CE_label_smoothed(decoder)``

(the hybrid CTC/attention objective of ESPnet; label smoothing after Szegedy et al., 2016).
Decoding is beam search over the decoder with the CTC prefix score added with its own weight
and finished hypotheses ranked by length-normalised score (:func:`audiossl.nn.beam_search.beam_search`).

Vocabulary: the tokenizer's units (index 0 the CTC blank, 1 ``<unk>``), then one extra index
for ``<sos/eos>`` (ESPnet's shared start/end symbol). CTC and the decoder share that index space,
which joint decoding needs; the blank is never a decoder output and eos never a CTC target.
A head whose CTC layer predicts another vocabulary (speech translation: CTC on the source
transcript) gets ``ctc_vocab_size`` and decodes without CTC scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.errors import ConfigError, DataError
from audiossl.nn.beam_search import BeamSearchConfig, beam_search_batch
from audiossl.nn.decoder import DecoderConfig, TextDecoder
from audiossl.nn.outputs import LossOutput
from audiossl_asr.head import ctc_loss

#: Target index the cross-entropy ignores (padding of the decoder's targets).
IGNORE = -100


@dataclass(kw_only=True)
class Seq2SeqConfig:
    """Shape and objective of the attention decoder head."""

    decoder_dim: int = 256
    """Width of the decoder (the upstream's frames are projected to it)."""
    decoder_layers: int = 2
    """Decoder blocks."""
    decoder_heads: int = 4
    """Attention heads; divide ``decoder_dim``."""
    decoder_ffn: int = 1024
    """Feed-forward width of each block."""
    dropout: float = 0.1
    """Dropout on the upstream frames and inside the decoder."""
    max_length: int = 256
    """Longest target the decoder accepts, in units plus eos; longer training targets are an error naming them."""
    ctc_weight: float = 0.3
    """Weight of the CTC loss (0: attention only, no CTC layer; 1 is not allowed: use the CTC head)."""
    label_smoothing: float = 0.1
    """Probability mass spread uniformly over the vocabulary in the decoder's cross-entropy."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ConfigError(f"ctc_weight must be in [0, 1) (1 = a CTC head: --model ctc), got {self.ctc_weight}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.max_length < 2:
            raise ConfigError(f"max_length must be at least 2 (one unit and eos), got {self.max_length}")

    def decoder_config(self, memory_dim: int) -> DecoderConfig:
        return DecoderConfig(
            dim=self.decoder_dim,
            num_layers=self.decoder_layers,
            num_heads=self.decoder_heads,
            ffn_dim=self.decoder_ffn,
            memory_dim=memory_dim,
            dropout=self.dropout,
            max_length=self.max_length,
        )


class Seq2SeqHead(nn.Module):
    """Upstream frames (B, S, D) -> CTC log-probabilities (B, S, Vc) and a decoder over ``vocab_size`` units."""

    def __init__(self, dim: int, vocab_size: int, config: Seq2SeqConfig, ctc_vocab_size: int | None = None):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.eos = vocab_size - 1
        self.ctc_vocab_size = vocab_size if ctc_vocab_size is None else ctc_vocab_size
        self.dropout = nn.Dropout(config.dropout)
        self.ctc = nn.Linear(dim, self.ctc_vocab_size) if config.ctc_weight > 0 else None
        self.decoder = TextDecoder(vocab_size, config.decoder_config(dim))

    @property
    def shares_ctc_vocabulary(self) -> bool:
        """True when CTC predicts the decoder's units (joint decoding is possible)."""
        return self.ctc is not None and self.ctc_vocab_size == self.vocab_size

    def ctc_log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, S, D) -> (B, S, Vc) CTC log-probabilities (fp32)."""
        if self.ctc is None:
            raise ConfigError("this head was trained without CTC (ctc_weight 0): decode with ctc_weight 0")
        return self.ctc(self.dropout(hidden)).float().log_softmax(dim=-1)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The CTC branch alone, as a CTC head: log-probabilities (B, S, Vc) and lengths."""
        return self.ctc_log_probs(hidden), lengths


def check_target_lengths(ids: Sequence[str], targets: Sequence[Sequence[int]], max_length: int, where=None) -> None:
    """DataError naming every utterance whose units plus eos exceed the decoder's ``max_length``."""
    too_long = [(utt, len(units) + 1) for utt, units in zip(ids, targets, strict=True) if len(units) + 1 > max_length]
    if too_long:
        shown = ", ".join(f"{utt!r} ({length})" for utt, length in too_long[:5])
        more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        raise DataError(
            f"{len(too_long)} utterance(s) are longer than the decoder's maximum of {max_length} units (eos "
            f"included): {shown}{more}; raise --max-length or use larger units (a sentencepiece tokenizer)",
            where,
        )


def teacher_forcing(
    targets: Sequence[Sequence[int]], eos: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder inputs ``[eos] + y`` (B, U+1), outputs ``y + [eos]`` (B, U+1, IGNORE past the end), lengths (B,)."""
    lengths = torch.tensor([len(t) + 1 for t in targets], dtype=torch.long)
    width = int(lengths.max())
    inputs = torch.full((len(targets), width), eos, dtype=torch.long)
    outputs = torch.full((len(targets), width), IGNORE, dtype=torch.long)
    for row, units in enumerate(targets):
        inputs[row, 1 : len(units) + 1] = torch.tensor(units, dtype=torch.long)
        outputs[row, : len(units)] = torch.tensor(units, dtype=torch.long)
        outputs[row, len(units)] = eos
    return inputs.to(device), outputs.to(device), lengths.to(device)


def seq2seq_loss(
    head: Seq2SeqHead,
    hidden: torch.Tensor,
    lengths: torch.Tensor,
    targets: Sequence[Sequence[int]],
    ids: Sequence[str],
    *,
    blank: int = 0,
    ctc_targets: Sequence[Sequence[int]] | None = None,
    frame_rate: float | None = None,
) -> LossOutput:
    """Hybrid loss of one batch: ``hidden`` (B, S, D), ``lengths`` (B,), decoder ``targets`` (unit ids per item).

    ``ctc_targets`` (default: ``targets``) are what the CTC layer learns. Parts: ``ctc``,
    ``attention`` (label-smoothed cross-entropy per token); metric ``accuracy`` of the decoder's
    next-unit predictions under teacher forcing.
    """
    config = head.config
    check_target_lengths(ids, targets, config.max_length)
    memory = head.dropout(hidden)
    inputs, outputs, target_lengths = teacher_forcing(targets, head.eos, hidden.device)
    logits = head.decoder(inputs, target_lengths, memory, lengths).float()  # (B, U+1, V)
    attention = F.cross_entropy(
        logits.transpose(1, 2), outputs, ignore_index=IGNORE, label_smoothing=config.label_smoothing
    )
    valid = outputs != IGNORE
    accuracy = (logits.argmax(-1) == outputs)[valid].float().mean()
    parts = {"attention": attention.detach()}
    total = attention
    if head.ctc is not None:
        log_probs = head.ctc(memory).float().log_softmax(dim=-1)  # (B, S, Vc)
        ctc = ctc_loss(log_probs, lengths, ctc_targets if ctc_targets is not None else targets, ids, blank, frame_rate)
        total = config.ctc_weight * ctc + (1.0 - config.ctc_weight) * attention
        parts["ctc"] = ctc.detach()
    return LossOutput(total=total, parts=parts, metrics={"accuracy": float(accuracy)})


@torch.no_grad()
def seq2seq_decode(
    head: Seq2SeqHead, hidden: torch.Tensor, lengths: torch.Tensor, search: BeamSearchConfig, blank: int = 0
) -> list[list[int]]:
    """Best unit sequence per item (no eos): beam search, with CTC prefix scores when ``search.ctc_weight`` > 0.

    ``hidden`` (B, S, D), ``lengths`` (B,). Hypotheses stop at ``search.max_length`` units (default:
    the item's frames, within the decoder's maximum).
    """
    if search.ctc_weight > 0 and not head.shares_ctc_vocabulary:
        raise ConfigError(
            "joint CTC decoding needs a CTC layer over the decoder's units "
            + ("(this head was trained with ctc_weight 0)" if head.ctc is None else "(this head's CTC predicts others)")
            + ": decode with ctc_weight 0"
        )
    limit = head.config.max_length - 1
    if search.max_length is None or search.max_length > limit:
        capped = min(limit, int(lengths.max())) if search.max_length is None else limit
        search = BeamSearchConfig(**{**search.__dict__, "max_length": capped})
    log_probs = head.ctc_log_probs(hidden) if search.ctc_weight > 0 else None
    results = beam_search_batch(
        head.decoder,
        hidden,
        lengths,
        sos=head.eos,
        eos=head.eos,
        config=search,
        ctc_log_probs=log_probs,
        blank=blank,
    )
    return [hypotheses[0].tokens if hypotheses else [] for hypotheses in results]
