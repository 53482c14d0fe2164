"""The log window's means: each name over the steps that reported it (alternating speech/text parts)."""

from __future__ import annotations

import statistics

import pytest

from audiossl.engine.logging import WindowMeter


def test_a_part_present_in_some_steps_is_averaged_over_those_steps_only():
    steps = [
        {"loss": 2.0, "parts/speech": 1.5},
        {"loss": 4.0, "parts/text": 3.0},
        {"loss": 3.0, "parts/speech": 2.5},
        {"loss": 5.0, "parts/text": 5.0},
        {"loss": 1.0, "parts/speech": 0.5},
    ]
    meter = WindowMeter()
    for values in steps:
        meter.add(values, utterances=2, audio_seconds=1.0)
    means = meter.means()
    for name in ("loss", "parts/speech", "parts/text"):
        expected = statistics.mean(values[name] for values in steps if name in values)
        assert means[name] == pytest.approx(expected), name
    assert meter.steps == 5 and meter.utterances == 10
    meter.reset()
    assert meter.means() == {}
