"""Unpaired text for speech/text pretraining: a checked corpus, tokenizers and BART text infilling.

- :func:`read_text_corpus`: a plain UTF-8 text file, one sentence a line. Blank lines are
  skipped; a line that is not UTF-8 or holds control characters, a corpus without a sentence,
  and (once tokenized) a sentence longer than the model's limit raise :class:`DataError` naming
  the file and the line.
- Tokenizers with five fixed special ids (pad 0, bos 1, eos 2, unk 3, mask 4):
  :class:`CharTokenizer` (the corpus's characters) and :class:`SentencePieceTokenizer` (a
  unigram model trained on the corpus with the ``sentencepiece`` library). Both serialise to a
  plain dict (:meth:`state` / :func:`tokenizer_from_state`), which checkpoints carry, and refuse
  text they cannot represent with the line and the characters.
- :func:`infill`: BART's text infilling (Lewis et al. 2020, section 2.2): ``ceil(ratio * n)``
  tokens are masked in spans whose lengths are drawn from Poisson(lambda); every span, even an
  empty one, becomes one mask token (``random_ratio`` of them a random token instead). Spans do
  not overlap: they are laid out uniformly at random among the unmasked tokens.
- :class:`TextBatches`: the sentences of global text batch ``k`` as a pure function of
  (seed, k, rank): an epoch-wise random permutation, ``world_size`` ranks taking disjoint
  slices. Nothing to save for an exact resume but the batch counter.
"""

from __future__ import annotations

import abc
import base64
import io
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from audiossl.errors import ConfigError, DataError

PAD, BOS, EOS, UNK, MASK = 0, 1, 2, 3, 4
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")


@dataclass
class Sentence:
    """One corpus sentence and the line (1-based) it came from."""

    text: str
    line: int


def read_text_corpus(path: str | Path) -> list[Sentence]:
    """The non-blank lines of ``path`` (stripped), checked: UTF-8, no control characters, not empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError("text corpus not found", path)
    sentences = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DataError(f"not UTF-8 text ({error.reason} at byte {error.start})", path, number) from None
            bad = sorted({c for c in line if unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") and c != "\t"})
            if bad:
                names = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
                raise DataError(f"control or unassigned characters in the text: {names}", path, number)
            text = " ".join(line.split())  # tabs and runs of spaces -> one space
            if text:
                sentences.append(Sentence(text, number))
    if not sentences:
        raise DataError("the text corpus has no sentence (every line is blank)", path)
    return sentences


class Tokenizer(abc.ABC):
    """Text <-> token ids with the special ids of this module; ``vocab_size`` counts the specials."""

    vocab_size: int

    @abc.abstractmethod
    def encode(self, text: str, where: tuple[str | Path | None, int | None] = (None, None)) -> list[int]:
        """Token ids of ``text``; ``where`` (file, line) names the source in errors."""

    @abc.abstractmethod
    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` (special ids dropped)."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this tokenizer."""


