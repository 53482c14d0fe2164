"""k-means benchmark: audiossl vs scikit-learn MiniBatchKMeans (fairseq's HuBERT settings) vs faiss.

One command (``.venv/bin/python bench/kmeans.py [--preset it1|it2|quick]``, see :data:`PRESETS`)
fits ``--clusters`` centroids to ``--n`` x ``--dim`` float32 points drawn from a Gaussian mixture
(``--components`` components, means ~ N(0, 0.5^2 I), per-component isotropic std ~ U(0.5, 1.5),
uniform weights, seed 0), written once to ``--data`` (an ``.npy``) and read by every run.

Contenders, each run in a fresh process that loads the data, fits, and then computes the
inertia on the *full* data with the same exact float32 function (``audiossl.cluster.kmeans.nearest``
under ieee precision), so the inertias are comparable:

* ``sklearn``: ``MiniBatchKMeans(init="k-means++", batch_size=10000, n_init=--n-init,
  max_iter=100, max_no_improvement=100, tol=0.0, init_size=None, reassignment_ratio=0.0,
  compute_labels=False)``, the arguments fairseq's ``examples/hubert/simple_kmeans/learn_kmeans.py``
  passes (its defaults: n_init 20, max_iter 100, batch 10000);
* ``audiossl``: ``KMeansConfig`` with the same numbers, exact float32 (``matmul_precision=ieee``);
* ``audiossl-bf16``: the same with ``matmul_precision=bf16`` (the backend may use reduced
  precision inside float32 matmuls; see the printed note for what this CPU does);
* ``faiss``: ``faiss.Kmeans(d, k, niter=25, seed)`` with faiss's defaults (Lloyd iterations on
  a subsample of 256 points per centroid), when faiss is installed.

Repeats alternate the contenders (A B C D A B C D ...), the seed changing with the repeat;
we quote median and min-max fit time (data loading and the inertia pass excluded), the
median inertia, and the ratios of medians against scikit-learn. Results print as a table
and go to ``--json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONTENDERS = ("sklearn", "audiossl", "audiossl-bf16", "faiss")

#: Problem sizes. it1: HuBERT iteration 1 (39-dim MFCC-like points, 100 clusters), 5 repeats in a
#: few minutes. it2: HuBERT iteration 2 (768-dim features, 500 clusters), one repeat: scikit-learn's
#: 20 k-means++ runs alone take about an hour on 2 cores. quick: a smoke run.
PRESETS = {
    "it1": {"n": 1_000_000, "dim": 39, "clusters": 100, "components": 300, "n_init": 20, "repeats": 5},
    "it2": {"n": 1_000_000, "dim": 768, "clusters": 500, "components": 1000, "n_init": 20, "repeats": 1},
    "quick": {"n": 30_000, "dim": 64, "clusters": 50, "components": 100, "n_init": 2, "repeats": 2},
}


def make_data(path: Path, n: int, dim: int, components: int, seed: int = 0) -> None:
    """Write the Gaussian-mixture points (n, dim) float32 to ``path`` (.npy), chunk by chunk."""
    from audiossl.fileio import atomic_path

    rng = np.random.default_rng(seed)
    means = (0.5 * rng.standard_normal((components, dim))).astype(np.float32)  # (C, D)
    scales = rng.uniform(0.5, 1.5, components).astype(np.float32)  # (C,)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        for start in range(0, n, 100_000):
            rows = min(100_000, n - start)
            which = rng.integers(0, components, rows)
            noise = rng.standard_normal((rows, dim), dtype=np.float32)
            out[start : start + rows] = means[which] + scales[which, None] * noise
        out.flush()
        del out


def full_inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    """Sum of squared distances of every point to its nearest centroid, exact float32, float64 sum."""
    import torch

    from audiossl.cluster.kmeans import matmul_precision, nearest

    points = torch.from_numpy(x)
    centres = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    total = 0.0
    with torch.no_grad(), matmul_precision("ieee"):
        for start in range(0, len(points), 200_000):
            total += float(nearest(points[start : start + 200_000], centres)[1].double().sum())
    return total


def fit(spec: dict, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Fit one contender; return its centroids and details."""
    name, seed, k, n_init = spec["contender"], spec["seed"], spec["clusters"], spec["n_init"]
    if name == "sklearn":
        from sklearn.cluster import MiniBatchKMeans

        model = MiniBatchKMeans(
            n_clusters=k,
            init="k-means++",
            max_iter=100,
            batch_size=10000,
            compute_labels=False,
            tol=0.0,
            max_no_improvement=100,
            init_size=None,
            n_init=n_init,
            reassignment_ratio=0.0,
            random_state=seed,
        ).fit(x)
        return model.cluster_centers_, {"steps": int(model.n_steps_)}
    if name.startswith("audiossl"):
        import torch

        from audiossl.cluster.kmeans import KMeans, KMeansConfig

        config = KMeansConfig(
            n_clusters=k,
            batch_size=10000,
            max_iter=100,
            n_init=n_init,
            max_no_improvement=100,
            tol=0.0,
            reassignment_ratio=0.0,
            seed=seed,
            matmul_precision="bf16" if name.endswith("bf16") else "ieee",
        )
        model = KMeans(config).fit(torch.from_numpy(x))
        details = {"steps": model.n_steps, "stop": model.stop_reason, **{f"{k}_s": v for k, v in model.timings.items()}}
        return model.centroids.numpy(), details
    if name == "faiss":
        import faiss

        model = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed, verbose=False)
        model.train(x)
        return model.centroids, {"faiss": faiss.__version__}
    raise ValueError(f"unknown contender {name!r}")


