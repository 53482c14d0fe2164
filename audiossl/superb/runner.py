"""Run every (upstream, task) pair of a SUPERB evaluation alike, resumably.

Layout of the output dir ``OUT``::

    OUT/superb.json                       the settings every pair shares (budget, seed, upstreams, tasks)
    OUT/runs/<upstream>/<task>/run/       the downstream run (checkpoints resume an interrupted pair)
    OUT/runs/<upstream>/<task>/eval/      the test evaluation (metrics.json, the task's reports and plots)
    OUT/results/<upstream>/<task>.json    written atomically when the pair is finished: a finished pair is skipped

A result records the headline metric, every metric, the layer weights the task learned
(SUPERB's weighted sum; for QbE, which learns nothing, the dev MTWV of every layer) and the
settings; a rerun with other settings refuses to mix results (choose another ``OUT``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiossl.errors import ConfigError, UserError
from audiossl.fileio import atomic_write, latest_checkpoint
from audiossl.superb.dataconfig import TaskData
from audiossl.superb.tasks import task_options

log = logging.getLogger(__name__)

RESULTS = "results"
RUNS = "runs"


@dataclass(frozen=True)
class UpstreamEntry:
    """An upstream of the leaderboard: a short name (a file-name-safe label) and its spec."""

    name: str
    spec: str


def parse_upstream(text: str) -> UpstreamEntry:
    """``NAME=SPEC`` or ``SPEC`` (named after it: fbank, random-<run>, the run or checkpoint's folder name)."""
    if "=" in text.split(":", 1)[0]:
        name, spec = text.split("=", 1)
    else:
        spec = text
        if spec.split(":")[0] in ("fbank", "fbank-raw"):
            name = spec.replace(":", "-")
        else:
            random = spec.startswith("random:")
            path = Path(spec[len("random:") :] if random else spec)
            stem = path.parent.name if path.name in ("run", "pretrain") or path.suffix == ".pt" else path.name
            name = ("random-" if random else "") + (stem or "upstream")
    name = name.strip()
    if not name or any(c in name for c in "/\\ \t") or name.startswith("."):
        raise ConfigError(f"upstream name {name!r} (from {text!r}) must be a plain file name; use NAME=SPEC")
    return UpstreamEntry(name, spec)


@dataclass
class PairResult:
    """One finished pair (what ``OUT/results/<upstream>/<task>.json`` holds)."""

    upstream: str
    spec: str
    task: str
    metric: str
    higher_is_better: bool
    value: float
    metrics: dict[str, Any]
    layer_weights: list[float] | None = None
    layer_scores: list[float] | None = None
    seconds: float = 0.0
    settings: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def settings_key(settings: dict[str, Any]) -> str:
    """A short fingerprint of the shared settings, stored with every result."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def result_path(out: Path, upstream: str, task: str) -> Path:
    return out / RESULTS / upstream / f"{task}.json"


def read_result(path: Path) -> PairResult:
    return PairResult(**json.loads(path.read_text(encoding="utf-8")))


def write_result(path: Path, result: PairResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        json.dump(result.__dict__, handle, indent=2)
        handle.write("\n")


class Interrupted(Exception):
    """A pair's training was stopped by a signal (SIGINT/SIGTERM): the evaluation stops, the pair stays resumable."""


def stop_reason(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` stopped early (the engine's last ``stop`` event), None when it finished."""
    path = run_dir / "train.jsonl"
    if not path.is_file():
        return None
    reason = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if '"kind": "event"' in line:
            event = json.loads(line)
            reason = event.get("reason") if event.get("event") == "stop" else None
    return reason


#: Runs one pair: (upstream, task data, pair dir, downstream config) -> PairResult without timing/settings.
PairRunner = Callable[[UpstreamEntry, TaskData, Path, Any], PairResult]


def run_downstream_pair(upstream: UpstreamEntry, data: TaskData, pair_dir: Path, config: Any) -> PairResult:
    """Train the task's head on the upstream (resuming a started run), score the test dir, read the layer weights."""
    from audiossl.downstream.plugin import get_plugin
    from audiossl.downstream.trainer import evaluate_downstream, load_downstream, train_downstream

    spec = data.spec
    plugin = get_plugin(spec.plugin)
    if plugin.task_factory is None:
        raise ConfigError(f"plugin {spec.plugin!r} (task {spec.name}) has no task to train")
    task = plugin.task_factory(**task_options(spec, data.label))
    run_dir = pair_dir / "run"
    resume = latest_checkpoint(run_dir) is not None
    train_downstream(task, upstream.spec, data.train, run_dir, config, valid_dir=data.dev, resume=resume)
    stopped = stop_reason(run_dir)
    if stopped is not None and stopped.startswith("SIG"):
        raise Interrupted(f"{upstream.name}/{spec.name} stopped by {stopped}; rerun the same command to resume it")
    metrics = evaluate_downstream(run_dir, data.test, pair_dir / "eval", task=task, device=config.device)
    if spec.metric not in metrics:
        raise ConfigError(
            f"task {spec.name}: plugin {spec.plugin!r} reported {', '.join(metrics)} but not {spec.metric!r}; "
            "set 'metric:' for this task in the data config"
        )
    model = load_downstream(run_dir, task=task, device="cpu")
    featurizer = model.upstream.featurizer
    weights = None if featurizer is None else [float(w) for w in featurizer.weights.detach()]
    return PairResult(
        upstream.name,
        upstream.spec,
        spec.name,
        spec.metric,
        spec.higher_is_better,
        float(metrics[spec.metric]),
        _plain(metrics),
        layer_weights=weights,
        extra={"stopped_by": stopped, "steps": _last_step(run_dir)},
    )


def run_qbe_pair(upstream: UpstreamEntry, data: TaskData, pair_dir: Path, config: Any) -> PairResult:
    """QbE: choose the layer with the best dev MTWV, report MTWV and MAP on the test documents with it."""
    from audiossl_qbe.queries import queries_from_alignments, read_query_list
    from audiossl_qbe.search import evaluate_qbe

    from audiossl.data.kaldi import DataDir

    def words(path: Path) -> set[str]:
        return {w for line in (DataDir.load(path).text or {}).values() for w in line.split()}

    if data.query_lists:  # QUESST-style: separate dev and test queries
        dev_queries, test_queries = (read_query_list(data.query_lists[k]) for k in ("dev", "test"))
    else:  # cut from the alignments of the query dir, the words both document sets contain
        per_term = int(data.spec.options.get("per_term", 1))
        terms = words(data.dev) & words(data.test)
        dev_queries = test_queries = queries_from_alignments(data.queries, per_term=per_term, terms=terms)
    twv = data.spec.options.get("twv", "quesst")
    dev = evaluate_qbe(upstream.spec, dev_queries, data.dev, pair_dir / "dev", twv=twv)
    test = evaluate_qbe(upstream.spec, test_queries, data.test, pair_dir / "eval", layers=[dev["layer"]], twv=twv)
    queries = test_queries
    report = json.loads((pair_dir / "dev" / "metrics.json").read_text())
    scores = [float(row["mtwv"]) for row in sorted(report["layers"], key=lambda r: r["layer"])]
    return PairResult(
        upstream.name,
        upstream.spec,
        "qbe",
        data.spec.metric,
        data.spec.higher_is_better,
        float(test[data.spec.metric]),
        _plain(test),
        layer_scores=scores,
        extra={"dev_layer": dev["layer"], "queries": len(queries)},
    )


def _last_step(run_dir: Path) -> int | None:
    from audiossl.fileio import list_checkpoints

    found = list_checkpoints(run_dir)
    return found[-1][0] if found else None


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, int | float) else v) for k, v in metrics.items()}


RUNNERS: dict[str, PairRunner] = {"downstream": run_downstream_pair, "qbe": run_qbe_pair}


@dataclass
class Outcome:
    """What :func:`run_superb` did with each pair."""

    finished: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def run_superb(
    upstreams: list[UpstreamEntry],
    tasks: dict[str, TaskData],
    out: str | Path,
    config: Any,
    *,
    runners: dict[str, PairRunner] | None = None,
    keep_going: bool = True,
) -> Outcome:
    """Every (upstream, task) pair with the same ``config`` (a DownstreamConfig); finished pairs are skipped.

    A pair that fails with a user error (bad data, a missing plugin) is logged and recorded
    in the outcome, and the others go on (``keep_going``); it is retried on the next run.
    """
    from audiossl.config import to_dict

    out = Path(out)
    runners = runners or RUNNERS
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise ConfigError(f"two upstreams share a name ({', '.join(names)}); name them NAME=SPEC")
    settings = {"config": to_dict(config) if hasattr(config, "__dataclass_fields__") else config}
    key = settings_key(settings)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "superb.json") as handle:
        json.dump(
            {"settings": settings, "key": key, "upstreams": [u.__dict__ for u in upstreams], "tasks": list(tasks)},
            handle,
            indent=2,
        )
        handle.write("\n")
    outcome = Outcome()
    for upstream in upstreams:
        for name, data in tasks.items():
            path = result_path(out, upstream.name, name)
            if path.is_file():
                done = read_result(path)
                if done.settings != key or done.spec != upstream.spec:
                    raise ConfigError(
                        f"{upstream.name}/{name} was finished with other settings or another upstream spec "
                        f"({done.spec}); use another output dir, or delete this result to rerun it",
                        path,
                    )
                log.info(
                    "superb: %s / %s finished before (%s %.4f); skipped", upstream.name, name, done.metric, done.value
                )
                outcome.skipped.append((upstream.name, name))
                continue
            log.info("superb: %s / %s (%s)", upstream.name, name, data.spec.description or data.spec.plugin)
            start = time.monotonic()
            try:
                result = runners[data.spec.kind](upstream, data, out / RUNS / upstream.name / name, config)
            except UserError as error:
                if not keep_going:
                    raise
                log.error("superb: %s / %s failed: %s", upstream.name, name, error)
                outcome.failed.append((upstream.name, name, str(error)))
                continue
            result.seconds = round(time.monotonic() - start, 1)
            result.settings = key
            write_result(path, result)
            outcome.finished.append((upstream.name, name))
    return outcome


def collect_results(out: str | Path) -> list[PairResult]:
    """Every finished pair under ``OUT/results`` (upstream, then task order on disk)."""
    root = Path(out) / RESULTS
    if not root.is_dir():
        raise UserError(f"no results in {out} (run `audiossl superb` first)", root)
    return [read_result(p) for p in sorted(root.glob("*/*.json"))]