class CharTokenizer(Tokenizer):
    """One token per character (``symbols``, in id order after the specials)."""

    def __init__(self, symbols: list[str]):
        self.symbols = list(symbols)
        self.index = {s: i + len(SPECIALS) for i, s in enumerate(self.symbols)}
        self.vocab_size = len(SPECIALS) + len(self.symbols)

    @classmethod
    def from_sentences(cls, sentences: list[Sentence]) -> CharTokenizer:
        """Every character of the corpus, sorted."""
        return cls(sorted({c for s in sentences for c in s.text}))

    def encode(self, text: str, where: tuple[str | Path | None, int | None] = (None, None)) -> list[int]:
        unknown = sorted({c for c in text if c not in self.index})
        if unknown:
            raise DataError(f"characters the tokenizer cannot represent: {unknown[:10]}", *where)
        return [self.index[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.symbols[i - len(SPECIALS)] for i in ids if i >= len(SPECIALS))

    def state(self) -> dict[str, Any]:
        return {"kind": "char", "symbols": list(self.symbols)}


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model (serialised bytes) whose ids 0-4 are this module's specials."""

    def __init__(self, model: bytes):
        import sentencepiece as spm

        self.model = model
        self.processor = spm.SentencePieceProcessor(model_proto=model)
        self.vocab_size = int(self.processor.get_piece_size())
        if self.processor.piece_to_id("<mask>") != MASK or self.processor.pad_id() != PAD:
            raise ConfigError("the sentencepiece model does not have pad id 0 and <mask> id 4")

    @classmethod
    def train(cls, sentences: list[Sentence], vocab_size: int) -> SentencePieceTokenizer:
        """A unigram model of at most ``vocab_size`` pieces trained on the sentences (every character covered)."""
        import sentencepiece as spm

        buffer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter([s.text for s in sentences]),
                model_writer=buffer,
                vocab_size=vocab_size,
                model_type="unigram",
                character_coverage=1.0,
                pad_id=PAD,
                bos_id=BOS,
                eos_id=EOS,
                unk_id=UNK,
                user_defined_symbols=["<mask>"],
                num_threads=1,
                minloglevel=2,
                hard_vocab_limit=False,  # a small corpus gets fewer pieces instead of an error
            )
        except RuntimeError as error:  # e.g. "Vocabulary size too high (N). Please set it to a value <= M."
            raise ConfigError(f"cannot train a sentencepiece model of {vocab_size} pieces: {error}") from None
        return cls(buffer.getvalue())

    def encode(self, text: str, where: tuple[str | Path | None, int | None] = (None, None)) -> list[int]:
        ids = self.processor.encode(text)
        if UNK in ids:
            pieces = self.processor.encode(text, out_type=str)
            unknown = sorted({c for piece, i in zip(pieces, ids, strict=True) if i == UNK for c in piece})
            raise DataError(f"characters the tokenizer cannot represent: {unknown[:10]}", *where)
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        return self.processor.decode([i for i in ids if i >= len(SPECIALS)])

    def state(self) -> dict[str, Any]:
        return {"kind": "sentencepiece", "model": base64.b64encode(self.model).decode("ascii")}


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """The tokenizer of :meth:`Tokenizer.state`."""
    if state.get("kind") == "char":
        return CharTokenizer(state["symbols"])
    if state.get("kind") == "sentencepiece":
        return SentencePieceTokenizer(base64.b64decode(state["model"]))
    raise ConfigError(f"unknown tokenizer state {state.get('kind')!r}")


def build_tokenizer(
    sentences: list[Sentence], kind: Literal["char", "sentencepiece"], vocab_size: int = 256
) -> Tokenizer:
    """A tokenizer of ``kind`` for the corpus."""
    if kind == "char":
        return CharTokenizer.from_sentences(sentences)
    if kind == "sentencepiece":
        return SentencePieceTokenizer.train(sentences, vocab_size)
    raise ConfigError(f"unknown tokenizer {kind!r}; known: char, sentencepiece")


def encode_corpus(
    sentences: list[Sentence], tokenizer: Tokenizer, max_tokens: int, path: str | Path
) -> list[torch.Tensor]:
    """Token ids of every sentence (1-D long tensors); a sentence over ``max_tokens`` raises naming its line."""
    encoded = []
    for sentence in sentences:
        ids = tokenizer.encode(sentence.text, (path, sentence.line))
        if len(ids) > max_tokens:
            raise DataError(
                f"the sentence has {len(ids)} tokens, more than the limit of {max_tokens} (the decoder's "
                "max_length minus bos/eos); split the line or raise the limit",
                path,
                sentence.line,
            )
        encoded.append(torch.tensor(ids, dtype=torch.long))
    return encoded


# ----------------------------------------------------------------------------- BART text infilling


@dataclass(kw_only=True)
class InfillConfig:
    """BART text infilling (defaults: the BART paper's 30% with Poisson(3.5) spans)."""

    ratio: float = 0.3
    """Fraction of the tokens masked (``ceil(ratio * n)``)."""

    poisson_lambda: float = 3.5
    """Mean span length."""

    random_ratio: float = 0.0
    """Fraction of the spans replaced by a random token instead of the mask token."""

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0 or self.poisson_lambda <= 0 or not 0.0 <= self.random_ratio <= 1.0:
            raise ConfigError("infill needs 0 < ratio < 1, poisson_lambda > 0 and 0 <= random_ratio <= 1")


