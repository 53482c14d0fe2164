"""Score an enhancement or separation run on a pair / mixture dir: metrics, reports, spectrogram plots.

Every utterance is resynthesised from its masked magnitude with the input's phase (inverse
STFT to the input's length), then scored against its targets:

* ``se``: PESQ (wide-band), STOI and SI-SNR of the enhanced and of the noisy signal, and their
  improvements (enhanced minus noisy);
* ``ss``: SI-SDR of each estimate against its source, estimates matched to sources by the best
  permutation, and SI-SDR improvement over the mixture taken as the estimate of every source
  (SUPERB's SS metric).

Writes ``report.md`` (means and the first utterances), ``report.json`` (means and every
utterance), ``spectrograms/<utt>.png`` (input / estimate(s) / target(s) for the first
``plots`` utterances) and their estimates as ``audio/<utt>-<k>.wav``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import torch

from audiossl.data.kaldi import DataDir
from audiossl.downstream.task import eval_batches
from audiossl.fileio import atomic_path, atomic_write
from audiossl.progress import progress
from audiossl_enhance.metrics import best_permutation, pesq_wb, si_sdr, si_snr, stoi
from audiossl_enhance.spectral import istft

if TYPE_CHECKING:
    from audiossl_enhance.head import MaskHead
    from audiossl_enhance.task import MaskTask

#: Utterance rows shown in report.md.
REPORT_ROWS = 20


def separate(
    task: MaskTask, head: MaskHead, hidden: torch.Tensor, lengths: torch.Tensor, waveforms, wave_lengths
) -> list[torch.Tensor]:
    """Each item's estimated sources (K, T_b): masked magnitude with the input's phase, inverse STFT."""
    spec, frames, masks = task.masks(head, hidden, lengths, waveforms, wave_lengths)
    out = []
    for b, (count, length) in enumerate(zip(frames.tolist(), wave_lengths.tolist(), strict=True)):
        estimates = masks[b, :, :count] * spec[b, :count][None]  # mask * |X| * e^{j angle X} = mask * X
        out.append(torch.stack([istft(est, task.stft, int(length)) for est in estimates]))
    return out


def score_enhancement(clean: torch.Tensor, noisy: torch.Tensor, enhanced: torch.Tensor, rate: int) -> dict[str, float]:
    """PESQ, STOI and SI-SNR of the enhanced and the noisy signal (T,) against the clean one, and improvements."""
    row = {
        "PESQ": pesq_wb(clean, enhanced, rate),
        "PESQ_noisy": pesq_wb(clean, noisy, rate),
        "STOI": stoi(clean, enhanced, rate),
        "STOI_noisy": stoi(clean, noisy, rate),
        "SI-SNR": float(si_snr(enhanced, clean)),
        "SI-SNR_noisy": float(si_snr(noisy, clean)),
    }
    row["PESQ_improvement"] = row["PESQ"] - row["PESQ_noisy"]
    row["STOI_improvement"] = row["STOI"] - row["STOI_noisy"]
    row["SI-SNRi"] = row["SI-SNR"] - row["SI-SNR_noisy"]
    return row


def score_separation(sources: torch.Tensor, mixture: torch.Tensor, estimates: torch.Tensor) -> dict[str, float]:
    """SI-SDR (best permutation) of ``estimates`` (K, T) vs ``sources`` (K, T); its improvement over the mixture."""
    pairwise = si_sdr(estimates[:, None, :], sources[None, :, :])  # (K_est, K_ref)
    perm = best_permutation(pairwise, maximize=True)
    matched = torch.stack([pairwise[perm[k], k] for k in range(sources.shape[0])])
    baseline = si_sdr(mixture.expand_as(sources), sources)  # (K,)
    return {
        "SI-SDR": float(matched.mean()),
        "SI-SDR_mixture": float(baseline.mean()),
        "SI-SDRi": float((matched - baseline).mean()),
        "permutation": "".join(str(p) for p in perm),
    }


def evaluate_task(task: MaskTask, head: MaskHead, upstream, data_dir: Path, out_dir: Path) -> dict[str, float]:
    """Score every utterance of ``data_dir``; reports and plots into ``out_dir``; returns the means."""
    rate = int(upstream.sample_rate)
    rows: dict[str, dict] = {}
    to_plot = set(DataDir.load(data_dir).utterance_ids[: task.plots])  # the first in Kaldi order
    batches = eval_batches(upstream, data_dir, task.labels, batch_seconds=60.0)
    for batch, hidden, lengths in progress(batches, f"evaluate {task.name}", unit="batch"):
        batch = batch.to(upstream.device)
        estimates = separate(task, head, hidden, lengths, batch.waveforms, batch.lengths)
        targets = task.targets(batch, sample_rate=rate)
        for b, utt in enumerate(batch.ids):
            inputs = batch.waveforms[b, : int(batch.lengths[b])].cpu()
            est, ref = estimates[b].cpu(), targets[b].cpu()
            if task.sources == 1:
                rows[utt] = score_enhancement(ref[0], inputs, est[0], rate)
            else:
                rows[utt] = score_separation(ref, inputs, est)
                est = est[[int(index) for index in rows[utt]["permutation"]]]  # estimate k goes with source k
            if utt in to_plot:
                plot_utterance(out_dir / "spectrograms" / f"{utt}.png", utt, task, inputs, est, ref, rate)
                for k, wave in enumerate(est):
                    with atomic_path(out_dir / "audio" / f"{utt}-{k + 1}.wav") as tmp:
                        sf.write(tmp, wave.numpy(), rate, subtype="FLOAT", format="WAV")
    means = mean_metrics(rows)
    write_reports(out_dir, task.name, means, rows)
    return means


def mean_metrics(rows: dict[str, dict]) -> dict[str, float]:
    """Mean of every numeric metric over utterances (NaN entries, e.g. PESQ on silence, left out)."""
    names = [name for name, value in next(iter(rows.values())).items() if isinstance(value, float)] if rows else []
    means = {}
    for name in names:
        values = [row[name] for row in rows.values() if not math.isnan(row[name])]
        means[name] = float(np.mean(values)) if values else math.nan
    means["utterances"] = float(len(rows))
    return means


def write_reports(out_dir: Path, task_name: str, means: dict[str, float], rows: dict[str, dict]) -> None:
    """``report.json`` (means + every utterance) and ``report.md`` (means + the first utterances)."""
    with atomic_write(out_dir / "report.json") as handle:
        json.dump({"task": task_name, "mean": means, "utterances": rows}, handle, indent=2)
        handle.write("\n")
    names = [name for name in means if name != "utterances"]
    lines = [
        f"# {task_name} evaluation",
        "",
        f"{int(means['utterances'])} utterances.",
        "",
        "| metric | mean |",
        "|---|---|",
    ]
    lines += [f"| {name} | {means[name]:.4f} |" for name in names]
    shown = list(rows.items())[:REPORT_ROWS]
    columns = [name for name in names if name in (shown[0][1] if shown else {})]
    lines += ["", "| utterance | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {utt} | " + " | ".join(f"{row[name]:.3f}" for name in columns) + " |" for utt, row in shown]
    if len(rows) > REPORT_ROWS:
        lines.append(f"\n({len(rows) - REPORT_ROWS} more in report.json)")
    with atomic_write(out_dir / "report.md") as handle:
        handle.write("\n".join(lines) + "\n")


def plot_utterance(
    path: Path,
    utt: str,
    task: MaskTask,
    inputs: torch.Tensor,
    estimates: torch.Tensor,
    targets: torch.Tensor,
    rate: int,
) -> Path:
    """Log-magnitude spectrograms, one panel per row: input, estimate(s), target(s); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from audiossl_enhance.spectral import stft

    noun = "noisy" if task.sources == 1 else "mixture"
    panels = [(noun, inputs)]
    panels += [(f"estimate {k + 1}" if task.sources > 1 else "enhanced", est) for k, est in enumerate(estimates)]
    panels += [(f"source {k + 1}" if task.sources > 1 else "clean", ref) for k, ref in enumerate(targets)]
    figure = Figure(figsize=(8, 1.8 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    duration = inputs.numel() / rate
    for axis, (title, wave) in zip(axes, panels, strict=True):
        power = 20.0 * torch.log10(stft(wave, task.stft).abs().clamp_min(1e-5)).T.numpy()  # (F, N)
        image = axis.imshow(
            power, origin="lower", aspect="auto", extent=(0, duration, 0, rate / 2000), vmin=-80, vmax=power.max()
        )
        axis.set_ylabel("kHz")
        axis.set_title(f"{utt}: {title}", fontsize=9)
    axes[-1].set_xlabel("seconds")
    figure.colorbar(image, ax=list(axes), label="dB")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    return path
