"""Data backends are chosen through a registry, like front-ends and encoders."""

from __future__ import annotations

import pytest

from audiossl.data.backends import DATA_BACKENDS, TrainData, create_train_data, data_backend
from audiossl.data.config import DataConfig
from audiossl.errors import ConfigError
from audiossl.train.config import config_from_dict, resolve_config


def test_registry_lists_both_built_in_backends():
    assert {"default", "fairseq2"} <= set(DATA_BACKENDS.names())
    assert data_backend("default").create is TrainData
    assert data_backend("fairseq2").check is not None


def test_unknown_backend_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown data backend 'nope'; known: default, fairseq2"):
        data_backend("nope")
    with pytest.raises(ConfigError, match=r"data.backend: unknown data backend 'nope'; known: .*default.*fairseq2"):
        config_from_dict({"data": {"backend": "nope"}})
    with pytest.raises(ConfigError, match="unknown data backend"):
        create_train_data([tmp_path], DataConfig(backend="nope"))
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  sample_rate: 16000\n  backend: nope\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        resolve_config(path)
    assert info.value.path == str(path) and info.value.line == 3
