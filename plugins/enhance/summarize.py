"""Collect the evidence runs of evidence.sh into OUT/summary.md, OUT/summary.json and OUT/summary.png."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from audiossl.fileio import atomic_path, atomic_write

COLUMNS = {
    "se": ["PESQ", "PESQ_noisy", "STOI", "STOI_noisy", "SI-SNRi"],
    "ss": ["SI-SDR", "SI-SDR_mixture", "SI-SDRi"],
}


def main(out: Path) -> None:
    rows = {}
    for path in sorted(out.glob("*-*-*/eval/metrics.json")):
        report = json.loads(path.read_text())
        corpus, task, upstream = path.parent.parent.name.split("-", 2)
        info = json.loads((path.parent.parent / "run" / "downstream.json").read_text())
        steps = [json.loads(line).get("step", 0) for line in (path.parent.parent / "run" / "train.jsonl").open()]
        rows[path.parent.parent.name] = {
            "corpus": corpus,
            "task": task,
            "upstream": upstream,
            "upstream_spec": report["upstream"],
            "steps": max(steps, default=0),
            "utterances": report["metrics"]["utterances"],
            "metrics": report["metrics"],
            "lr": info["config"].get("lr"),
        }
    with atomic_write(out / "summary.json") as handle:
        json.dump(rows, handle, indent=2)
    lines = []
    for task, columns in COLUMNS.items():
        lines += [
            f"| corpus | upstream | steps | test utts | {' | '.join(columns)} |",
            "|---" * (len(columns) + 4) + "|",
        ]
        for row in rows.values():
            if row["task"] == task:
                values = " | ".join(f"{row['metrics'][name]:.3f}" for name in columns)
                lines.append(
                    f"| {row['corpus']} | {row['upstream']} | {row['steps']} | {int(row['utterances'])} | {values} |"
                )
        lines.append("")
    with atomic_write(out / "summary.md") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))
    plot(rows, out / "summary.png")


def plot(rows: dict, path: Path) -> None:
    """Bars: PESQ improvement (se) and SI-SDRi (ss) per corpus and upstream."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5), layout="constrained")
    axes = figure.subplots(1, 3)
    for axis, (task, metric) in zip(
        axes, [("se", "PESQ_improvement"), ("se", "SI-SNRi"), ("ss", "SI-SDRi")], strict=True
    ):
        chosen = [row for row in rows.values() if row["task"] == task]
        labels = [f"{row['corpus']}\n{row['upstream']}" for row in chosen]
        axis.bar(range(len(chosen)), [row["metrics"][metric] for row in chosen], color="tab:blue")
        axis.set_xticks(range(len(chosen)), labels, fontsize=7)
        axis.set_title(f"{task}: {metric}", fontsize=9)
        axis.axhline(0, color="black", linewidth=0.5)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "exp/enhance"))
