"""Streaming data at corpus scale: start-up time and resident memory of the sampler + loader at 1k/10k/100k hours.

A synthetic corpus manifest per size, in the layout the shar backend streams: numbered lhotse cut
manifests ``cuts.NNNNNN.jsonl.gz`` (``--shard-cuts`` cuts each) plus an index with per-shard
counts and duration quantiles (as ``shar_index.json``). The cuts point at ``--files`` real
120 s wav files (16 kHz, generated once) with random starts and durations of 10-50 s (mean
30 s, long-form segments); lines are generated as text per shard and gzip'd (level 1), so the
manifest never sits in memory. Generation time and disk size are reported per size.

Each measurement runs in a fresh process (``/proc/self/statm`` resident memory) that does what
one ``data.backend: shar`` stream does: reads the index, orders the shards from the seed,
streams the cuts lazily (lhotse ``CutSet.from_files``), crops to 10 s windows with the
backend's :func:`~audiossl.data.backends.shar.crop_window`, and batches them with lhotse's
``DynamicBucketingSampler`` with the backend's settings (padded seconds per batch 100, bucket
bins from the index quantiles, its buffer); then it reads the windows' audio of ``--batches``
batches. Start-up = index read to the first batch in hand (audio read); RSS = after the last
batch, minus the interpreter with its imports. The only difference from the backend: audio is
read from the referenced files, not from shard tars (100k hours of tars do not fit this disk).
With ``--labels`` each size also gets H2's label-store measurement (``bench/labelstore.py``).

Usage: ``.venv/bin/python bench/scale.py [--hours 1000 10000 100000] [--batches 30] [--work DIR]
[--labels] [--json bench/results/scale.json] [--png docs/figures/scale.png]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATE = 16000
FILE_SECONDS = 120.0
QUANTILES = 101

PROBE = r"""
import json, os, random, sys, time
from pathlib import Path

def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset.sampling import DynamicBucketingSampler
from audiossl.data.backends.shar import BUFFER, crop_window
from audiossl.data.shar import SharIndex

folder, batches, seed = Path(sys.argv[1]), int(sys.argv[2]), 0
torch.set_num_threads(1)
base = resident()
start = time.perf_counter()
info = json.loads((folder / "index.json").read_text())
index = SharIndex(folder, info)
bins = index.duration_bins(10, 10.0)
shards = list(range(index.num_shards))
random.Random(f"{seed}:0:shards").shuffle(shards)
cuts = CutSet.from_files([folder / f"cuts.{s:06d}.jsonl.gz" for s in shards])

def cropped(cut):
    offset, duration = crop_window(seed, 0, cut.id, cut.duration, 10.0)
    return cut if duration is None else cut.truncate(offset=offset, duration=duration, preserve_id=True)

sampler = DynamicBucketingSampler(
    cuts.map(cropped), max_duration=100.0, duration_bins=bins, num_buckets=len(bins) + 1, shuffle=True,
    drop_last=False, buffer_size=BUFFER, world_size=1, rank=0, seed=seed,
)
first = None
utterances = samples = 0
for position, batch in enumerate(sampler):
    if position == batches:
        break
    for cut in batch:
        audio = cut.load_audio()  # (1, T): only the window is read
        utterances += 1
        samples += audio.shape[-1]
    if first is None:
        first = time.perf_counter() - start
total = time.perf_counter() - start
print(json.dumps({"startup_s": first, "run_s": total, "rss_bytes": resident() - base, "rss_base_bytes": base,
                  "utterances_read": utterances, "audio_s_read": samples / 16000}))
