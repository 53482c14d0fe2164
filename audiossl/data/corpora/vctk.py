"""CSTR VCTK Corpus 0.92 (Yamagishi et al., 2019) -> a Kaldi data dir for voice conversion.

The release unpacks to ``wav48_silence_trimmed/<speaker>/<speaker>_<nnn>_mic1.flac`` (and
``_mic2``: two microphones per sentence) with transcripts in ``txt/<speaker>/<speaker>_<nnn>.txt``.
One microphone is kept (``mic1`` by default). Utterance ids are ``<speaker>-<nnn>``; a few
recordings have no transcript (all of p315, a handful elsewhere) and are left out unless
``require_text`` is off, in which case the data dir has no text table.
"""

from __future__ import annotations

import re
from pathlib import Path

from audiossl.data.corpora.common import add_utterance, corpus_root, new_data_dir, visible
from audiossl.data.kaldi import DataDir
from audiossl.errors import DataError

HOW_TO_GET = (
    "download it with 'audiossl data download vctk DIR' or from https://datashare.ed.ac.uk/handle/10283/3443 "
    "(VCTK-Corpus-0.92.zip)"
)
AUDIO_DIR = "wav48_silence_trimmed"

_FILE = re.compile(r"(?P<speaker>[ps][0-9]+)_(?P<number>[0-9]+)_(?P<mic>mic[12])\.flac")


def prepare_vctk(
    corpus_dir: str | Path, out_dir: str | Path, mic: str = "mic1", require_text: bool = True
) -> tuple[DataDir, int]:
    """Write one data dir (wav.scp, utt2spk, text, utt2dur, utt2num_samples); return it and the count left out.

    ``corpus_dir`` is the folder holding ``wav48_silence_trimmed`` and ``txt`` (or its parent
    ``VCTK-Corpus-0.92``).
    """
    if mic not in ("mic1", "mic2"):
        raise DataError(f"mic must be mic1 or mic2, got {mic!r}")
    root = corpus_root(corpus_dir, AUDIO_DIR, "VCTK 0.92", HOW_TO_GET, inner=("VCTK-Corpus-0.92",))
    data = new_data_dir(text=True)
    without_text = 0
    for speaker_dir in visible(p for p in (root / AUDIO_DIR).iterdir() if p.is_dir()):
        for path in visible(speaker_dir.glob(f"*_{mic}.flac")):
            match = _FILE.fullmatch(path.name)
            if match is None or match["speaker"] != speaker_dir.name:
                raise DataError(f"not a VCTK file name: expected {speaker_dir.name}_NNN_{mic}.flac", path)
            speaker, number = match["speaker"], match["number"]
            transcript = root / "txt" / speaker / f"{speaker}_{number}.txt"
            text = transcript.read_text(encoding="utf-8", errors="replace").strip() if transcript.is_file() else None
            if text is None:
                without_text += 1
                if require_text:
                    continue
            utt = f"{speaker}-{number}"
            add_utterance(data, utt, path, speaker)
            if text is not None:
                data.text[utt] = " ".join(text.split())
    if not data.wav_scp:
        raise DataError(f"no *_{mic}.flac recordings with transcripts in {AUDIO_DIR}/SPEAKER/ ({HOW_TO_GET})", root)
    if not require_text and without_text:
        data.text = None
    data.save(out_dir)
    return data, without_text
