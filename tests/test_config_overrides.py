"""One config mechanism: the same --set semantics and YAML line numbers for every kind of config."""

from __future__ import annotations

import pytest

from audiossl.config import apply_overrides, load_yaml, read_yaml
from audiossl.downstream import DownstreamConfig
from audiossl.errors import ConfigError
from audiossl.train.config import resolve_config
from audiossl.train.iterations import IterationsConfig, flag_overrides


def test_one_set_implementation_for_downstream_and_pretraining_configs():
    downstream = apply_overrides(DownstreamConfig(), ["max_steps=7", "grad_clip=null", "schedule=cosine"])
    pretrain = resolve_config("mspm-ast-tiny", ["run.max_steps=7", "optim.grad_clip=null", "optim.schedule=cosine"])
    assert (downstream.max_steps, downstream.grad_clip, downstream.schedule) == (7, None, "cosine")
    assert (pretrain.run.max_steps, pretrain.optim.grad_clip, pretrain.optim.schedule) == (7, None, "cosine")
    # The same mistakes give the same messages.
    cases = [
        (lambda items: apply_overrides(DownstreamConfig(), items), ""),
        (lambda items: resolve_config("mspm-ast-tiny", items), "run."),
    ]
    for apply, prefix in cases:
        with pytest.raises(ConfigError, match=rf"unknown key '{prefix}max_stepz'"):
            apply([f"{prefix}max_stepz=3"])
        with pytest.raises(ConfigError, match="is not key=value"):
            apply([f"{prefix}max_steps"])
        with pytest.raises(ConfigError, match=f"{prefix}max_steps"):
            apply([f"{prefix}max_steps=many"])


def test_raw_mappings_free_form_sections_and_list_items():
    from audiossl.train.config import PretrainConfig

    data = apply_overrides({"encoder": {"family": "ast"}}, ["encoder.overrides.dim=64"], schema=PretrainConfig)
    assert data == {"encoder": {"family": "ast", "overrides": {"dim": 64}}}
    with pytest.raises(ConfigError, match="unknown key 'encoder.famly'"):
        apply_overrides({}, ["encoder.famly=ast"], schema=PretrainConfig)
    assert apply_overrides({"a": 1}, ["b.c=[1, 2]"]) == {"a": 1, "b": {"c": [1, 2]}}  # no schema: anything goes
    plan = apply_overrides(IterationsConfig(), ["iterations.1.layer=4", "kmeans.n_init=1"])
    assert plan.iterations[1].layer == 4 and plan.kmeans.n_init == 1
    with pytest.raises(ConfigError, match="not an item of a list of 2"):
        apply_overrides(IterationsConfig(), ["iterations.5.layer=4"])


def test_hubert_shortcut_flags_are_set_items():
    plan = IterationsConfig(overrides=["run.max_steps=3"])
    items = flag_overrides(
        plan, pretrain="p.yaml", overrides=["run.seed=1"], clusters=[4, 8, 16], layers=[5], steps=[1, 2, 3]
    )
    changed = apply_overrides(plan, items)
    assert changed.pretrain == "p.yaml" and changed.overrides == ["run.max_steps=3", "run.seed=1"]
    assert [(s.n_clusters, s.layer, s.max_steps) for s in changed.iterations] == [(4, None, 1), (8, 5, 2), (16, 5, 3)]
    with pytest.raises(ConfigError, match="--steps"):
        flag_overrides(plan, steps=[1])


def test_yaml_errors_name_the_line_for_every_config(tmp_path):
    downstream = tmp_path / "downstream.yaml"
    downstream.write_text("mode: frozen\nmax_stepz: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(DownstreamConfig, downstream)
    assert info.value.path == str(downstream) and info.value.line == 2 and "'max_stepz'" in info.value.message
    downstream.write_text("mode: frozen\nlog_every: 3\nlr: fast\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(DownstreamConfig, downstream)
    assert info.value.line == 3 and "lr" in info.value.message
    pretrain = tmp_path / "pretrain.yaml"
    pretrain.write_text("run:\n  max_stepz: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        resolve_config(pretrain)
    assert info.value.path == str(pretrain) and info.value.line == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: 1\nb: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_yaml(broken)
    assert info.value.line is not None and "invalid YAML" in info.value.message


def test_yaml_errors_inside_list_items_name_their_line(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("iterations:\n  - n_clusters: 4\n  - n_clusters: 8\n    layr: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(IterationsConfig, plan)
    assert info.value.line == 4 and "'iterations.1.layr'" in info.value.message
    plan.write_text("iterations:\n  - n_clusters: 4\n  - n_clusters: many\n    layer: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(IterationsConfig, plan)
    assert info.value.line == 3 and "n_clusters" in info.value.message
