"""CTC decoding: greedy (best path) and beam search with torchaudio's flashlight-based decoder.

Greedy decoding takes the most likely unit per frame, collapses repeats and drops blanks
(Graves et al., 2006). Beam search uses :func:`torchaudio.models.decoder.ctc_decoder`
(flashlight-text; Kahn et al., 2022), optionally constrained to a lexicon of words and scored
with an n-gram language model (a KenLM ``.arpa`` or ``.bin`` file). Lexicon spellings are made
with the tokenizer itself, so they always use the units the head predicts.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from audiossl.errors import ConfigError, DataError
from audiossl_asr.tokenizer import Tokenizer

# Score of the stand-in silence unit appended to every emission: a
# large finite penalty (rather than -inf) so the decoder prunes it without arithmetic on infinities.
_NEVER = -1.0e10
_STANDIN_SILENCE = "<sil>"


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path unit ids per utterance: argmax per valid frame, repeats collapsed, blanks dropped.

    ``log_probs`` (B, S, V) scores (any monotone transform of probabilities), ``lengths`` (B,) valid frames.
    """
    best = log_probs.argmax(dim=-1).cpu()  # (B, S)
    out = []
    for row, length in zip(best, lengths.tolist(), strict=True):
        frames = row[: int(length)].tolist()
        out.append([unit for unit, _ in itertools.groupby(frames) if unit != blank])
    return out


@dataclass(kw_only=True)
class BeamSearchOptions:
    """Knobs of the beam-search decoder (the names of torchaudio's ``ctc_decoder``)."""

    beam_size: int = 50
    """Hypotheses kept after each frame."""
    beam_size_token: int | None = None
    """Units considered per frame (None: all)."""
    beam_threshold: float = 50.0
    """Hypotheses scoring more than this below the best one are pruned."""
    lexicon: str | None = None
    """File of allowed words, one per line (first column; further columns are ignored): decoding
    emits only these words. None: lexicon-free decoding over units."""
    lm: str | None = None
    """KenLM n-gram language model (.arpa or .bin) over words (with a lexicon) or units (without)."""
    lm_weight: float = 2.0
    """Weight of the language-model score."""
    word_score: float = 0.0
    """Score added per emitted word (lexicon decoding)."""
    unk_score: float = float("-inf")
    """Score of words outside the lexicon (-inf: never)."""
    log_add: bool = False
    """Merge hypotheses with the same prefix by log-sum-exp (sum over alignments) instead of max."""


class BeamSearchDecoder:
    """Beam search over a CTC head's log-probabilities; returns unit ids or, with a lexicon, words.

    Flashlight's decoders give a silence unit special treatment (an implicit one opens every path,
    and a path's first emitted silence merges with it). The head's units are all treated as plain
    units, word boundaries included, and the decoder gets a stand-in silence appended after them
    with a score so low it is never chosen: lexicon-free search with ``log_add`` is then CTC prefix
    beam search over exactly the head's units.
    """

    def __init__(self, tokenizer: Tokenizer, options: BeamSearchOptions | None = None):
        try:
            from torchaudio.models.decoder import ctc_decoder
        except (ImportError, RuntimeError) as error:
            raise ConfigError(
                f"beam search needs flashlight-text (pip install 'audiossl-asr[decoder]'): {error}"
            ) from None

        self.tokenizer = tokenizer
        self.options = options = options or BeamSearchOptions()
        units = [*tokenizer.units, _STANDIN_SILENCE]
        self._silence = len(tokenizer.units)
        with tempfile.TemporaryDirectory(prefix="audiossl-asr-") as tmp:
            lexicon = None if options.lexicon is None else str(self._write_lexicon(Path(options.lexicon), Path(tmp)))
            if options.lm is not None and not Path(options.lm).is_file():
                raise ConfigError("language model file not found", options.lm)
            self._decoder = ctc_decoder(
                lexicon=lexicon,
                tokens=units,
                lm=options.lm,
                beam_size=options.beam_size,
                beam_size_token=options.beam_size_token,
                beam_threshold=options.beam_threshold,
                lm_weight=options.lm_weight,
                word_score=options.word_score,
                unk_score=options.unk_score,
                log_add=options.log_add,
                blank_token=units[tokenizer.blank],
                sil_token=_STANDIN_SILENCE,
                unk_word=units[tokenizer.unk],
            )

    def _write_lexicon(self, source: Path, tmp: Path) -> Path:
        """Spell every word of ``source`` with the tokenizer into a lexicon file torchaudio reads."""
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError("lexicon file not found", source) from None
        spellings: dict[str, list[str]] = {}
        known = set(self.tokenizer.units) - {self.tokenizer.units[self.tokenizer.unk]}
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            units = self.tokenizer.spell(fields[0])
            if not known.issuperset(units):
                raise DataError(f"word {fields[0]!r} has units the tokenizer does not know", source, number)
            spellings.setdefault(fields[0], units)
        if not spellings:
            raise DataError("lexicon has no words", source)
        path = tmp / "lexicon.txt"
        path.write_text("".join(f"{word}\t{' '.join(units)}\n" for word, units in spellings.items()), encoding="utf-8")
        return path

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Best transcript per utterance. ``log_probs`` (B, S, V) over the tokenizer's units, ``lengths`` (B,)."""
        hypotheses = self._search(log_probs, lengths)
        if self.options.lexicon is not None:
            return [" ".join(best.words) if best is not None else "" for best in hypotheses]
        return [self.tokenizer.decode(units) for units in self._units(hypotheses)]

    def unit_ids(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best unit sequence per utterance (repeats collapsed, blanks dropped)."""
        return self._units(self._search(log_probs, lengths))

    def _search(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list:
        emissions = log_probs.detach().float().cpu()  # (B, S, V)
        if emissions.shape[-1] != self.tokenizer.vocab_size:
            raise ValueError(f"expected {self.tokenizer.vocab_size} units, got {emissions.shape[-1]}")
        never = emissions.new_full((*emissions.shape[:2], 1), _NEVER)  # (B, S, 1)
        emissions = torch.cat([emissions, never], dim=-1)  # (B, S, V + 1): the stand-in silence last
        hypotheses = self._decoder(emissions.contiguous(), lengths.detach().cpu().to(torch.int32))
        return [nbest[0] if nbest else None for nbest in hypotheses]

    def _units(self, hypotheses: list) -> list[list[int]]:
        """Units of each best path; flashlight frames every path with silence (the stand-in) at both ends."""
        return [[] if best is None else [u for u in best.tokens.tolist() if u != self._silence] for best in hypotheses]