def worker(spec: dict) -> None:
    """Run one contender in this (fresh) process and print a JSON line."""
    threads = spec["threads"]
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
    x = np.load(spec["data"], allow_pickle=False)  # numbers only: a bench input is never unpickled
    with threadpool_limits(threads):
        started = time.perf_counter()
        centroids, details = fit(spec, x)
        seconds = time.perf_counter() - started
    inertia = full_inertia(x, centroids)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) / 1024.0 for line in status if line.startswith("VmHWM:"))
    print(json.dumps({**spec, "seconds": seconds, "inertia": inertia, "peak_mib": peak, **details}), flush=True)


def run(spec: dict) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    output = subprocess.run(command, capture_output=True, text=True, env=env)
    if output.returncode != 0:
        raise RuntimeError(f"{spec['contender']} failed:\n{output.stderr[-3000:]}")
    result = json.loads(output.stdout.strip().splitlines()[-1])
    result["load_average"] = os.getloadavg()[0]
    print(
        f"  {result['contender']:<14} seed {result['seed']}: {result['seconds']:8.1f} s, "
        f"inertia/point {result['inertia'] / spec['n']:.4f}, load {result['load_average']:.1f}",
        flush=True,
    )
    return result


def summarise(results: list[dict], n: int) -> list[dict]:
    rows = []
    names = list(dict.fromkeys(r["contender"] for r in results))
    for name in names:
        mine = [r for r in results if r["contender"] == name]
        times = [r["seconds"] for r in mine]
        rows.append(
            {
                "contender": name,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "inertia_per_point": statistics.median(r["inertia"] for r in mine) / n,
                "runs": len(mine),
                "peak_mib": max(r["peak_mib"] for r in mine),
                "init_s": statistics.median(r["init_s"] for r in mine) if "init_s" in mine[0] else None,
                "steps": statistics.median(r["steps"] for r in mine) if "steps" in mine[0] else None,
            }
        )
    reference = next((row for row in rows if row["contender"] == "sklearn"), None)
    for row in rows:
        if reference is not None:
            row["speedup_vs_sklearn"] = reference["median_s"] / row["median_s"]
            row["inertia_vs_sklearn"] = row["inertia_per_point"] / reference["inertia_per_point"]
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| contender | runs | median s | min-max s | k-means++ s | steps | inertia / point | vs sklearn inertia "
        "| speed-up vs sklearn | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        init = f"{row['init_s']:.1f}" if row.get("init_s") is not None else "-"
        steps = f"{row['steps']:.0f}" if row.get("steps") is not None else "-"
        lines.append(
            f"| {row['contender']} | {row['runs']} | {row['median_s']:.1f} | {row['min_s']:.1f}-{row['max_s']:.1f} "
            f"| {init} | {steps} | {row['inertia_per_point']:.4f} | {row.get('inertia_vs_sklearn', float('nan')):.4f} "
            f"| {row.get('speedup_vs_sklearn', float('nan')):.2f}x | {row['peak_mib']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="it1", help="problem size (see PRESETS)")
    parser.add_argument("--n", type=int, help="number of points")
    parser.add_argument("--dim", type=int)
    parser.add_argument("--clusters", type=int)
    parser.add_argument("--components", type=int, help="Gaussian mixture components")
    parser.add_argument("--n-init", type=int, help="k-means++ runs (fairseq: 20)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--data", type=Path, help="where the points are cached (.npy)")
    parser.add_argument("--json", type=Path, help="results file (default exp/bench/kmeans_<preset>.json)")
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.data = args.data or Path(f"/tmp/audiossl_kmeans_{args.n}x{args.dim}_{args.components}.npy")
    args.json = args.json or REPO / "exp" / "bench" / f"kmeans_{args.preset}.json"
    contenders = [c for c in args.contenders.split(",") if c]
    if "faiss" in contenders:
        try:
            import faiss  # noqa: F401
        except ImportError:
            print("faiss is not installed: skipping it (pip install faiss-cpu)")
            contenders.remove("faiss")
    meta = args.data.with_suffix(".json")
    wanted = {"n": args.n, "dim": args.dim, "components": args.components}
    if not args.data.exists() or not meta.exists() or json.loads(meta.read_text()) != wanted:
        started = time.perf_counter()
        make_data(args.data, args.n, args.dim, args.components)
        meta.write_text(json.dumps(wanted))
        print(f"data: {args.n} x {args.dim} written to {args.data} in {time.perf_counter() - started:.1f} s")
    import torch

    print(
        f"{args.n} x {args.dim} float32, {args.clusters} clusters, {args.components} mixture components, "
        f"n_init {args.n_init}, {args.threads} threads, repeats {args.repeats}; torch {torch.__version__}"
    )
    results = []
    started = time.perf_counter()
    for repeat in range(args.repeats):
        order = contenders[repeat % len(contenders) :] + contenders[: repeat % len(contenders)]
        for name in order:
            spec = {
                "contender": name,
                "seed": repeat,
                "n": args.n,
                "clusters": args.clusters,
                "n_init": args.n_init,
                "threads": args.threads,
                "data": str(args.data),
            }
            results.append(run(spec))
    rows = summarise(results, args.n)
    print(table(rows))
    print(f"total {time.perf_counter() - started:.0f} s")
    report = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": " ".join([".venv/bin/python", "bench/kmeans.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {**wanted, "clusters": args.clusters, "n_init": args.n_init, "threads": args.threads},
        "rows": rows,
        "runs": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    return 0


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


if __name__ == "__main__":
    sys.exit(main())
