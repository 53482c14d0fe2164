"""Data-loader benchmark: the default loader vs the fairseq2 backend, utterances/s and audio seconds/s.

Contenders (``audiossl.train.data.create_train_data`` with ``data.backend``/``num_workers``/``fairseq2_fbank``):

* ``default w0``     torch DataLoader over AudioDataset (soundfile), loading in the consumer process
* ``default w2``     the same with 2 worker processes (the shipped default, the ratios' reference)
* ``fairseq2 p2``    fairseq2 0.8.1's native pipeline: FileMapper + AudioDecoder in 2 C++ parallel calls
* ``fairseq2 p2 fb`` the same plus fairseq2's Kaldi fbank in those calls (``data.fairseq2_fbank``)
* ``shar w0``/``shar w2`` ``data.backend: shar`` over the corpus exported by ``audiossl data export-shar``
  (shards of 100 utterances, audio as stored: wav), 1 in-process stream or 2 worker streams

Two measurements per contender: ``batches`` = one epoch of padded waveform batches, and
``features`` = one epoch of encoder inputs, i.e. each batch also goes through
``Objective.batch_inputs`` (our batched Kaldi fbank in the consumer, or only the
normalisation when fairseq2 computed the fbank). Batch membership is our sampler's in all
cases but shar's, so every other contender delivers the same batches; that is checked before timing (ids,
waveforms, and the fbank difference). The shar backend forms its own batches (per-stream bucketing), so for it
the check is the epoch's multiset of utterance ids and its total samples (the same crop windows).

Corpora, built in a temporary directory (never in the repo): FSDD's training split (8 kHz,
short digits; ``--fsdd``), and synthetic long audio at 16 kHz (``--long`` utterances of 30-60 s, 40 by default)
read whole and cropped to 10 s windows (``data.max_utt_seconds``, the pretraining default).

Each repeat runs every contender once, alternating (A B C D, A B C D, ...), after one warm-up
round; medians over ``--repeats``. torch runs 1 thread in the consumer (workers get 1 each).

Usage: ``.venv/bin/python bench/loaders.py [--repeats 5] [--long 40] [--json out.json]``.
Results go to ``bench/results/loaders.json`` unless ``--json`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiossl.data.fsdd import prepare_fsdd  # noqa: E402
from audiossl.data.kaldi import DataDir  # noqa: E402
from audiossl.objectives.base import pipeline_features  # noqa: E402
from audiossl.train.config import DataConfig, PretrainConfig, frontend_settings  # noqa: E402
from audiossl.train.data import create_train_data  # noqa: E402
from audiossl.train.inputs import InputPipeline  # noqa: E402

CONTENDERS = {
    "default w0": {"backend": "default", "num_workers": 0},
    "default w2": {"backend": "default", "num_workers": 2},
    "fairseq2 p2": {"backend": "fairseq2", "num_workers": 2},
    "fairseq2 p2 fb": {"backend": "fairseq2", "num_workers": 2, "fairseq2_fbank": True},
    "shar w0": {"backend": "shar", "num_workers": 0},
    "shar w2": {"backend": "shar", "num_workers": 2},
}
SHAR_SHARD_SIZE = 100
REFERENCE = "default w2"


def long_audio(root: Path, count: int, sample_rate: int = 16000, seed: int = 0) -> Path:
    """``count`` utterances of 30-60 s: harmonics of a wandering F0 under a syllable envelope, plus noise."""
    rng = np.random.default_rng(seed)
    data = DataDir(utt2dur={})
    for index in range(count):
        samples = int(rng.uniform(30.0, 60.0) * sample_rate)
        t = np.arange(samples) / sample_rate
        f0 = 90 + 120 * rng.random()
        phase = 2 * math.pi * np.cumsum(f0 * (1 + 0.15 * np.sin(2 * math.pi * 2.5 * t))) / sample_rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
        envelope = (0.5 + 0.5 * np.sin(2 * math.pi * 4 * t + 6 * rng.random())) ** 2
        wave = 0.1 * envelope * voiced + 0.01 * rng.standard_normal(samples)
        path = root / "wav" / f"long{index:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, wave.astype(np.float32), sample_rate, subtype="PCM_16")
        data.wav_scp[path.stem] = str(path)
        data.utt2dur[path.stem] = samples / sample_rate
    data.save(root / "data")
    return root / "data"


def corpora(tmp: Path, fsdd: Path, long_count: int) -> dict[str, tuple[Path, dict[str, Any]]]:
    """name -> (data dir, DataConfig fields)."""
    found = {}
    if fsdd.is_dir():
        prepare_fsdd(fsdd, tmp / "fsdd")
        found["fsdd train (8 kHz)"] = (tmp / "fsdd" / "train", {"sample_rate": 8000, "max_utt_seconds": 10.0})
    else:
        print(f"FSDD not found at {fsdd}: skipped")
    if long_count:
        folder = long_audio(tmp / "long", long_count)
        found["long 30-60 s, crop 10 s"] = (folder, {"sample_rate": 16000, "max_utt_seconds": 10.0})
        found["long 30-60 s, whole"] = (folder, {"sample_rate": 16000, "max_utt_seconds": None})
    return found


def data_config(fields: dict[str, Any], contender: dict[str, Any]) -> DataConfig:
    return DataConfig(
        **fields,
        max_seconds_per_batch=100.0 if fields["max_utt_seconds"] else 200.0,
        frontend="fbank",
        frontend_config={"num_mel_bins": 80},
        normalize="none",
        **contender,
    )


def epoch(loader: Any, inputs: InputPipeline | None) -> tuple[int, float]:
    """Consume one epoch of batches (and their encoder inputs): (utterances, audio seconds)."""
    utterances, samples = 0, 0
    for batch, _ in loader.epoch_batches():
        if inputs is not None:
            features = pipeline_features(batch, inputs)[0]
            assert features.shape[0] == len(batch.ids)
        utterances += len(batch.ids)
        samples += int(batch.lengths.sum())
    return utterances, samples


def check(loaders: dict[str, Any], inputs: InputPipeline) -> dict[str, float]:
    """Every contender's batches against the reference's: same ids, waveform and feature differences."""
    reference = list(loaders[REFERENCE].epoch_batches())
    diffs = {}
    for name, loader in loaders.items():
        waveform_diff, feature_diff = 0.0, 0.0
        batches = list(loader.epoch_batches())
        if CONTENDERS[name]["backend"] == "shar":  # its own batches: the same utterances and samples
            got_ids = sorted(utt for batch, _ in batches for utt in batch.ids)
            assert got_ids == sorted(utt for batch, _ in reference for utt in batch.ids), name
            samples = sum(int(batch.lengths.sum()) for batch, _ in batches)
            assert samples == sum(int(batch.lengths.sum()) for batch, _ in reference), name
            diffs[name] = {"waveform_max_abs_diff": math.nan, "feature_max_abs_diff": math.nan}
            continue
        assert len(batches) == len(reference), name
        for (expected, _), (got, _) in zip(reference, batches, strict=True):
            assert got.ids == expected.ids, name
            waveform_diff = max(waveform_diff, float((got.waveforms - expected.waveforms).abs().max()))
            ours = pipeline_features(expected, inputs)[0]
            theirs = pipeline_features(got, inputs)[0]
            feature_diff = max(feature_diff, float((ours - theirs).abs().max()))
        diffs[name] = {"waveform_max_abs_diff": waveform_diff, "feature_max_abs_diff": feature_diff}
    return diffs


def bench_corpus(data_dir: Path, fields: dict[str, Any], repeats: int) -> dict[str, Any]:
    from audiossl.data.shar import export_shar

    shar_dir = data_dir.parent / f"{data_dir.name}-shar"
    export_shar(data_dir, shar_dir, shard_size=SHAR_SHARD_SIZE)  # a second corpus's export resumes (same dir)
    loaders = {
        name: create_train_data([shar_dir if c["backend"] == "shar" else data_dir], data_config(fields, c))
        for name, c in CONTENDERS.items()
    }
    config = data_config(fields, {})
    inputs = InputPipeline(config, frontend_settings(PretrainConfig(data=config)))
    diffs = check(loaders, inputs)
    cases = [(name, mode) for mode in ("batches", "features") for name in CONTENDERS]
    cases.remove(("fairseq2 p2 fb", "batches"))  # its batches are the features case
    times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    counts = {}
    for round_index in range(repeats + 1):  # round 0 is the warm-up
        for name, mode in cases:
            start = time.perf_counter()
            counts[name, mode] = epoch(loaders[name], inputs if mode == "features" else None)
            if round_index:
                times[name, mode].append(time.perf_counter() - start)
    rows = []
    for (name, mode), values in times.items():
        utterances, samples = counts[name, mode]
        median = statistics.median(values)
        reference = statistics.median(times[REFERENCE, mode])
        in_process = statistics.median(times["default w0", mode])
        rows.append(
            {
                "contender": name,
                "mode": mode,
                "utterances": utterances,
                "audio_seconds": samples / fields["sample_rate"],
                "median_s": median,
                "min_s": min(values),
                "max_s": max(values),
                "times_s": values,
                "utt_per_s": utterances / median,
                "audio_s_per_s": samples / fields["sample_rate"] / median,
                "speedup_vs_default_w2": reference / median,
                "speedup_vs_default_w0": in_process / median,
            }
        )
    return {"data_dir": str(data_dir), "fields": fields, "rows": rows, "check": diffs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--long", type=int, default=40, help="synthetic 30-60 s utterances (0 = none)")
    parser.add_argument("--fsdd", type=Path, default=REPO / "../shared/data/fsdd/recordings")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "loaders.json")
    args = parser.parse_args()
    import fairseq2

    from audiossl.fileio import atomic_write

    torch.set_num_threads(1)
    report: dict[str, Any] = {
        "benchmark": "loaders",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "fairseq2": getattr(fairseq2, "__version__", "unknown"),
        "command": " ".join([".venv/bin/python", "bench/loaders.py", *sys.argv[1:]]),
        "repeats": args.repeats,
        "load_average_before": os.getloadavg(),
        "corpora": {},
    }
    with tempfile.TemporaryDirectory(prefix="audiossl-bench-loaders-") as tmp:
        for name, (data_dir, fields) in corpora(Path(tmp), args.fsdd, args.long).items():
            report["corpora"][name] = bench_corpus(data_dir, fields, args.repeats)
    report["load_average_after"] = os.getloadavg()
    print(f"{report['date']}  cores {report['cores']}  torch {report['torch']}  fairseq2 {report['fairseq2']}")
    loads = [f"{value:.1f}" for value in (report["load_average_before"][0], report["load_average_after"][0])]
    print(f"1-min load average before/after: {' / '.join(loads)}; {args.repeats} repeats, medians")
    for corpus, result in report["corpora"].items():
        first = result["rows"][0]
        print(f"\n{corpus}: {first['utterances']} utterances, {first['audio_seconds']:.0f} s of audio per epoch")
        header = (
            f"{'contender':15s} {'mode':9s} {'median s':>9s} {'min-max s':>13s} {'utt/s':>8s} {'audio s/s':>9s} "
            f"{'x w2':>6s} {'x w0':>6s}"
        )
        print(header)
        print("-" * len(header))
        for row in result["rows"]:
            spread = f"{row['min_s']:.2f}-{row['max_s']:.2f}"
            print(
                f"{row['contender']:15s} {row['mode']:9s} {row['median_s']:9.3f} {spread:>13s} "
                f"{row['utt_per_s']:8.0f} {row['audio_s_per_s']:9.0f} {row['speedup_vs_default_w2']:6.2f} "
                f"{row['speedup_vs_default_w0']:6.2f}"
            )
        for name, diff in result["check"].items():
            print(
                f"  check {name}: waveforms max abs diff {diff['waveform_max_abs_diff']:.1e}, "
                f"features {diff['feature_max_abs_diff']:.1e}"
            )
    with atomic_write(args.json) as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
