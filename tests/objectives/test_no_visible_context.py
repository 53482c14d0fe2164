"""A mask that hides every token (no visible context) is refused, naming the key, for every objective that masks.

Static impossibilities (``mask.ratio`` 1, span ``mask.start_prob`` 1, a span mask that masks nothing)
fail when the config is built; a count (or a number of spans) that covers a whole item fails when
that item's mask is drawn, naming the key and the item's token count.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from objective_helpers import tiny_encoder

from audiossl.errors import ConfigError
from audiossl.objectives import OBJECTIVES, MaskConfig, create_objective
from audiossl.objectives.masking import masked_counts, sample_mask, span_mask


def _masking_objectives() -> list[str]:
    """Every registered objective whose config has a ``mask`` (the objectives that mask input tokens)."""
    names = []
    for name in OBJECTIVES.names():
        fields = {f.name for f in dataclasses.fields(OBJECTIVES.get(name).config_class)}
        if "mask" in fields:
            names.append(name)
    return names


MASKING = _masking_objectives()


def test_the_masking_objectives_are_all_checked() -> None:
    # dino masks nothing (it crops views); every other built-in objective masks tokens.
    assert {"mspm", "wav2vec2", "w2vbert", "hubert"} <= set(MASKING)
    for name in OBJECTIVES.names():
        if name == "distill":  # needs a teacher checkpoint; its has_token_mask is checked in test_distill.py
            continue
        objective = create_objective(name, tiny_encoder("conformer", "frame"), _extra(name))
        assert objective.has_token_mask == (name in MASKING), name


def _extra(name: str) -> dict:
    return {"num_clusters": 4, "code_dim": 8} if name == "hubert" else {}


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"kind": "random", "ratio": 1.0}, "mask.ratio"),
        ({"kind": "chunk", "count": 400, "ratio": 1.0}, "mask.ratio"),
        ({"kind": "random", "ratio": 0.0}, "mask.ratio"),
        ({"kind": "random", "count": 0}, "mask.count"),
        ({"kind": "span", "start_prob": 1.0, "span_length": 1}, "mask.start_prob"),
        ({"kind": "span", "start_prob": 0.0, "min_spans": 0}, "mask.start_prob"),
    ],
)
def test_static_impossibilities_fail_when_the_config_is_built(settings: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        MaskConfig(**settings)
    for name in MASKING:  # through every objective's config, as a mapping
        with pytest.raises(ConfigError, match=rf"^{key}: "):
            create_objective(name, tiny_encoder("conformer", "frame"), {**_extra(name), "mask": settings})


def test_legitimate_settings_still_build() -> None:
    MaskConfig(kind="random", ratio=0.99)
    MaskConfig(kind="span", start_prob=0.0, min_spans=1)  # exactly min_spans spans per item
    MaskConfig(kind="random", count=4, start_prob=1.0)  # start_prob is a span setting, unused here


def test_count_equal_to_the_tokens_is_refused_with_the_token_count() -> None:
    lengths = torch.tensor([30, 12])
    with pytest.raises(ConfigError) as caught:
        masked_counts(lengths, count=12)
    message = str(caught.value)
    assert "mask.count=12 would mask all 12 tokens of batch item 1" in message and "no visible context" in message
    assert masked_counts(lengths, count=11).tolist() == [11, 11]  # one token left visible is fine


def test_a_ratio_that_rounds_up_to_a_one_token_item_is_refused() -> None:
    # max(1, floor(0.5 * 1)) = 1 masked token of 1: nothing left to see.
    with pytest.raises(ConfigError, match=r"mask\.ratio=0\.5 would mask all 1 tokens of batch item 1"):
        masked_counts(torch.tensor([10, 1]), ratio=0.5)


def test_spans_that_must_cover_the_whole_item_are_refused() -> None:
    # 11 tokens, spans of 10: two places to start, and min_spans=2 uses both -> all 11 tokens masked
    # (the wav2vec 2.0 defaults on an 11-token item).
    with pytest.raises(ConfigError) as caught:
        span_mask(torch.tensor([40, 11]), 40, start_prob=0.065, span_length=10, min_spans=2)
    message = str(caught.value)
    assert "all 11 tokens of batch item 1" in message and "mask.min_spans=2" in message
    # One more token and a random choice of 2 of 3 starts may leave a token visible: allowed.
    span_mask(torch.tensor([40, 12]), 40, start_prob=0.065, span_length=10, min_spans=2)


@pytest.mark.parametrize("name", MASKING)
def test_every_masking_objective_refuses_a_mask_over_every_token(name: str) -> None:
    encoder = tiny_encoder("conformer", "frame")
    settings = {"kind": "random", "count": 6} if name == "mspm" else {"kind": "span", "span_length": 6, "min_spans": 1}
    objective = create_objective(name, encoder, {**_extra(name), "mask": settings})
    tokens = torch.tensor([20, 6])  # the second item has exactly 6 tokens
    with pytest.raises(ConfigError, match=r"all 6 tokens of batch item 1"):
        objective.sample_mask(tokens, 20, torch.Generator().manual_seed(0))
    mask = objective.sample_mask(torch.tensor([20, 7]), 20, torch.Generator().manual_seed(0))
    assert (~mask[1, :7]).any()  # with one token more, some context stays visible


def test_sample_mask_keeps_drawing_legal_masks() -> None:
    config = MaskConfig(kind="chunk", count=400, ratio=0.8)
    mask = sample_mask(config, torch.tensor([512, 100]), 512, grid_width=8, generator=torch.Generator().manual_seed(0))
    assert mask.sum(dim=1).tolist() == [400, 80]
