"""``audiossl tts evaluate``: synthesise a data dir's sentences in its speakers' voices and score them.

For every utterance of the data dir the run synthesises its ``text`` with its ``utt2spk`` speaker
(``synth/``), and the vocoder also renders the ground-truth log-mel of the recording
(``resynth/``: the ceiling the vocoder allows). Both are scored against the recordings:

* MCD with DTW (:mod:`audiossl_speecht5.metrics`), in dB;
* WER/CER of an ASR run (``--asr``) on the generated audio, and on the recordings for reference;
* speaker similarity by an sv run (``--sv``): cosine to the speaker's centroid and speaker-ID accuracy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from audiossl.data.dataset import AudioDataset
from audiossl.data.kaldi import read_entries
from audiossl.fileio import atomic_write
from audiossl.progress import progress
from audiossl_speecht5.speech import Vocoder
from audiossl_speecht5.speech_eval import asr_scores, mcd_against, speaker_scores, write_generated
from audiossl_speecht5.tts import load_tts, synthesize_mels

logger = logging.getLogger("audiossl.tts")


def evaluate_tts(
    run_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    vocoder: str | Path | None = None,
    asr_run: str | Path | None = None,
    sv_run: str | Path | None = None,
    max_frames: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, float]:
    """Synthesise, resynthesise and score every utterance of ``data_dir``; metrics also in OUT/metrics.json."""
    run_dir, data_dir, out_dir = Path(run_dir), Path(data_dir), Path(out_dir)
    description, model = load_tts(run_dir)
    mel_config = model.backbone.config.mel
    render = Vocoder(mel_config, vocoder)
    dataset = AudioDataset(data_dir, sample_rate=mel_config.sample_rate, labels=("text", "spk"))
    text_path = data_dir / "text"
    lines = {e.key: e.line for e in read_entries(text_path)}
    torch.manual_seed(seed)  # the pre-net's dropout stays on at inference
    synth, resynth, originals, texts, speakers = {}, {}, {}, {}, {}
    order = list(range(len(dataset)))
    for start in progress(range(0, len(order), batch_size), desc="synthesise", total=-(-len(order) // batch_size)):
        items = [dataset[i] for i in order[start : start + batch_size]]
        mels = synthesize_mels(
            model,
            description,
            [item.labels["text"] for item in items],
            [item.labels["spk"] for item in items],
            max_frames=max_frames,
            where=[(text_path, lines.get(item.id)) for item in items],
            run_dir=run_dir,
        )
        for item, mel in zip(items, mels, strict=True):
            synth[item.id] = render(mel)
            target, frames = model.backbone.mel(item.waveform[None], torch.tensor([item.waveform.shape[0]]))
            resynth[item.id] = render(target[0, : int(frames[0])])
            originals[item.id] = item.waveform.numpy()
            texts[item.id], speakers[item.id] = item.labels["text"], item.labels["spk"]
    rate = mel_config.sample_rate
    synth_dir = write_generated(out_dir / "synth", synth, rate, texts, speakers)
    resynth_dir = write_generated(out_dir / "resynth", resynth, rate, texts, speakers)
    metrics: dict[str, float] = {"utterances": float(len(synth))}
    metrics.update({f"synth_{k}": v for k, v in mcd_against(originals, synth, rate).items()})
    metrics.update({f"resynth_{k}": v for k, v in mcd_against(originals, resynth, rate).items()})
    if asr_run is not None:
        for name, directory in (("synth", synth_dir), ("resynth", resynth_dir), ("recorded", data_dir)):
            scores = asr_scores(asr_run, directory, out_dir / f"asr_{name}")
            metrics.update({f"{name}_{k}": v for k, v in scores.items()})
    if sv_run is not None:
        metrics.update(speaker_scores(sv_run, {"synth": synth_dir, "resynth": resynth_dir}, data_dir, speakers))
    report = {
        "run_dir": str(run_dir.resolve()),
        "data_dir": str(data_dir.resolve()),
        "vocoder": render.name,
        "asr_run": None if asr_run is None else str(asr_run),
        "sv_run": None if sv_run is None else str(sv_run),
        "metrics": metrics,
    }
    with atomic_write(out_dir / "metrics.json") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return metrics
