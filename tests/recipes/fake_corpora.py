"""Tiny fake corpora in the real layouts of LibriSpeech, VoxCeleb1, IEMOCAP and VCTK 0.92.

The audio and words come from the embedded synthetic corpus (speech-like, with transcripts and
emotions), re-filed under the corpus's own folder structure, names, audio formats and label
files, so the preparers read exactly what they would read in the real release.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from audiossl.audio.io import load_audio
from audiossl.data.synth import SynthConfig, synthesize_corpus


def synth_utterances(
    out: Path, speakers: int, per_speaker: int, sample_rate: int = 16000, seed: int = 0
) -> list[list[tuple[np.ndarray, str, str]]]:
    """Per synthetic speaker, its ``(samples, words, emotion)`` utterances."""
    data = synthesize_corpus(
        out, SynthConfig(speakers=speakers, utts_per_speaker=per_speaker, seed=seed, sample_rate=sample_rate)
    )
    grouped: dict[str, list[tuple[np.ndarray, str, str]]] = {}
    for utt in data.utterance_ids:
        samples, _ = load_audio(data.wav_scp[utt])
        grouped.setdefault(data.utt2spk[utt], []).append((samples.numpy(), data.text[utt], data.labels["emo"][utt]))
    return [grouped[spk] for spk in sorted(grouped)]


def _write(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate)


#: LibriSpeech reader ids: 103 and 1034 check byte order ('-' sorts before digits).
LIBRI_SPEAKERS = ("103", "1034", "19", "2001")


def fake_librispeech(
    root: Path, work: Path, parts: dict[str, int] | None = None, per_speaker: int = 3
) -> dict[str, dict[str, str]]:
    """``root/LibriSpeech/<part>/<spk>/<chapter>/`` with flac + trans.txt; returns part -> {utt: TEXT}."""
    parts = parts or {"train-clean-100": 4, "dev-clean": 2, "test-clean": 2}
    speakers = synth_utterances(work, len(LIBRI_SPEAKERS), per_speaker)
    expected: dict[str, dict[str, str]] = {}
    for offset, (part, count) in enumerate(parts.items()):
        expected[part] = {}
        for index in range(count):
            speaker = LIBRI_SPEAKERS[index]
            chapter = str(1240 + 7 * offset + index)
            folder = root / "LibriSpeech" / part / speaker / chapter
            lines = []
            for number, (samples, words, _) in enumerate(speakers[index]):
                utt = f"{speaker}-{chapter}-{number:04d}"
                _write(folder / f"{utt}.flac", samples, 16000)
                lines.append(f"{utt} {words.upper()}\n")
                expected[part][utt] = words.upper()
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    for name in ("SPEAKERS.TXT", "README.TXT"):
        (root / "LibriSpeech" / name).write_text("; fake\n")
    return expected


#: (speaker, videos): ids with '-' and '_' as YouTube ids have; 10270+ are VoxCeleb1's test speakers.
VOX_SPEAKERS = (("id10001", ("1zcIwhmdeo4", "7w0IBEWc9Qw")), ("id10002", ("6WO410QOeuo", "C7k7C-PDvAA")),
                ("id10003", ("5ablueV_1tw", "E_6MjfYr0sQ")), ("id10270", ("5r0dWxy17C8", "x6uYqmx31kE")),
                ("id10271", ("1gtz-CUIygI", "37nktPRUJ58")), ("id10272", ("9N9iB_Avvxw", "Ix4CXEcHjH8")))  # fmt: skip


def fake_voxceleb(root: Path, work: Path, per_video: int = 2) -> Path:
    """``root/wav/<id>/<video>/<nnnnn>.wav`` and ``root/veri_test2.txt`` over the id1027x speakers (returned)."""
    speakers = synth_utterances(work, len(VOX_SPEAKERS), 2 * per_video)
    test_files = []
    for (speaker, videos), utterances in zip(VOX_SPEAKERS, speakers, strict=True):
        for index, (samples, _, _) in enumerate(utterances):
            relative = f"{speaker}/{videos[index // per_video]}/{index % per_video + 1:05d}.wav"
            _write(root / "wav" / relative, samples, 16000)
            if speaker.startswith("id1027"):
                test_files.append(relative)
    lines = []
    for i, enroll in enumerate(test_files):
        for test in test_files[i + 1 :]:
            lines.append(f"{int(enroll.split('/')[0] == test.split('/')[0])} {enroll} {test}\n")
    trials = root / "veri_test2.txt"
    trials.write_text("".join(lines))
    return trials


#: Synthetic emotion -> IEMOCAP label; 'happy' alternates with 'exc' (merged into hap), and
#: extra 'fru'/'xxx' lines (dropped by the 4-class setup) are added to every dialogue.
IEMOCAP_LABELS = {"neutral": "neu", "happy": "hap", "sad": "sad", "angry": "ang"}


def fake_iemocap(root: Path, work: Path, sessions: int = 5, per_speaker: int = 3) -> dict[str, tuple[str, str]]:
    """``root/IEMOCAP_full_release/SessionN/...``; returns utterance id -> (4-class label, session)."""
    release = root / "IEMOCAP_full_release"
    speakers = synth_utterances(work, 2 * sessions, per_speaker + 1)
    expected: dict[str, tuple[str, str]] = {}
    for session in range(1, sessions + 1):
        dialog = f"Ses0{session}F_impro01"
        label_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n", "\n"]
        transcript_lines = []
        for gender, utterances in zip("FM", speakers[2 * session - 2 : 2 * session], strict=True):
            for index, (samples, words, emotion) in enumerate(utterances):
                name = f"{dialog}_{gender}{index:03d}"
                _write(release / f"Session{session}" / "sentences" / "wav" / dialog / f"{name}.wav", samples, 16000)
                label = IEMOCAP_LABELS[emotion]
                if label == "hap" and index % 2:
                    label = "exc"
                if index == per_speaker:  # the last utterance of each speaker: a class the setup drops
                    label = "fru" if gender == "F" else "xxx"
                start = 1.5 * index
                label_lines.append(f"[{start:.4f} - {start + 1:.4f}]\t{name}\t{label}\t[2.5000, 3.0000, 3.5000]\n")
                label_lines.append(f"C-E1:\t{label};\t()\n\n")
                transcript_lines.append(f"{name} [{start:08.4f}-{start + 1:08.4f}]: {words}\n")
                if label not in ("fru", "xxx"):
                    speaker = f"Ses0{session}{gender}"
                    expected[f"{speaker}-{name}"] = ("hap" if label == "exc" else label, f"Ses0{session}")
        dialog_dir = release / f"Session{session}" / "dialog"
        (dialog_dir / "EmoEvaluation" / "Categorical").mkdir(parents=True, exist_ok=True)
        (dialog_dir / "EmoEvaluation" / f"{dialog}.txt").write_text("".join(label_lines))
        (dialog_dir / "EmoEvaluation" / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 macOS fork")
        (dialog_dir / "transcriptions").mkdir(parents=True, exist_ok=True)
        (dialog_dir / "transcriptions" / f"{dialog}.txt").write_text("".join(transcript_lines))
    return expected


VCTK_SPEAKERS = ("p225", "p226", "p315", "s5")


def fake_vctk(root: Path, work: Path, per_speaker: int = 4) -> dict[str, str]:
    """``root/VCTK-Corpus-0.92/wav48_silence_trimmed/<spk>/<spk>_NNN_mic{1,2}.flac`` at 48 kHz + ``txt/``.

    p315 has no transcripts, as in the release. Returns utterance id -> text of the kept ones.
    """
    release = root / "VCTK-Corpus-0.92"
    speakers = synth_utterances(work, len(VCTK_SPEAKERS), per_speaker, sample_rate=48000)
    expected = {}
    for speaker, utterances in zip(VCTK_SPEAKERS, speakers, strict=True):
        for index, (samples, words, _) in enumerate(utterances, start=1):
            for mic in ("mic1", "mic2"):
                _write(
                    release / "wav48_silence_trimmed" / speaker / f"{speaker}_{index:03d}_{mic}.flac", samples, 48000
                )
            if speaker != "p315":
                text = words.capitalize() + "."
                (release / "txt" / speaker).mkdir(parents=True, exist_ok=True)
                (release / "txt" / speaker / f"{speaker}_{index:03d}.txt").write_text(text + "\n")
                expected[f"{speaker}-{index:03d}"] = text
    (release / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION COMMENTS\n")
    return expected


def iter_lines(path: Path) -> Iterator[list[str]]:
    """Fields of every line of a table."""
    for line in path.read_text().splitlines():
        yield line.split(" ", 1)