def infill(
    tokens: torch.Tensor, config: InfillConfig, vocab_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text infilling of one sentence ``tokens`` (n,) -> (noisy (m,), masked (n,) bool over the input)."""
    n = tokens.numel()
    budget = math.ceil(config.ratio * n)
    lengths: list[int] = []
    while sum(lengths) < budget:
        draws = torch.poisson(torch.full((max(4, budget),), config.poisson_lambda), generator=generator)
        for value in draws.long().tolist():
            lengths.append(value)
            if sum(lengths) >= budget:
                break
    lengths[-1] -= sum(lengths) - budget  # the last span stops at the budget
    # Lay the spans out among the n - budget kept tokens: k span slots among n - budget + k slots.
    kept, spans = n - budget, len(lengths)
    slots = torch.randperm(kept + spans, generator=generator)[:spans].sort().values.tolist()
    random_spans = torch.rand(spans, generator=generator) < config.random_ratio
    random_tokens = torch.randint(len(SPECIALS), max(vocab_size, len(SPECIALS) + 1), (spans,), generator=generator)
    noisy: list[int] = []
    masked = torch.zeros(n, dtype=torch.bool)
    source, span = 0, 0
    for slot in range(kept + spans):
        if span < spans and slots[span] == slot:
            length = lengths[span]
            masked[source : source + length] = True
            noisy.append(int(random_tokens[span]) if random_spans[span] else MASK)
            source += length
            span += 1
        else:
            noisy.append(int(tokens[source]))
            source += 1
    return torch.tensor(noisy, dtype=torch.long), masked


@dataclass
class TextBatch:
    """A denoising batch: the noisy ``source`` for the encoder, the original for the decoder.

    ``source``: (B, S) long, padded with PAD; ``source_lengths`` (B,).
    ``decoder_input``: (B, U) long, bos + original; ``target``: (B, U) original + eos, PAD-padded;
    ``target_lengths`` (B,) = n + 1.
    """

    source: torch.Tensor
    source_lengths: torch.Tensor
    decoder_input: torch.Tensor
    target: torch.Tensor
    target_lengths: torch.Tensor

    def to(self, device: torch.device | str) -> TextBatch:
        return TextBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def pad_sequences(sequences: list[torch.Tensor], value: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D long tensors -> (padded (B, L), lengths (B,))."""
    lengths = torch.tensor([s.numel() for s in sequences], dtype=torch.long)
    padded = torch.full((len(sequences), int(lengths.max())), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        padded[row, : sequence.numel()] = sequence
    return padded, lengths


def denoising_batch(
    sentences: list[torch.Tensor], config: InfillConfig, vocab_size: int, generator: torch.Generator | None = None
) -> TextBatch:
    """Infill every sentence; the decoder input and target are the originals with bos / eos."""
    noisy = [infill(s, config, vocab_size, generator)[0] for s in sentences]
    source, source_lengths = pad_sequences(noisy)
    bos, eos = torch.tensor([BOS]), torch.tensor([EOS])
    decoder_input, target_lengths = pad_sequences([torch.cat([bos, s]) for s in sentences])
    target, _ = pad_sequences([torch.cat([s, eos]) for s in sentences])
    return TextBatch(source, source_lengths, decoder_input, target, target_lengths)


class TextBatches:
    """Global text batch ``k`` -> this rank's sentence indices, a pure function of (seed, k, rank)."""

    def __init__(self, num_sentences: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ConfigError(f"text batch size must be >= 1, got {batch_size}")
        self.num_sentences, self.batch_size = num_sentences, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._orders: dict[int, torch.Tensor] = {}

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of the sentences in text epoch ``epoch``."""
        if epoch not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders[epoch] = torch.randperm(self.num_sentences, generator=generator)
        return self._orders[epoch]

    def indices(self, k: int) -> list[int]:
        """Sentence indices of this rank's share of global text batch ``k``."""
        first = (k * self.world_size + self.rank) * self.batch_size
        out = []
        for slot in range(first, first + self.batch_size):
            epoch, position = divmod(slot, self.num_sentences)
            out.append(int(self.order(epoch)[position]))
        return out
