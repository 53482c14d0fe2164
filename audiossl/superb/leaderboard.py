"""The leaderboard of a SUPERB evaluation: per-task metrics, a SUPERB-style overall score, plots.

Overall score (after the SUPERB score of Shi et al., "SUPERB @ SLT 2022"): each task's metric
is mapped linearly so that the floor upstream (the fbank baseline) scores 0 and the best
entry of the leaderboard scores 1000,

    score_t(u) = 1000 * (m_t(u) - m_t(floor)) / (m_t(best) - m_t(floor))

which works alike for higher-is-better metrics and error rates (the best is the lowest
there: numerator and denominator change sign together), then averaged over the tasks. A
task where no entry differs from the floor contributes 0 for everyone; a task the floor
did not finish is left out of every score; an entry missing a task is averaged over the
tasks it has and marked incomplete (``*``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from audiossl.fileio import atomic_path, atomic_write
from audiossl.superb.runner import PairResult
from audiossl.superb.tasks import TASKS


@dataclass(frozen=True)
class Board:
    """Results arranged as a table: upstreams x tasks."""

    upstreams: list[str]
    tasks: list[str]
    values: dict[tuple[str, str], float]
    metric: dict[str, str]
    higher: dict[str, bool]


def arrange(results: list[PairResult], upstreams: list[str] | None = None) -> Board:
    """Arrange pair results; upstream order as given (else first seen), tasks in SUPERB's order."""
    order = list(upstreams or dict.fromkeys(r.upstream for r in results))
    rank = {name: i for i, name in enumerate(TASKS)}
    tasks = sorted({r.task for r in results}, key=lambda t: (rank.get(t, len(rank)), t))
    return Board(
        order,
        tasks,
        {(r.upstream, r.task): r.value for r in results},
        {r.task: r.metric for r in results},
        {r.task: r.higher_is_better for r in results},
    )


def task_scores(board: Board, floor: str) -> dict[tuple[str, str], float]:
    """``score_t(u)`` of every finished pair whose task the floor finished (see the module docstring)."""
    scores = {}
    for task in board.tasks:
        if (floor, task) not in board.values:
            continue
        entries = {u: board.values[(u, task)] for u in board.upstreams if (u, task) in board.values}
        best = (max if board.higher[task] else min)(entries.values())
        base = board.values[(floor, task)]
        for upstream, value in entries.items():
            score = 0.0 if best == base else 1000.0 * (value - base) / (best - base)
            scores[(upstream, task)] = score + 0.0  # no "-0.0" in the tables
    return scores


def overall_scores(board: Board, floor: str) -> dict[str, tuple[float, bool]]:
    """Per upstream: (mean task score, complete: it has every task the floor has)."""
    scores = task_scores(board, floor)
    scored_tasks = [t for t in board.tasks if (floor, t) in board.values]
    overall = {}
    for upstream in board.upstreams:
        mine = [scores[(upstream, t)] for t in scored_tasks if (upstream, t) in scores]
        if mine:
            overall[upstream] = (sum(mine) / len(mine), len(mine) == len(scored_tasks))
    return overall


