"""Scoring generated speech: MCD-DTW against references, CER by an ASR run, speaker similarity by an sv run.

Used by ``audiossl tts evaluate`` and ``audiossl s2s evaluate``. Generated waveforms are written
as a Kaldi data dir (``wav/<utt>.wav``, ``wav.scp``, ``text``, ``utt2spk``), so any audiossl
tool can read them; the ASR run decodes that dir (:func:`audiossl_asr.recognize.decode_run`)
and the sv run embeds it (:func:`audiossl_sv.evaluation.embed_data_dir`).

Speaker similarity: the cosine between the sv embedding of each generated utterance and the
centroid of the target speaker's reference utterances (mean of their embeddings, the
utterance itself left out when it is one of them), and the speaker-identification accuracy:
how often the target centroid is the closest of all speakers' centroids.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiossl.data.kaldi import DataDir
from audiossl.fileio import atomic_path
from audiossl_speecht5.metrics import MCDAnalysis, corpus_mcd


def write_generated(
    out_dir: Path,
    waveforms: Mapping[str, torch.Tensor],
    sample_rate: int,
    text: Mapping[str, str] | None,
    utt2spk: Mapping[str, str],
) -> Path:
    """Write ``waveforms`` as a data dir in ``out_dir`` (16-bit wavs, atomic); returns it."""
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    data = DataDir(text={} if text is not None else None)
    for utt, wave in waveforms.items():
        path = (wav_dir / f"{utt}.wav").resolve()
        samples = np.clip(wave.detach().float().cpu().numpy(), -1.0, 1.0)
        with atomic_path(path) as tmp:
            sf.write(tmp, samples, sample_rate, subtype="PCM_16", format="WAV")
        data.wav_scp[utt] = str(path)
        data.utt2spk[utt] = utt2spk[utt]
        if text is not None:
            data.text[utt] = text[utt]
    data.save(out_dir)
    return out_dir


def mcd_against(
    references: Mapping[str, np.ndarray], generated: Mapping[str, torch.Tensor], sample_rate: int
) -> dict[str, float]:
    """Corpus MCD-DTW of generated waveforms against reference waveforms (same ids)."""
    analysis = MCDAnalysis(sample_rate)
    pairs = [(analysis(references[utt]), analysis(generated[utt].numpy())) for utt in generated]
    return corpus_mcd(pairs).as_dict()


def asr_scores(asr_run: str | Path, data_dir: Path, out_dir: Path) -> dict[str, float]:
    """WER/CER of an ASR run on a generated data dir (it has the intended text)."""
    from audiossl_asr.recognize import decode_run

    result = decode_run(asr_run, data_dir, out_dir, device="cpu")
    return {"wer": result.score.wer.rate, "cer": result.score.cer.rate}


def speaker_scores(
    sv_run: str | Path, generated_dirs: Mapping[str, Path], reference_dir: Path, targets: Mapping[str, str]
) -> dict[str, float]:
    """Per generated set: mean cosine to the target speaker's reference centroid and speaker-ID accuracy.

    ``targets`` maps generated utterance -> intended speaker; reference speakers come from
    ``reference_dir``'s utt2spk.
    """
    from audiossl.downstream.trainer import load_downstream
    from audiossl_sv.evaluation import embed_data_dir

    model = load_downstream(sv_run, device="cpu")
    reference = DataDir.load(reference_dir)
    ref_vectors = embed_data_dir(model.upstream, reference_dir, head=model.head)
    unit = {u: v / max(np.linalg.norm(v), 1e-12) for u, v in ref_vectors.items()}
    by_speaker: dict[str, list[str]] = {}
    for utt, spk in reference.utt2spk.items():
        by_speaker.setdefault(spk, []).append(utt)
    sums = {spk: np.sum([unit[u] for u in utts], axis=0) for spk, utts in by_speaker.items()}
    out: dict[str, float] = {}
    for name, directory in generated_dirs.items():
        vectors = embed_data_dir(model.upstream, directory, head=model.head)
        cosines, correct = [], 0
        for utt, vector in vectors.items():
            vector = vector / max(np.linalg.norm(vector), 1e-12)
            centroids = {}
            for spk, total in sums.items():
                members = len(by_speaker[spk])
                if utt in unit and reference.utt2spk.get(utt) == spk and members > 1:  # leave the utterance out
                    centroids[spk] = (total - unit[utt]) / (members - 1)
                else:
                    centroids[spk] = total / members
            scores = {spk: float(vector @ c / max(np.linalg.norm(c), 1e-12)) for spk, c in centroids.items()}
            cosines.append(scores[targets[utt]])
            correct += max(scores, key=scores.get) == targets[utt]
        out[f"{name}_speaker_cosine"] = float(np.mean(cosines))
        out[f"{name}_speaker_id_accuracy"] = correct / max(len(vectors), 1)
    return out
