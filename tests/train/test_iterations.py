"""HuBERT iterations end to end on a tiny synthetic corpus: per-iteration dirs, resumable stages, summaries."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from train_helpers import TINY, merge

from audiossl.cli.main import main
from audiossl.cluster.kmeans import KMeansConfig
from audiossl.cluster.labels import read_labels
from audiossl.cluster.pipeline import FitConfig, fit_kmeans_dir, load_kmeans_dir
from audiossl.errors import ConfigError
from audiossl.train.checkpoint import checkpoint_path
from audiossl.train.iterations import IterationsConfig, IterationSpec, run_iterations
from audiossl.train.logging import read_records

#: The tiny trainer config with the hubert objective: 2-block AST of width 32 on pairs of fbank frames.
HUBERT = merge(
    TINY,
    {
        "objective": {
            "name": "hubert",
            "config": {"code_dim": 8, "mask": {"kind": "span", "start_prob": 0.2, "span_length": 3, "min_spans": 1}},
        },
        "run": {"max_steps": 2, "checkpoint_every": 2},
    },
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def plan(tmp_path) -> IterationsConfig:
    config_path = tmp_path / "hubert-tiny.yaml"
    config_path.write_text(yaml.safe_dump(HUBERT), encoding="utf-8")
    return IterationsConfig(
        pretrain=str(config_path),
        iterations=[IterationSpec(n_clusters=6), IterationSpec(n_clusters=5, layer=1, max_steps=3)],
        kmeans=KMeansConfig(batch_size=256, n_init=1, max_iter=2),
        reference="spk",
    )


def test_two_iterations_end_to_end_and_rerun_skips(plan, synth_dir, tmp_path) -> None:
    run = tmp_path / "run"
    result = run_iterations(plan, [synth_dir], run, progress=False)
    assert result.ran == [f"iter{n}/{stage}" for n in (1, 2) for stage in ("kmeans", "labels", "pretrain")]
    for n in (1, 2):
        for stage in ("kmeans", "labels", "pretrain"):
            assert (run / f"iter{n}" / stage / ".complete").is_file()
    # Iteration 1 clusters 39-dim MFCC at 100 Hz; iteration 2 block 1 of iteration 1's model at its token rate.
    kmeans1, fit1 = load_kmeans_dir(run / "iter1/kmeans")
    kmeans2, fit2 = load_kmeans_dir(run / "iter2/kmeans")
    assert (kmeans1.n_clusters, kmeans1.centroids.shape[1], fit1.features) == (6, 39, "mfcc")
    assert (kmeans2.n_clusters, kmeans2.centroids.shape[1], fit2.layer) == (5, 32, 1)
    assert fit2.features == str(checkpoint_path(run / "iter1/pretrain", 2).resolve())
    labels1, rate1 = read_labels(run / "iter1/labels")
    labels2, rate2 = read_labels(run / "iter2/labels")
    assert (rate1, rate2) == (100.0, 50.0)
    assert set(labels1) == set(labels2)
    assert all(abs(len(labels1[utt]) - 2 * len(labels2[utt])) <= 1 for utt in labels1)
    # Each iteration trained on its own labels and k, for its own number of steps.
    config2 = yaml.safe_load((run / "iter2/pretrain/config.yaml").read_text())
    assert config2["objective"]["config"]["labels"] == str(run / "iter2/labels")
    assert checkpoint_path(run / "iter1/pretrain", 2).is_file() and checkpoint_path(run / "iter2/pretrain", 3).is_file()
    summaries = json.loads((run / "summary.json").read_text())
    assert [s["n_clusters"] for s in summaries] == [6, 5] and [s["steps"] for s in summaries] == [2, 3]
    assert all(0.0 <= s["pnmi"] <= 1.0 and s["reference"] == "utt2spk" for s in summaries)
    assert "PNMI" in (run / "summary.txt").read_text()

    before = {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.is_file() and "summary" not in path.name}
    again = run_iterations(plan, [synth_dir], run, progress=False)
    assert again.ran == []
    after = {path: path.stat().st_mtime_ns for path in before}
    assert after == before  # nothing of a finished stage was rewritten

    # `audiossl kmeans fit/label` on a layer of a run dir (its newest checkpoint), as recipes/ssl.sh does.
    km, relabelled, trained = tmp_path / "km-layer", tmp_path / "relabelled", run / "iter2/pretrain"
    fit_args = ["--features", str(trained), "--set", "layer=2", "--n-clusters", "3", "--set", "kmeans.n_init=1"]
    assert main(["kmeans", "fit", "--data", str(synth_dir), "--out", str(km), "--device", "cpu", *fit_args]) == 0
    assert load_kmeans_dir(km)[1].features == str(checkpoint_path(trained, 3).resolve())
    assert main(["kmeans", "label", "--model", str(km), "--data", str(synth_dir), "--out", str(relabelled)]) == 0
    assert read_labels(relabelled)[1] == 50.0
    with pytest.raises(ConfigError, match="set layer=N"):
        fit_kmeans_dir([synth_dir], tmp_path / "no-layer", FitConfig(features=str(trained)))


def test_hubertopic_iteration_and_an_unfinished_stage_is_redone(plan, synth_dir, tmp_path) -> None:
    run = tmp_path / "run"
    topic = "objective.config.topic={num_topics: 2, max_iter: 5, weight: 0.5}"
    one = IterationsConfig(**{**plan.__dict__, "iterations": plan.iterations[:1], "overrides": [topic]})
    first = run_iterations(one, [synth_dir], run, progress=False)
    assert first.ran == ["iter1/kmeans", "iter1/labels", "iter1/labels/topics-2", "iter1/pretrain"]
    assert (run / "iter1/labels/topics-2/utt2topic").is_file()
    records = [r for r in read_records(run / "iter1/pretrain/train.jsonl") if r["kind"] == "train"]
    assert all("topic" in r["parts"] and "topic_accuracy" in r["metrics"] for r in records)
    (run / "iter1/labels/.complete").unlink()  # as if labelling had been interrupted
    result = run_iterations(one, [synth_dir], run, progress=False)
    assert result.ran == ["iter1/labels"]  # the pretraining had finished: it is kept


def test_plan_errors() -> None:
    with pytest.raises(ConfigError, match="first iteration clusters a front-end"):
        IterationsConfig(iterations=[IterationSpec(layer=3)])
    with pytest.raises(ConfigError, match="iteration 2 needs the layer"):
        IterationsConfig(iterations=[IterationSpec(), IterationSpec()])


def test_cli_runs_one_iteration(plan, synth_dir, tmp_path) -> None:
    out = tmp_path / "cli-run"
    code = main(
        [
            "hubert",
            "iterate",
            "--config",
            plan.pretrain,
            "--data",
            str(synth_dir),
            "--out",
            str(out),
            "--clusters",
            "4",
            "--set-kmeans",
            "kmeans.n_init=1",
            "--set-kmeans",
            "kmeans.max_iter=2",
            "--ref-label",
            "spk",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 1 and summary[0]["n_clusters"] == 4