"""


def real_files(folder: Path, count: int) -> list[Path]:
    """``count`` 120 s wav files of harmonics under a syllable envelope plus noise."""
    rng = np.random.default_rng(0)
    paths = []
    t = np.arange(int(FILE_SECONDS * RATE)) / RATE
    for index in range(count):
        path = folder / f"real{index}.wav"
        if not path.is_file():
            phase = 2 * math.pi * np.cumsum(100 + 80 * rng.random() + 10 * np.sin(2 * math.pi * 0.3 * t)) / RATE
            wave = 0.1 * (0.5 + 0.5 * np.sin(2 * math.pi * 4 * t)) ** 2 * np.sin(phase)
            wave += 0.01 * rng.standard_normal(t.shape[0])
            folder.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, wave.astype(np.float32), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def _recording_json(path: Path, index: int) -> str:
    samples = int(FILE_SECONDS * RATE)
    return json.dumps(
        {
            "id": f"real{index}",
            "sources": [{"type": "file", "channels": [0], "source": str(path)}],
            "sampling_rate": RATE,
            "num_samples": samples,
            "duration": FILE_SECONDS,
            "channel_ids": [0],
        }
    )


def write_manifest(folder: Path, hours: float, files: list[Path], shard_cuts: int) -> dict:
    """The sharded lazy manifest of ``hours`` (reused when its index exists): generation time and size."""
    index_path = folder / "index.json"
    if index_path.is_file():
        info = json.loads(index_path.read_text())
        return {"cuts": info["utterances"], "shards": len(info["shards"]), "generate_s": None, **_disk(folder)}
    folder.mkdir(parents=True, exist_ok=True)
    recordings = [_recording_json(path, i) for i, path in enumerate(files)]
    rng = np.random.default_rng(int(hours))
    start = time.perf_counter()
    left, shard, number, shards = hours * 3600.0, 0, 0, []
    while left > 0:
        durations = rng.uniform(10.0, 50.0, shard_cuts).round(3)
        cumulative = np.cumsum(durations)
        durations = durations[: max(1, int(np.searchsorted(cumulative, left)) + 1)]
        starts = (rng.random(durations.shape[0]) * (FILE_SECONDS - durations)).round(3)
        which = rng.integers(0, len(files), durations.shape[0])
        lines = [
            f'{{"id": "c{number + i:010d}", "start": {s}, "duration": {d}, "channel": 0, "supervisions": [], '
            f'"recording": {recordings[w]}, "type": "MonoCut"}}\n'
            for i, (s, d, w) in enumerate(zip(starts.tolist(), durations.tolist(), which.tolist(), strict=True))
        ]
        with gzip.open(folder / f"cuts.{shard:06d}.jsonl.gz", "wt", compresslevel=1) as handle:
            handle.writelines(lines)
        shortest = int(durations.argmin())
        shards.append(
            {
                "index": shard,
                "utterances": int(durations.shape[0]),
                "seconds": float(durations.sum()),
                "shortest": [f"c{number + shortest:010d}", float(durations[shortest])],
                "longest": float(durations.max()),
                "quantiles": np.quantile(durations, np.linspace(0, 1, QUANTILES)).round(4).tolist(),
            }
        )
        left -= float(durations.sum())
        number += durations.shape[0]
        shard += 1
    generate_s = time.perf_counter() - start
    info = {"utterances": number, "seconds": hours * 3600.0 - left, "fields": ["cuts"], "shards": shards}
    index_path.write_text(json.dumps(info))
    return {"cuts": number, "shards": shard, "generate_s": generate_s, **_disk(folder)}


def _disk(folder: Path) -> dict:
    return {"disk_bytes": sum(path.stat().st_size for path in folder.iterdir())}


def measure(folder: Path, batches: int) -> dict:
    """Run the probe in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder), str(batches)], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--shard-cuts", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2, help="probe runs per size (median start-up, max RSS)")
    parser.add_argument("--labels", action="store_true", help="also measure H2's label store of each size")
    parser.add_argument("--work", type=Path, default=None, help="Where manifests are written (default: a temp dir).")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "scale.json")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "figures" / "scale.png")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work, prefix="audiossl-scale-") as work:
        files = real_files(Path(work) / "audio", args.files)
        for hours in args.hours:
            folder = Path(work) / f"manifest-{int(hours)}h"
            built = write_manifest(folder, hours, files, args.shard_cuts)
            probes = [measure(folder, args.batches) for _ in range(args.repeats)]
            row = {
                "hours": hours,
                **built,
                "startup_s": float(np.median([p["startup_s"] for p in probes])),
                "rss_bytes": max(p["rss_bytes"] for p in probes),
                "probes": probes,
            }
            if args.labels:
                from labelstore import measure_label_store

                row["labels"] = measure_label_store(hours, work)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "probes"}), flush=True)
            for path in folder.glob("cuts.*"):  # keep the disk free for the next size
                path.unlink()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"load_average": os.getloadavg(), "batches": args.batches, "rows": rows}, indent=1))
    mb = 2**20
    print("| hours | cuts | shards | manifest (gz) | generate s | start-up s | loader RSS | label store RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        labels = row.get("labels")
        label_rss = f"{labels['rss_open_and_reads_bytes'] / mb:.1f} MiB" if labels else "-"
        generated = "reused" if row["generate_s"] is None else f"{row['generate_s']:.0f}"
        print(
            f"| {row['hours']:,.0f} | {row['cuts']:,} | {row['shards']} | {row['disk_bytes'] / mb:.0f} MiB | "
            f"{generated} | {row['startup_s']:.2f} | {row['rss_bytes'] / mb:.0f} MiB | {label_rss} |"
        )
    _plot(rows, args.png)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [row["hours"] for row in rows]
    figure, (memory, startup) = plt.subplots(1, 2, figsize=(9, 3.5))
    memory.plot(hours, [row["rss_bytes"] / 2**20 for row in rows], "o-", label="sampler + loader")
    if all("labels" in row for row in rows):
        memory.plot(
            hours, [row["labels"]["rss_open_and_reads_bytes"] / 2**20 for row in rows], "s-", label="label store"
        )
    memory.set(xscale="log", xlabel="corpus hours", ylabel="added RSS (MiB)", ylim=(0, None))
    memory.legend(fontsize=8)
    startup.plot(hours, [row["startup_s"] for row in rows], "o-")
    startup.axhline(30.0, color="grey", linestyle="--", linewidth=1)
    startup.set(xscale="log", xlabel="corpus hours", ylabel="start-up to first batch (s)", ylim=(0, None))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