def _format(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def markdown(board: Board, floor: str | None) -> str:
    """The leaderboard as a Markdown table (metric arrows: higher or lower is better)."""
    overall = overall_scores(board, floor) if floor in board.upstreams else {}
    heads = [f"{t} {board.metric[t]} {'↑' if board.higher[t] else '↓'}" for t in board.tasks]
    lines = ["| upstream | " + " | ".join(heads) + " | SUPERB score ↑ |", "|---" * (len(heads) + 2) + "|"]
    for upstream in board.upstreams:
        cells = [_format(board.values.get((upstream, t))) for t in board.tasks]
        score = overall.get(upstream)
        text = "-" if score is None else f"{score[0]:.0f}" + ("" if score[1] else "*")
        lines.append(f"| {upstream} | " + " | ".join(cells) + f" | {text} |")
    note = (
        f"\nSUPERB score: per task 0 = {floor}, 1000 = the best entry, averaged over tasks (* = some tasks missing)."
        if overall
        else "\nNo SUPERB score: the floor upstream (fbank) is not on this leaderboard."
    )
    return "\n".join(lines) + "\n" + note + "\n"


def csv_text(board: Board, floor: str | None) -> str:
    """One row per (upstream, task): metric, value, task score (empty without a floor)."""
    scores = task_scores(board, floor) if floor in board.upstreams else {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["upstream", "task", "metric", "higher_is_better", "value", "task_score"])
    for upstream in board.upstreams:
        for task in board.tasks:
            if (upstream, task) in board.values:
                score = scores.get((upstream, task))
                writer.writerow(
                    [
                        upstream,
                        task,
                        board.metric[task],
                        int(board.higher[task]),
                        f"{board.values[(upstream, task)]:.6g}",
                        "" if score is None else f"{score:.1f}",
                    ]
                )
    return buffer.getvalue()


def plot_leaderboard(board: Board, floor: str | None, path: Path) -> Path:
    """Per-task bars (one per upstream) and, with a floor, the overall SUPERB score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = overall_scores(board, floor) if floor in board.upstreams else {}
    panels = len(board.tasks) + (1 if overall else 0)
    columns = min(4, panels)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {u: colours[i % len(colours)] for i, u in enumerate(board.upstreams)}
    flat = list(axes.flat)
    for axis, task in zip(flat, board.tasks, strict=False):
        names = [u for u in board.upstreams if (u, task) in board.values]
        bars = axis.bar(range(len(names)), [board.values[(u, task)] for u in names], color=[colour[u] for u in names])
        axis.bar_label(bars, fmt="%.3g", fontsize=6)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        axis.set_title(
            f"{task}: {board.metric[task]} ({'higher' if board.higher[task] else 'lower'} is better)", fontsize=8
        )
    if overall:
        axis = flat[len(board.tasks)]
        names = list(overall)
        bars = axis.bar(range(len(names)), [overall[u][0] for u in names], color=[colour[u] for u in names])
        axis.bar_label(bars, fmt="%.0f", fontsize=6)
        axis.set_xticks(
            range(len(names)), [u + ("" if overall[u][1] else "*") for u in names], rotation=30, ha="right", fontsize=7
        )
        axis.axhline(0, color="black", linewidth=0.6)
        axis.set_title(f"SUPERB score (0 = {floor}, 1000 = best)", fontsize=8)
    for axis in flat[panels:]:
        axis.axis("off")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)
    return path


def plot_layer_weights(results: list[PairResult], path: Path) -> Path | None:
    """One panel per task: each upstream's learned layer weights (QbE: dev MTWV per layer); None if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_layers = [
        r for r in results if (r.layer_weights or r.layer_scores) and len(r.layer_weights or r.layer_scores) > 1
    ]
    if not with_layers:
        return None
    rank = {name: i for i, name in enumerate(TASKS)}
    tasks = sorted({r.task for r in with_layers}, key=lambda t: rank.get(t, len(rank)))
    columns = min(4, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for axis, task in zip(axes.flat, tasks, strict=False):
        for r in (r for r in with_layers if r.task == task):
            values = r.layer_weights or r.layer_scores
            axis.plot(range(len(values)), values, marker="o", markersize=3, label=r.upstream)
        kind = "dev MTWV" if task == "qbe" else "layer weight"
        axis.set_title(f"{task}: {kind}", fontsize=8)
        axis.set_xlabel("layer", fontsize=7)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(tasks) :]:
        axis.axis("off")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)
    return path


def write_leaderboard(results: list[PairResult], out: Path, floor: str | None, upstreams: list[str] | None = None):
    """``OUT/leaderboard.{md,csv,png}``, ``OUT/layer_weights.{json,png}``; returns the Markdown."""
    board = arrange(results, upstreams)
    text = markdown(board, floor)
    with atomic_write(out / "leaderboard.md") as handle:
        handle.write("# SUPERB leaderboard\n\n" + text)
    with atomic_write(out / "leaderboard.csv") as handle:
        handle.write(csv_text(board, floor))
    plot_leaderboard(board, floor, out / "leaderboard.png")
    weights = {
        f"{r.upstream}/{r.task}": {"layer_weights": r.layer_weights, "layer_scores": r.layer_scores} for r in results
    }
    with atomic_write(out / "layer_weights.json") as handle:
        json.dump(weights, handle, indent=2)
        handle.write("\n")
    plot_layer_weights(results, out / "layer_weights.png")
    return text


def default_floor(upstreams: list[tuple[str, str]]) -> str | None:
    """The first upstream (in the given order) whose spec is an fbank baseline (fbank or fbank-raw), else None."""
    return next((name for name, spec in upstreams if spec.split(":")[0] in ("fbank", "fbank-raw")), None)
