"""IEMOCAP (Busso et al., 2008) -> a Kaldi data dir with emotion and session labels.

The release (``IEMOCAP_full_release``) holds ``Session1..5``, each with
``sentences/wav/<dialog>/<utterance>.wav``, the evaluators' consensus labels in
``dialog/EmoEvaluation/<dialog>.txt`` (lines ``[start - end]<TAB><utterance><TAB><emo><TAB>[v, a, d]``)
and transcripts in ``dialog/transcriptions/<dialog>.txt`` (``<utterance> [start-end]: words``).

The usual 4-class setup keeps neutral, happy (with excited merged into it), angry and sad and
drops every other label; the session is written as ``utt2session`` for leave-one-session-out
folds. The speaker of ``Ses01F_impro01_M003`` is ``Ses01M`` (session + the gender letter of the
last field); utterance ids are prefixed by it.
"""

from __future__ import annotations

import re
from pathlib import Path

from audiossl.data.corpora.common import add_utterance, corpus_root, new_data_dir, visible
from audiossl.data.kaldi import DataDir
from audiossl.errors import DataError

HOW_TO_GET = (
    "IEMOCAP is licensed by USC SAIL: request it at https://sail.usc.edu/iemocap/iemocap_release.htm, "
    "then extract IEMOCAP_full_release (with Session1 ... Session5) and pass that folder"
)

#: The 4-class setup: corpus label -> class (excited counts as happy).
FOUR_CLASSES = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}

_LABEL_LINE = re.compile(r"\[\s*[0-9.]+\s*-\s*[0-9.]+\s*\]\s+(?P<utt>Ses\S+)\s+(?P<emo>\S+)\s+\[.*\]\s*")
_TRANSCRIPT_LINE = re.compile(r"(?P<utt>Ses\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)")
_UTTERANCE = re.compile(r"(?P<session>Ses0[1-5])[FM]_\S+_(?P<gender>[FM])[0-9A-Z]+")


def speaker_of(utterance: str) -> tuple[str, str]:
    """``Ses01F_impro01_M003`` -> ``("Ses01M", "Ses01")``: speaker and session."""
    match = _UTTERANCE.fullmatch(utterance)
    if match is None:
        raise ValueError(utterance)
    return match["session"] + match["gender"], match["session"]


def prepare_iemocap(corpus_dir: str | Path, out_dir: str | Path, four_class: bool = True) -> DataDir:
    """Write one data dir: wav.scp, utt2spk, text, utt2emo, utt2session, utt2dur, utt2num_samples.

    ``four_class``: keep neu/hap(+exc)/ang/sad only; otherwise keep every label but ``xxx`` (no
    majority). A labelled utterance without its wav is an error naming the label file and line.
    """
    root = corpus_root(corpus_dir, "Session1", "IEMOCAP", HOW_TO_GET, inner=("IEMOCAP_full_release",))
    data = new_data_dir(text=True, labels=("emo", "session"))
    sessions = visible(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"Session[1-5]", p.name))
    for session_dir in sessions:
        label_dir = session_dir / "dialog" / "EmoEvaluation"
        if not label_dir.is_dir():
            raise DataError(f"label folder missing ({HOW_TO_GET})", label_dir)
        transcripts = _transcripts(session_dir / "dialog" / "transcriptions")
        for label_file in visible(p for p in label_dir.glob("*.txt") if p.is_file()):
            lines = label_file.read_text(encoding="utf-8", errors="replace").splitlines()
            for number, line in enumerate(lines, start=1):
                match = _LABEL_LINE.fullmatch(line.strip())
                if match is None:
                    continue  # headers, blank separators and per-evaluator "C-E1:" lines
                name, emotion = match["utt"], match["emo"]
                label = FOUR_CLASSES.get(emotion) if four_class else (None if emotion == "xxx" else emotion)
                if label is None:
                    continue
                try:
                    speaker, session = speaker_of(name)
                except ValueError:
                    raise DataError(f"{name!r} is not an IEMOCAP utterance name", label_file, number) from None
                wav = session_dir / "sentences" / "wav" / label_file.stem / f"{name}.wav"
                if not wav.is_file():
                    raise DataError(f"the audio of {name} is missing: {wav}", label_file, number)
                utt = f"{speaker}-{name}"
                if utt in data.wav_scp:
                    raise DataError(f"{name} is labelled twice", label_file, number)
                add_utterance(data, utt, wav, speaker)
                data.labels["emo"][utt] = label
                data.labels["session"][utt] = session
                data.text[utt] = transcripts.get(name, "")
    if not data.wav_scp:
        raise DataError(f"no labelled utterances found in Session1..5 ({HOW_TO_GET})", root)
    if not any(data.text.values()):
        data.text = None  # no transcriptions folder at all
    data.save(out_dir)
    return data


def _transcripts(folder: Path) -> dict[str, str]:
    """Utterance -> words, from every transcription file of a session (absent folder: none)."""
    out: dict[str, str] = {}
    if not folder.is_dir():
        return out
    for path in visible(p for p in folder.glob("*.txt") if p.is_file()):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _TRANSCRIPT_LINE.fullmatch(line.strip())
            if match is not None:
                out[match["utt"]] = " ".join(match["text"].split())
    return out
