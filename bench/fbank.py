"""Front-end benchmark: 128-bin fbank of 64 utterances x 10 s at 16 kHz.

Contenders, alternated (A B C D E, A B C D E, ...) after one warm-up call each:

* ``audiossl.fbank``        one call on the padded batch (B, T) -> (B, F, 128)
* ``torchaudio loop``       ``torchaudio.compliance.kaldi.fbank`` per utterance (the reference)
* ``fairseq2 loop``         fairseq2's ``WaveformToFbankConverter`` per utterance (skipped with a reason if it fails)
* ``librosa loop``          ``power_to_db(melspectrogram(n_fft=512, hop=160, win=400, n_mels=128))`` per utterance
* ``audiossl.log_mel``      the same librosa computation, one call on the padded batch

torch contenders run under ``torch.set_num_threads(n)``; librosa uses numpy, whose BLAS
threads are limited to ``n`` with threadpoolctl (its FFT is single-threaded). Every run also
checks correctness: the max abs difference of each Kaldi-style contender against the
torchaudio loop, and of ``audiossl.log_mel`` against the librosa loop (in dB).

Usage: ``.venv/bin/python bench/fbank.py [--repeats 5] [--threads 1,2] [--json out.json]``.
Results go to ``bench/results/fbank.json`` unless ``--json`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiossl.audio import fbank, log_mel  # noqa: E402

SAMPLE_RATE = 16000


def speech_like_batch(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """(B, T) float32: harmonics of a wandering F0 under a syllable-rate envelope, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    samples = int(seconds * SAMPLE_RATE)
    t = torch.arange(samples, dtype=torch.float64) / SAMPLE_RATE
    rows = []
    for _ in range(batch):
        f0 = 90 + 120 * float(torch.rand(1, generator=generator))
        phase = 2 * math.pi * torch.cumsum(f0 * (1 + 0.15 * torch.sin(2 * math.pi * 2.5 * t)), 0) / SAMPLE_RATE
        voiced = sum(torch.sin(k * phase) / k for k in range(1, 25))
        envelope = (0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t + 6 * float(torch.rand(1, generator=generator)))) ** 2
        noise = torch.randn(samples, generator=generator, dtype=torch.float64)
        rows.append(0.1 * envelope * voiced + 0.01 * noise)
    return torch.stack(rows).float()


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def make_contenders(waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[dict[str, Callable], dict[str, str]]:
    """name -> zero-argument callable returning its features; and name -> reason for skipped ones."""
    import librosa
    import torchaudio.compliance.kaldi as kaldi

    # Own storage per utterance: fairseq2 0.8.1's converter ignores a view's storage offset and
    # would read row 0 for every row of the batch (the correctness check below caught it).
    signals = [waveforms[row, : int(n)].clone() for row, n in enumerate(lengths)]
    numpy_signals = [signal.numpy() for signal in signals]
    contenders: dict[str, Callable] = {
        "audiossl.fbank": lambda: fbank(waveforms, lengths, num_mel_bins=128),
        "torchaudio loop": lambda: [
            kaldi.fbank(s.unsqueeze(0), num_mel_bins=128, dither=0.0, energy_floor=0.0) for s in signals
        ],
    }
    skipped = {}
    try:
        from fairseq2.data.audio import WaveformToFbankConverter

        converter = WaveformToFbankConverter(num_mel_bins=128, dtype=torch.float32)
        converter({"waveform": signals[0].unsqueeze(0), "sample_rate": SAMPLE_RATE})  # fails here if unusable
        contenders["fairseq2 loop"] = lambda: [
            converter({"waveform": s.unsqueeze(0), "sample_rate": SAMPLE_RATE})["fbank"] for s in signals
        ]
    except Exception as error:  # any failure of the optional peer: report it, keep benchmarking
        skipped["fairseq2 loop"] = f"{type(error).__name__}: {error}"

    def librosa_loop() -> list[np.ndarray]:
        return [
            librosa.power_to_db(
                librosa.feature.melspectrogram(
                    y=y, sr=SAMPLE_RATE, n_fft=512, hop_length=160, win_length=400, n_mels=128
                )
            ).T
            for y in numpy_signals
        ]

    contenders["librosa loop"] = librosa_loop
    contenders["audiossl.log_mel"] = lambda: log_mel(waveforms, lengths, n_fft=512, hop_length=160, win_length=400)
    return contenders, skipped


def max_abs_diff(batched: tuple[torch.Tensor, torch.Tensor], reference: list) -> float:
    features, frame_lengths = batched
    worst = 0.0
    for row, expected in enumerate(reference):
        expected = torch.as_tensor(np.asarray(expected))
        got = features[row, : int(frame_lengths[row])]
        if got.shape != expected.shape:
            return math.inf
        worst = max(worst, float((got.double() - expected.double()).abs().max()))
    return worst


def run(threads: int, repeats: int, waveforms: torch.Tensor, lengths: torch.Tensor) -> dict:
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    contenders, skipped = make_contenders(waveforms, lengths)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    outputs = {}
    with threadpool_limits(limits=threads):
        for name, call in contenders.items():  # warm-up, and the outputs for the correctness check
            outputs[name] = call()
        for _ in range(repeats):
            for name, call in contenders.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    reference = outputs["torchaudio loop"]
    diffs = {
        "audiossl.fbank": max_abs_diff(outputs["audiossl.fbank"], reference),
        "audiossl.log_mel": max_abs_diff(outputs["audiossl.log_mel"], outputs["librosa loop"]),
    }
    if "fairseq2 loop" in outputs:
        frame_lengths = torch.tensor([len(f) for f in outputs["fairseq2 loop"]])
        stacked = torch.nn.utils.rnn.pad_sequence(outputs["fairseq2 loop"], batch_first=True)
        diffs["fairseq2 loop"] = max_abs_diff((stacked, frame_lengths), reference)
    ours = statistics.median(times["audiossl.fbank"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "contender": name,
                "threads": threads,
                "median_s": median,
                "min_s": min(values),
                "max_s": max(values),
                "times_s": values,
                "median_vs_audiossl_fbank": median / ours,
                "max_abs_diff": diffs.get(name),
                "diff_reference": "librosa loop (dB)" if name == "audiossl.log_mel" else "torchaudio loop",
            }
        )
    return {"threads": threads, "rows": rows, "skipped": skipped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "fbank.json")
    args = parser.parse_args()
    from audiossl.fileio import atomic_write

    waveforms = speech_like_batch(args.batch, args.seconds)
    lengths = torch.full((args.batch,), waveforms.shape[1])
    import fairseq2
    import librosa
    import torchaudio

    report = {
        "benchmark": "fbank",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "fairseq2": getattr(fairseq2, "__version__", "unknown"),
        "command": " ".join([".venv/bin/python", "bench/fbank.py", *sys.argv[1:]]),
        "batch": args.batch,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "load_average_before": os.getloadavg(),
        "runs": [run(int(n), args.repeats, waveforms, lengths) for n in args.threads.split(",")],
        "load_average_after": os.getloadavg(),
    }
    print(f"{report['date']}  {report['cpu']}  torch {report['torch']}  cores {os.cpu_count()}")
    loads = [f"{value:.1f}" for value in (*report["load_average_before"][:1], *report["load_average_after"][:1])]
    print(f"1-min load average before/after: {' / '.join(loads)} (other work on the machine inflates times)")
    print(f"{args.batch} utterances x {args.seconds:g} s at 16 kHz -> 128 mel bins; {args.repeats} repeats")
    header = f"{'contender':18s} {'thr':>3s} {'median s':>9s} {'min-max s':>15s} {'x ours':>7s} {'max abs diff':>13s}"
    print(header)
    print("-" * len(header))
    for result in report["runs"]:
        for row in result["rows"]:
            diff = "" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2e}"
            spread = f"{row['min_s']:.3f}-{row['max_s']:.3f}"
            print(
                f"{row['contender']:18s} {row['threads']:3d} {row['median_s']:9.3f} {spread:>15s} "
                f"{row['median_vs_audiossl_fbank']:7.2f} {diff:>13s}"
            )
        for name, reason in result["skipped"].items():
            print(f"{name:18s} {result['threads']:3d} skipped: {reason}")
    with atomic_write(args.json) as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
