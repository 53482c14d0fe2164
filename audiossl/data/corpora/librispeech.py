"""LibriSpeech (Panayotov et al., 2015; OpenSLR SLR12) -> one Kaldi data dir per part.

The archives extract to ``LibriSpeech/<part>/<speaker>/<chapter>/`` holding
``<speaker>-<chapter>-<nnnn>.flac`` files and one ``<speaker>-<chapter>.trans.txt`` whose lines
are ``<utterance> <UPPER CASE WORDS>``. The corpus ids are already speaker-prefixed and use
``-``, which sorts before every digit, so byte order groups each speaker's utterances.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from audiossl.data.corpora.common import add_utterance, corpus_root, new_data_dir, visible
from audiossl.data.kaldi import DataDir, read_entries
from audiossl.errors import DataError

#: Every part OpenSLR distributes, in its order.
PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360", "train-other-500")

HOW_TO_GET = "download it with 'audiossl data download librispeech DIR' or from https://www.openslr.org/12"

_UTT = re.compile(r"[0-9]+-[0-9]+-[0-9]+")


def data_dir_name(part: str) -> str:
    """Kaldi's name of a part's data dir: ``train-clean-100`` -> ``train_clean_100``."""
    return part.replace("-", "_")


def prepare_librispeech(
    corpus_dir: str | Path, out_dir: str | Path, parts: Sequence[str] | None = None
) -> dict[str, DataDir]:
    """Write ``out_dir/<part with underscores>`` for each part (default: every part present).

    ``corpus_dir`` is the ``LibriSpeech`` folder or the folder the archives were extracted in.
    Each data dir has wav.scp, utt2spk (speaker = reader id), spk2utt, text, utt2dur and
    utt2num_samples (FLAC headers). A flac without a transcript line, or a transcript line
    without its flac, is an error naming the file.
    """
    present = [p for p in PARTS if (Path(corpus_dir) / p).is_dir() or (Path(corpus_dir) / "LibriSpeech" / p).is_dir()]
    marker = (present or list(parts or []) or ["dev-clean"])[0]
    root = corpus_root(corpus_dir, marker, "LibriSpeech", HOW_TO_GET, inner=("LibriSpeech",))
    chosen = list(parts) if parts else present
    for part in chosen:
        if part not in PARTS:
            raise DataError(f"unknown LibriSpeech part {part!r}; parts: {', '.join(PARTS)}")
        if not (root / part).is_dir():
            raise DataError(f"part {part} not found ({HOW_TO_GET} --parts {part})", root / part)
    out = {}
    for part in chosen:
        data = _prepare_part(root / part)
        data.save(Path(out_dir) / data_dir_name(part))
        out[part] = data
    return out


def _prepare_part(part_dir: Path) -> DataDir:
    data = new_data_dir(text=True)
    for speaker_dir in visible(p for p in part_dir.iterdir() if p.is_dir()):
        for chapter_dir in visible(p for p in speaker_dir.iterdir() if p.is_dir()):
            transcript = chapter_dir / f"{speaker_dir.name}-{chapter_dir.name}.trans.txt"
            if not transcript.is_file():
                raise DataError("transcript file missing from this chapter", transcript)
            audio = {p.stem: p for p in visible(chapter_dir.glob("*.flac"))}
            for entry in read_entries(transcript):
                if not _UTT.fullmatch(entry.key) or not entry.key.startswith(f"{speaker_dir.name}-"):
                    raise DataError(
                        f"utterance id {entry.key!r} is not {speaker_dir.name}-CHAPTER-N", transcript, entry.line
                    )
                path = audio.pop(entry.key, None)
                if path is None:
                    raise DataError(f"no {entry.key}.flac beside this transcript", transcript, entry.line)
                add_utterance(data, entry.key, path, speaker_dir.name)
                data.text[entry.key] = " ".join(entry.value.split())
            if audio:
                raise DataError(
                    f"{len(audio)} flac file(s) have no line in {transcript.name}", next(iter(audio.values()))
                )
    if not data.wav_scp:
        raise DataError("no utterances (expected SPEAKER/CHAPTER/*.flac and *.trans.txt)", part_dir)
    return data
