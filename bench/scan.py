"""Selective-scan micro-benchmark: our chunked scan vs a plain sequential loop, side by side.

``python bench/scan.py`` (``--quick`` for a smoke run). Shapes are BiMamba-tiny's: batch 1,
inner width 384 (2 x 192), state 16, chunk 32, at 512, 2k and 8k steps. Contenders:

* ``native``: :func:`audiossl.encoders.scan.selective_scan` with ``method="auto"`` (what the
  encoder uses; on CPU the compiled C kernel of :mod:`audiossl.encoders.scan_native`, or the
  sequential loop where it cannot be built);
* ``chunked``: the same with ``method="sequential"`` (the PyTorch scan: a loop over each
  chunk's steps on cache-sized slices);
* ``chunked-parallel``: the same with ``method="parallel"`` (prefix scan inside each chunk, the
  accelerator path, timed here on CPU);
* ``reference``: :func:`~audiossl.encoders.scan.selective_scan_reference`, one autograd step per
  time step, which keeps every (B, D, N) state for backward.

Every contender runs in its own process (peak memory = that process's ``ru_maxrss``; we also
quote the growth over the process's RSS once its inputs exist). The processes of one length are
started together and stepped in turn (A B C A B C ...), one warm-up step then ``--repeats``
timed steps; a step is a forward under ``no_grad`` and a forward+backward. We quote the median,
the min-max and the ratio of medians to the reference. Correctness: every contender writes its
outputs and gradients, and we print the max abs difference to the reference. The table prints
and goes to ``--json``; ``--markdown`` also writes it as a markdown section.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHANNELS = 384  # BiMamba-tiny: dim 192, expand 2
STATE = 16
CHUNK = 32
CONTENDERS = ("native", "chunked", "chunked-parallel", "reference")


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def make_inputs(length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs in the ranges of a freshly initialised block; the same in every process."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(1, length, CHANNELS, generator=generator),
        "dt": torch.randn(1, length, CHANNELS, generator=generator) - 3.0,
        "A": -torch.arange(1, STATE + 1, dtype=torch.float32).repeat(CHANNELS, 1),
        "B": torch.randn(1, length, STATE, generator=generator),
        "C": torch.randn(1, length, STATE, generator=generator),
        "D": torch.ones(CHANNELS),
    }


def scan_function(contender: str):
    from audiossl.encoders.scan import selective_scan, selective_scan_reference

    if contender == "reference":
        return selective_scan_reference
    method = {"native": "auto", "chunked": "sequential", "chunked-parallel": "parallel"}[contender]
    return lambda *args, **kwargs: selective_scan(*args, chunk_size=CHUNK, method=method, **kwargs)


def worker(spec: dict) -> None:
    """Child process: one contender at one length; one step per ``step`` line on stdin."""
    torch.set_num_threads(spec["threads"])
    scan = scan_function(spec["contender"])
    inputs = make_inputs(spec["length"])
    names = ["x", "dt", "B", "C"]
    for name in names:
        inputs[name].requires_grad_(True)
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D")]
    print(json.dumps({"ready": True, "rss_mib": _max_rss_mib()}), flush=True)
    y = grads = None
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        with torch.no_grad():
            scan(*args, dt_softplus=True)
        forward = time.perf_counter() - start
        start = time.perf_counter()
        y = scan(*args, dt_softplus=True)
        grads = torch.autograd.grad(y.square().sum() / 2, [inputs[k] for k in names])
        both = time.perf_counter() - start
        print(json.dumps({"forward": forward, "forward_backward": both}), flush=True)
    torch.save({"y": y.detach(), **{f"grad_{k}": g for k, g in zip(names, grads, strict=True)}}, spec["out"])
    print(json.dumps({"max_rss_mib": _max_rss_mib()}), flush=True)


def run_length(length: int, repeats: int, threads: int, folder: Path) -> list[dict]:
    """Start every contender for ``length``, step them in turn, collect times, memory and outputs."""
    processes, results = [], []
    for contender in CONTENDERS:
        spec = {"contender": contender, "length": length, "threads": threads, "out": str(folder / f"{contender}.pt")}
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
        processes.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        results.append({"contender": contender, "length": length, "forward": [], "forward_backward": []})
    for process, result in zip(processes, results, strict=True):
        result["rss_before_mib"] = json.loads(process.stdout.readline())["rss_mib"]
    for round_index in range(1 + repeats):  # round 0 is the warm-up
        for process, result in zip(processes, results, strict=True):
            process.stdin.write("step\n")
            process.stdin.flush()
            answer = json.loads(process.stdout.readline())
            if round_index > 0:
                result["forward"].append(answer["forward"])
                result["forward_backward"].append(answer["forward_backward"])
    for process, result in zip(processes, results, strict=True):
        process.stdin.write("stop\n")
        process.stdin.flush()
        result["max_rss_mib"] = json.loads(process.stdout.readline())["max_rss_mib"]
        process.wait()
    reference = torch.load(folder / "reference.pt")
    for result in results:
        outputs = torch.load(folder / f"{result['contender']}.pt")
        result["max_abs_diff"] = {k: (outputs[k] - reference[k]).abs().max().item() for k in reference}
        result["reference_max_abs"] = {k: reference[k].abs().max().item() for k in reference}
    return results


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


HEADER = (
    "| steps | contender | forward s, median (min-max) | fwd+bwd s, median (min-max) | fwd+bwd vs reference "
    "| peak RSS MiB | RSS growth MiB | max abs diff y / grads |\n|---|---|---|---|---|---|---|---|"
)


def _row(result: dict, reference: dict) -> str:
    ratio = statistics.median(reference["forward_backward"]) / statistics.median(result["forward_backward"])
    diffs = result["max_abs_diff"]
    grads = [k for k in diffs if k.startswith("grad_")]
    grad_diff = max(diffs[k] for k in grads)
    grad_relative = max(diffs[k] / result["reference_max_abs"][k] for k in grads)
    return (
        f"| {result['length']} | {result['contender']} | {_summary(result['forward'])} "
        f"| {_summary(result['forward_backward'])} | {ratio:.2f}x faster | {result['max_rss_mib']:.0f} "
        f"| {result['max_rss_mib'] - result['rss_before_mib']:.0f} "
        f"| {diffs['y']:.1e} / {grad_diff:.1e} ({grad_relative:.0e} of max) |"
    )


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--lengths", default="512,2048,8192", help="comma-separated sequence lengths")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per contender after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per contender")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256 steps, 2 repeats")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "scan.json")
    parser.add_argument("--markdown", type=Path, help="also write the table as a markdown section here")
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    from audiossl.fileio import atomic_write

    lengths = [256] if args.quick else [int(n) for n in args.lengths.split(",")]
    repeats = 2 if args.quick else args.repeats
    report = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "command": " ".join(["python", "bench/scan.py", *(sys.argv[1:] if argv is None else argv)]),
        "shape": {"batch": 1, "channels": CHANNELS, "state": STATE, "chunk": CHUNK},
        "results": [],
    }
    title = f"{report['date']}, {report['cpu']}, {args.threads} threads, torch {report['torch']}"
    print(f"# {title}\n# batch 1, D={CHANNELS}, N={STATE}, chunk {CHUNK}\n{HEADER}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for length in lengths:
            results = run_length(length, repeats, args.threads, Path(folder))
            reference = next(r for r in results if r["contender"] == "reference")
            for result in results:
                rows.append(_row(result, reference))
                print(rows[-1], flush=True)
            report["results"].extend(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.json) as handle:
        json.dump(report, handle, indent=1)
    print(f"\nwrote {args.json}")
    if args.markdown:
        text = "\n".join(
            [
                f"{title}. Command: `{report['command']}`.",
                f"Batch 1, D={CHANNELS} (BiMamba-tiny's inner width), N={STATE}, chunk {CHUNK}; "
                f"{repeats} timed steps after one warm-up, contenders alternated.",
                "",
                HEADER,
                *rows,
                "",
                "",
            ]
        )
        with atomic_write(args.markdown) as handle:
            handle.write(text)
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
