"""Label store at corpus scale: resident memory and open time of stores of 1k, 10k and 100k hours.

HuBERT labels run at 50 Hz, so 100k hours are 18 billion frames: 36 GB as uint16, more than
this machine's disk. Each store is therefore built directly in the store format
(:mod:`audiossl.data.labelstore`) with **labels.npy sparse**: its header is written and the
file is extended to its full size with ``truncate``, so the array reads as zeros without
taking disk space. Everything else is real and full size: ``offsets.npy`` (N + 1 int64),
``ids`` (N sorted ids ``u000000000``..) and ``id_offsets.npy``, with utterances of 250-1000
frames (5-20 s, mean 12.5 s: LibriLight segmented for HuBERT). What this cannot show: read
times from a real disk (sparse pages are zeros served without I/O; page-cache state of the
index files also differs from a cold cluster filesystem).

Each measurement runs in a fresh process (``/proc/self/statm`` resident memory, and its
anonymous part) around ``LabelStore(dir)`` and ``--reads`` random lookups + reads. As
a reference it also gives, computed rather than measured (it would need 144 GB at 100k h), the
memory the earlier dict of int64 tensors took per process: 8 bytes per frame plus about 200
bytes per utterance of tensor and dict overhead.

:func:`measure_label_store` is importable (``bench/scale.py`` uses it for its label rows).

Usage: ``.venv/bin/python bench/labelstore.py [--hours 1000 10000 100000] [--reads 2000]
[--work DIR] [--json bench/results/labelstore.json] [--png docs/figures/labelstore_scale.png]``.
The work dir (default: a temporary dir) needs about 45 MB per 1000 hours of real disk.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiossl.data.labelstore import FORMAT, VERSION  # noqa: E402

RATE = 50.0
MIN_FRAMES, MAX_FRAMES = 250, 1000
ID_DIGITS = 9
CHUNK = 1 << 20


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    """The bytes NumPy writes before a 1-d array of ``length`` values of ``dtype``."""
    import io

    header = np.lib.format.header_data_from_array_1_0(np.empty(0, dtype))
    header["shape"] = (length,)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def build_store(out: Path, hours: float, seed: int = 0) -> dict:
    """A store of ``hours`` at 50 Hz, labels sparse (see the module doc); returns its counts and disk use."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    target = int(hours * 3600 * RATE)
    with open(out / "offsets.npy.tmp", "wb") as offsets:
        # The header goes in front once N is known (_prepend).
        position, count = 0, 0
        np.zeros(1, np.int64).tofile(offsets)
        while position < target:
            lengths = rng.integers(MIN_FRAMES, MAX_FRAMES + 1, CHUNK)
            ends = position + np.cumsum(lengths)
            ends = ends[: int(np.searchsorted(ends, target, side="left")) + 1]  # up to the first end >= target
            ends[-1] = min(ends[-1], target)  # the last utterance ends with the corpus
            ends.tofile(offsets)
            position, count = int(ends[-1]), count + len(ends)
    frames = position
    _prepend(out / "offsets.npy.tmp", _npy_header(np.dtype(np.int64), count + 1), out / "offsets.npy")
    line = ID_DIGITS + 2  # "u" + digits + newline
    with open(out / "ids", "wb") as ids:
        powers = 10 ** np.arange(ID_DIGITS - 1, -1, -1, dtype=np.int64)  # (D,)
        for start in range(0, count, CHUNK):
            numbers = np.arange(start, min(start + CHUNK, count), dtype=np.int64)  # (n,)
            rows = np.empty((len(numbers), line), np.uint8)
            rows[:, 0] = ord("u")
            rows[:, 1:-1] = (numbers[:, None] // powers) % 10 + ord("0")
            rows[:, -1] = ord("\n")
            rows.tofile(ids)
    with open(out / "id_offsets.npy", "wb") as id_offsets:
        id_offsets.write(_npy_header(np.dtype(np.int64), count + 1))
        for start in range(0, count + 1, CHUNK):
            (np.arange(start, min(start + CHUNK, count + 1), dtype=np.int64) * line).tofile(id_offsets)
    header = _npy_header(np.dtype(np.uint16), frames)
    with open(out / "labels.npy", "wb") as labels:
        labels.write(header)
        labels.truncate(len(header) + 2 * frames)  # sparse: no disk blocks for the labels
    (out / "frame_rate").write_text(f"{RATE!r}\n")
    info = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": "uint16",
        "n_clusters": 500,
        "per_utterance": False,
        "frame_rate": RATE,
        "utterances": count,
        "frames": frames,
        "max_label": 0,
        "bench": "labels.npy is sparse (zeros)",
    }
    (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    disk = sum(os.stat(p).st_blocks * 512 for p in out.iterdir())
    return {"utterances": count, "frames": frames, "labels_bytes": 2 * frames, "disk_bytes": disk}


def _prepend(body: Path, header: bytes, out: Path) -> None:
    with open(out, "wb") as target, open(body, "rb") as source:
        target.write(header)
        while block := source.read(1 << 24):
            target.write(block)
    body.unlink()


PROBE = """
import json, os, sys, time
import numpy as np
from audiossl.data.labelstore import LabelStore

def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def anonymous():
    with open("/proc/self/status") as handle:
        return int(next(l for l in handle if l.startswith("RssAnon:")).split()[1]) * 1024

path, reads = sys.argv[1], int(sys.argv[2])
base = (resident(), anonymous())
start = time.perf_counter()
store = LabelStore(path)
opened = time.perf_counter() - start
after_open = resident()
rng = np.random.default_rng(0)
rows = rng.integers(0, len(store), reads)
ids = [f"u{row:09d}" for row in rows.tolist()]
start = time.perf_counter()
frames = sum(len(store.array(utt)) for utt in ids)
read_s = time.perf_counter() - start
print(json.dumps({
    "open_s": opened,
    "rss_open_bytes": after_open - base[0],
    "rss_open_and_reads_bytes": resident() - base[0],
    "anon_open_and_reads_bytes": anonymous() - base[1],
    "reads": reads,
    "read_us_per_utterance": 1e6 * read_s / reads,
    "frames_read": frames,
}))
"""


def measure_label_store(hours: float, work_dir: str | Path, reads: int = 2000) -> dict:
    """Build (or reuse) a store of ``hours`` in ``work_dir``; measure opening + ``reads`` reads in a fresh process."""
    out = Path(work_dir) / f"labels-{int(hours)}h"
    if (out / "info.json").is_file():
        info = json.loads((out / "info.json").read_text())
        built = {"utterances": info["utterances"], "frames": info["frames"], "labels_bytes": 2 * info["frames"]}
        built["disk_bytes"] = sum(os.stat(p).st_blocks * 512 for p in out.iterdir())
        built["build_s"] = None
    else:
        start = time.perf_counter()
        built = build_store(out, hours)
        built["build_s"] = time.perf_counter() - start
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), str(reads)], capture_output=True, text=True, check=True, env=env
    )
    measured = json.loads(result.stdout)
    dict_bytes = 8 * built["frames"] + 200 * built["utterances"]  # computed: the earlier dict of int64 tensors
    return {"hours": hours, **built, **measured, "dict_int64_bytes_computed": dict_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=None, help="Where the stores are built (default: a temp dir).")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "labelstore.json")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "figures" / "labelstore_scale.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        rows = [measure_label_store(hours, work, args.reads) for hours in args.hours]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1) + "\n")
    mb = 2**20
    print("| hours | utterances | labels (uint16) | index on disk | open s | RSS open | RSS open + reads | µs/read |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['hours']:,.0f} | {row['utterances']:,} | {row['labels_bytes'] / 2**30:.1f} GiB | "
            f"{row['disk_bytes'] / mb:.0f} MiB | {row['open_s']:.2f} | {row['rss_open_bytes'] / mb:.2f} MiB | "
            f"{row['rss_open_and_reads_bytes'] / mb:.2f} MiB | {row['read_us_per_utterance']:.0f} |"
        )
    _plot(rows, args.png)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [row["hours"] for row in rows]
    figure, (memory, opening) = plt.subplots(1, 2, figsize=(9, 3.5))
    memory.plot(hours, [row["rss_open_and_reads_bytes"] / 2**20 for row in rows], "o-", label="label store (measured)")
    memory.plot(
        hours, [row["dict_int64_bytes_computed"] / 2**20 for row in rows], "s--", label="dict of int64 (computed)"
    )
    memory.set(xscale="log", yscale="log", xlabel="corpus hours (50 Hz labels)", ylabel="added RSS per process (MiB)")
    memory.legend(fontsize=8)
    opening.plot(hours, [row["open_s"] for row in rows], "o-")
    opening.set(xscale="log", xlabel="corpus hours", ylabel="open time (s)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
