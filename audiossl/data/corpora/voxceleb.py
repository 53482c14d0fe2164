"""VoxCeleb1 and VoxCeleb2 (Nagrani et al., 2017; Chung et al., 2018) -> Kaldi data dirs and trials.

The releases unpack to ``wav/<speaker>/<video>/<nnnnn>.wav`` (VoxCeleb1, 16 kHz wav) or
``dev/aac/<speaker>/<video>/<nnnnn>.m4a`` (VoxCeleb2, AAC read through torchcodec). Utterance
ids are ``<speaker>-<video>-<nnnnn>``: speaker-prefixed, and every speaker id has the same
length (``id`` + five digits), so byte order groups speakers. The official trial lists
(``veri_test2.txt``: ``<1|0> id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav``)
are rewritten with these ids, the ``label enroll test`` format of ``audiossl sv evaluate``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from audiossl.data.corpora.common import add_utterance, new_data_dir, visible
from audiossl.data.kaldi import DataDir, read_entries
from audiossl.data.subset import subset
from audiossl.errors import DataError
from audiossl.fileio import atomic_write

HOW_TO_GET = (
    "VoxCeleb is not freely downloadable: request access at https://mm.kaist.ac.kr/datasets/voxceleb/ "
    "(formerly robots.ox.ac.uk/~vgg/data/voxceleb), then unzip vox1_dev_wav.zip and vox1_test_wav.zip into one "
    "folder (it gets wav/idNNNNN/...) and, for VoxCeleb2, vox2_dev_aac.zip (dev/aac/idNNNNN/...)"
)

#: Where speaker folders sit inside a release folder.
INNER = ("", "wav", "aac", "dev/wav", "dev/aac", "test/wav", "test/aac", "vox1_dev_wav/wav", "vox1_test_wav/wav")

_SPEAKER = re.compile(r"id[0-9]+")
_EXTENSIONS = (".wav", ".m4a")


def utterance_id(relative: str) -> str:
    """``id10270/x6uYqmx31kE/00001.wav`` -> ``id10270-x6uYqmx31kE-00001``."""
    parts = relative.split("/")
    if len(parts) != 3 or not _SPEAKER.fullmatch(parts[0]):
        raise ValueError(relative)
    return f"{parts[0]}-{parts[1]}-{Path(parts[2]).stem}"


def speaker_roots(corpus_dir: Path) -> list[Path]:
    """The folders of ``corpus_dir`` (itself or the usual sub-folders) that hold ``idNNNNN`` speaker folders."""
    if not corpus_dir.is_dir():
        raise DataError(f"VoxCeleb folder not found: put the corpus here ({HOW_TO_GET})", corpus_dir)
    roots = []
    for name in INNER:
        candidate = corpus_dir / name if name else corpus_dir
        if candidate.is_dir() and any(_SPEAKER.fullmatch(p.name) and p.is_dir() for p in candidate.iterdir()):
            roots.append(candidate)
    if not roots:
        raise DataError(
            f"no idNNNNN speaker folders here or in {', '.join(n for n in INNER if n)} ({HOW_TO_GET})", corpus_dir
        )
    return roots


def scan_voxceleb(corpus_dirs: Sequence[str | Path]) -> DataDir:
    """Every ``<speaker>/<video>/<n>.wav|m4a`` of the given release folders as one data dir."""
    data = new_data_dir()
    sources: dict[str, Path] = {}
    for corpus_dir in corpus_dirs:
        for root in speaker_roots(Path(corpus_dir)):
            for speaker_dir in visible(p for p in root.iterdir() if p.is_dir() and _SPEAKER.fullmatch(p.name)):
                for video_dir in visible(p for p in speaker_dir.iterdir() if p.is_dir()):
                    for path in visible(video_dir.iterdir()):
                        if path.suffix.lower() not in _EXTENSIONS:
                            continue
                        utt = f"{speaker_dir.name}-{video_dir.name}-{path.stem}"
                        if utt in sources:
                            raise DataError(f"utterance {utt} is also {sources[utt]} (the same release twice?)", path)
                        sources[utt] = path
                        add_utterance(data, utt, path, speaker_dir.name)
    if not data.wav_scp:
        raise DataError(f"no .wav or .m4a utterances found ({HOW_TO_GET})", Path(corpus_dirs[0]))
    return data


def convert_trials(trials: str | Path, known: set[str]) -> list[str]:
    """The official trial list's lines with utterance ids; an utterance not in ``known`` names its line."""
    lines = []
    for entry in read_entries(trials):
        fields = [entry.key, *entry.value.split()]
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise DataError("expected '<1|0> <speaker/video/n.wav> <speaker/video/n.wav>'", trials, entry.line)
        ids = []
        for relative in fields[1:]:
            try:
                utt = utterance_id(relative)
            except ValueError:
                raise DataError(f"{relative!r} is not idNNNNN/VIDEO/NNNNN.wav", trials, entry.line) from None
            if utt not in known:
                raise DataError(
                    f"{relative} is not in the prepared corpus (is the test part unzipped?)", trials, entry.line
                )
            ids.append(utt)
        lines.append(f"{fields[0]} {ids[0]} {ids[1]}")
    if not lines:
        raise DataError("the trial list is empty", trials)
    return lines


def prepare_voxceleb(
    corpus_dirs: Sequence[str | Path], out_dir: str | Path, trials: str | Path | None = None
) -> dict[str, DataDir]:
    """Write ``out_dir/dev`` (and, with ``trials``, ``out_dir/test`` + ``out_dir/test/trials``).

    With a trial list, the speakers it mentions form ``test`` (VoxCeleb1's 40 test speakers for
    ``veri_test2.txt``) and every other speaker ``dev``; without one, everything is ``dev``.
    """
    data = scan_voxceleb(corpus_dirs)
    out_dir = Path(out_dir)
    if trials is None:
        return {"dev": _save(data, out_dir / "dev")}
    lines = convert_trials(trials, set(data.wav_scp))
    test_speakers = {data.utt2spk[utt] for line in lines for utt in line.split()[1:]}
    test = subset(data, [u for u in data.utterance_ids if data.utt2spk[u] in test_speakers])
    dev_ids = [u for u in data.utterance_ids if data.utt2spk[u] not in test_speakers]
    parts = {"test": _save(test, out_dir / "test")}
    if dev_ids:
        parts["dev"] = _save(subset(data, dev_ids), out_dir / "dev")
    with atomic_write(out_dir / "test" / "trials") as handle:
        handle.writelines(line + "\n" for line in lines)
    return parts


def _save(data: DataDir, path: Path) -> DataDir:
    data.save(path)
    return data
