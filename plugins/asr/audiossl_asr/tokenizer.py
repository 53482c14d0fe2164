"""Output units for CTC: characters, or sentencepiece pieces (unigram or BPE) trained on the training text.

Index 0 is always the CTC blank and index 1 the unknown unit, so a head's output size is the
tokenizer's ``vocab_size`` whatever its kind. Characters mark word boundaries with ``|`` (the
convention of wav2vec 2.0's letter dictionaries); sentencepiece marks them with ``▁`` at the
start of a word (Kudo & Richardson, 2018). A tokenizer lives in a run directory as
``tokenizer.json`` (plus ``tokenizer.model`` for sentencepiece), so decoding uses exactly the
units the head was trained on.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from audiossl.data.kaldi import read_entries
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write

BLANK = "<blank>"
UNK = "<unk>"
WORD_BOUNDARY = "|"
KINDS = ("char", "unigram", "bpe")
TOKENIZER_FILE = "tokenizer.json"
SENTENCEPIECE_FILE = "tokenizer.model"


def read_transcripts(path: str | Path) -> dict[str, str]:
    """Read a Kaldi ``text`` file; whitespace is normalised and an empty transcript is a DataError at its line."""
    transcripts: dict[str, str] = {}
    for entry in read_entries(path, allow_empty_value=True):
        words = entry.value.split()
        if not words:
            raise DataError(f"utterance {entry.key!r} has an empty transcript", path, entry.line)
        if entry.key in transcripts:
            raise DataError(f"duplicate id {entry.key!r}", path, entry.line)
        transcripts[entry.key] = " ".join(words)
    return transcripts


class Tokenizer:
    """Maps a transcript to unit ids and back; ``0`` is the CTC blank, ``1`` the unknown unit."""

    blank: int = 0
    unk: int = 1

    def __init__(self, kind: str, units: list[str] | None = None, model_proto: bytes | None = None):
        if kind not in KINDS:
            raise ConfigError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self._processor = None
        if kind == "char":
            if units is None or units[:2] != [BLANK, UNK]:
                raise ValueError("character units must start with the blank and unknown units")
            self.units = list(units)
        else:
            import sentencepiece

            if model_proto is None:
                raise ValueError("a sentencepiece tokenizer needs its model")
            self._model_proto = model_proto
            self._processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
            self.units = [self._processor.id_to_piece(i) for i in range(self._processor.get_piece_size())]
            if self.units[:2] != [BLANK, UNK]:
                raise ValueError("the sentencepiece model must have the blank at 0 and <unk> at 1")
        self._index = {unit: i for i, unit in enumerate(self.units)}

    @property
    def vocab_size(self) -> int:
        """Number of units, blank and unknown included: the CTC head's output size."""
        return len(self.units)

    @property
    def model_proto(self) -> bytes:
        """The serialised sentencepiece model (sentencepiece kinds only)."""
        if self._processor is None:
            raise AttributeError("a character tokenizer has no sentencepiece model")
        return self._model_proto

    @property
    def word_boundary(self) -> str | None:
        """The unit that ends every word (characters only; sentencepiece marks word starts with ▁ instead)."""
        return WORD_BOUNDARY if self.kind == "char" else None

    def encode(self, text: str) -> list[int]:
        """Unit ids of a transcript (never the blank); unseen characters become the unknown unit."""
        words = text.split()
        if self._processor is not None:
            return list(self._processor.encode(" ".join(words)))
        ids: list[int] = []
        for word in words:
            ids.extend(self._index.get(char, self.unk) for char in word)
            ids.append(self._index[WORD_BOUNDARY])  # after every word, as in a lexicon spelling
        return ids

    def spell(self, word: str) -> list[str]:
        """A word as units, as written in a beam-search lexicon (characters end with the boundary)."""
        if self._processor is not None:
            return list(self._processor.encode(word, out_type=str))
        return [char if char in self._index else UNK for char in word] + [WORD_BOUNDARY]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of unit ids (blanks dropped, no repeat collapsing); words separated by single spaces."""
        ids = [int(i) for i in ids if int(i) != self.blank]
        if self._processor is not None:
            text = self._processor.decode(ids)
        else:
            text = "".join(" " if self.units[i] == WORD_BOUNDARY else self.units[i] for i in ids)
        return " ".join(text.split())

    def save(self, run_dir: str | Path) -> Path:
        """Write ``tokenizer.json`` (and ``tokenizer.model``) into ``run_dir``, atomically."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        meta: dict = {"kind": self.kind, "vocab_size": self.vocab_size}
        if self._processor is None:
            meta["units"] = self.units
        else:
            with atomic_write(run_dir / SENTENCEPIECE_FILE, "wb", encoding=None) as handle:
                handle.write(self._model_proto)
        with atomic_write(run_dir / TOKENIZER_FILE) as handle:
            json.dump(meta, handle, ensure_ascii=False, indent=1)
        return run_dir / TOKENIZER_FILE

    @classmethod
    def load(cls, run_dir: str | Path) -> Tokenizer:
        """Read the tokenizer saved in ``run_dir``."""
        path = Path(run_dir) / TOKENIZER_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("no tokenizer here (is this an ASR run directory?)", path) from None
        if meta["kind"] == "char":
            return cls("char", units=meta["units"])
        return cls(meta["kind"], model_proto=(Path(run_dir) / SENTENCEPIECE_FILE).read_bytes())


def train_tokenizer(
    transcripts: Mapping[str, str], kind: str = "char", vocab_size: int = 64, source: str | Path | None = None
) -> Tokenizer:
    """Learn units from training transcripts: every character seen, or a sentencepiece model of ``vocab_size``.

    ``vocab_size`` counts the blank and unknown units and is ignored for characters. ``source``
    (the text file) only serves error messages.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
    texts = [" ".join(text.split()) for text in transcripts.values()]
    if not texts:
        raise DataError("no transcripts to learn a tokenizer from", source)
    for utt, text in zip(transcripts, texts, strict=True):
        if not text:
            raise DataError(f"utterance {utt!r} has an empty transcript", source)
    if kind == "char":
        chars = sorted({char for text in texts for char in text if not char.isspace()})
        if WORD_BOUNDARY in chars:
            raise DataError(f"transcripts contain {WORD_BOUNDARY!r}, the character tokenizer's word boundary", source)
        return Tokenizer("char", units=[BLANK, UNK, WORD_BOUNDARY, *chars])
    return Tokenizer(kind, model_proto=_train_sentencepiece(texts, kind, vocab_size, source))


def _train_sentencepiece(texts: list[str], kind: str, vocab_size: int, source: str | Path | None) -> bytes:
    import sentencepiece

    if vocab_size < 3:
        raise ConfigError(f"vocab_size must be at least 3 (blank, unknown and one piece), got {vocab_size}")
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type=kind,
            vocab_size=vocab_size,
            pad_id=0,
            pad_piece=BLANK,  # the padding id is never produced by encoding: it serves as the CTC blank
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            character_coverage=1.0,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as error:
        limit = re.search(r"value <= (\d+)", str(error))
        if limit:
            raise ConfigError(
                f"vocab_size {vocab_size} is too large for the training text: {kind} can learn at most "
                f"{limit.group(1)} units from it; choose a smaller vocab_size or the char tokenizer",
                source,
            ) from None
        raise ConfigError(f"sentencepiece could not learn a {kind} model: {error}", source) from None
    return model.getvalue()
