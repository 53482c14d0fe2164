"""Converting data dirs with a trained s2s run, and scoring the conversions.

``convert_data_dir`` regenerates every utterance of a data dir in a chosen speaker's voice (one
speaker for all, or each utterance to the next speaker of the run's table after its own:
``rotate``) and vocodes it. ``evaluate_s2s`` converts each utterance to another speaker and
reports, by an sv run, the cosine of the conversions to the target and to the source speaker's
centroid (and target speaker-ID accuracy), by an ASR run their WER/CER, plus the reconstruction
MCD (own voice) of the decoder's log-mels against the recordings'.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from audiossl.data.kaldi import read_table
from audiossl.downstream.task import eval_batches
from audiossl.downstream.trainer import load_downstream, read_run_info
from audiossl.errors import ConfigError
from audiossl.fileio import atomic_write
from audiossl_speecht5.s2s import S2STask, convert_frames, target_rows
from audiossl_speecht5.speech import Vocoder
from audiossl_speecht5.speech_eval import asr_scores, speaker_scores, write_generated


def load_s2s(run_dir: str | Path, device: str = "cpu"):
    """A trained s2s run (task, state, upstream, head) in eval mode."""
    info = read_run_info(run_dir)
    if info.get("task") != S2STask.name:
        raise ConfigError(f"this run trained task {info.get('task')!r}, not s2s", run_dir)
    return load_downstream(run_dir, task=S2STask(**info.get("task_options", {})), device=device)


@torch.no_grad()
def convert_data_dir(
    run_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    speaker: str | None = None,
    vocoder: str | Path | None = None,
    seed: int = 0,
) -> tuple[Path, dict[str, str], dict[str, str]]:
    """Convert every utterance of ``data_dir`` into ``out_dir`` (a data dir); returns it, targets and sources.

    ``speaker`` None rotates: each utterance goes to the speaker after its own in the run's table.
    """
    model = load_s2s(run_dir)
    names = model.state["speakers"]
    sources = read_table(Path(data_dir) / "utt2spk")
    if speaker is not None:
        target_rows(names, [speaker], run_dir)  # an unknown name fails before any work
    targets = {}
    for utt, source in sources.items():
        if speaker is not None:
            targets[utt] = speaker
        else:
            row = names.index(source) if source in names else -1
            targets[utt] = names[(row + 1) % len(names)]
    render = Vocoder(model.head.config.mel, vocoder)
    torch.manual_seed(seed)
    waves = {}
    for batch, hidden, lengths in eval_batches(model.upstream, data_dir, ()):
        rows = target_rows(names, [targets[u] for u in batch.ids], run_dir).to(hidden.device)
        mels, frames = convert_frames(model.head, hidden, lengths, rows, model.task.max_frames)
        for i, utt in enumerate(batch.ids):
            waves[utt] = render(mels[i, : int(frames[i])])
    text_path = Path(data_dir) / "text"
    text = read_table(text_path) if text_path.is_file() else None
    out = write_generated(Path(out_dir), waves, model.head.config.mel.sample_rate, text, targets)
    return out, targets, sources


def evaluate_s2s(
    run_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    vocoder: str | Path | None = None,
    asr_run: str | Path | None = None,
    sv_run: str | Path | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Convert each utterance to the next speaker and score it; metrics also in OUT/metrics.json."""
    from audiossl.downstream.trainer import evaluate_downstream

    out_dir = Path(out_dir)
    info = read_run_info(run_dir)
    task = S2STask(**info.get("task_options", {}))
    metrics = {
        f"reconstruction_{k}": v
        for k, v in evaluate_downstream(run_dir, data_dir, out_dir / "reconstruction", task=task, device="cpu").items()
    }
    converted, targets, sources = convert_data_dir(run_dir, data_dir, out_dir / "converted", vocoder=vocoder, seed=seed)
    if sv_run is not None:
        to_target = speaker_scores(sv_run, {"converted": converted}, Path(data_dir), targets)
        to_source = speaker_scores(sv_run, {"converted": converted}, Path(data_dir), sources)
        metrics["converted_target_cosine"] = to_target["converted_speaker_cosine"]
        metrics["converted_target_id_accuracy"] = to_target["converted_speaker_id_accuracy"]
        metrics["converted_source_cosine"] = to_source["converted_speaker_cosine"]
        metrics["converted_source_id_accuracy"] = to_source["converted_speaker_id_accuracy"]
    if asr_run is not None and (Path(data_dir) / "text").is_file():
        metrics.update({f"converted_{k}": v for k, v in asr_scores(asr_run, converted, out_dir / "asr").items()})
    with atomic_write(out_dir / "metrics.json") as handle:
        json.dump({"run_dir": str(run_dir), "data_dir": str(data_dir), "metrics": metrics}, handle, indent=2)
        handle.write("\n")
    return metrics
