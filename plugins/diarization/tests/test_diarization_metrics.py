"""DER by hand against pyannote.metrics through our report; RTTM round trip; refusal to overwrite."""

from __future__ import annotations

import json

import pytest
from audiossl_diarization.evaluation import diarization_error, evaluate_rttm, read_rttm, write_rttm
from pyannote.core import Annotation, Segment, Timeline

from audiossl.errors import DataError, UserError


def _annotation(uri: str, turns: list[tuple[float, float, str]]) -> Annotation:
    annotation = Annotation(uri=uri)
    for start, end, label in turns:
        annotation[Segment(start, end)] = label
    return annotation


def _turns(annotation: Annotation) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, label) for s, _, label in annotation.itertracks(yield_label=True)]


REFERENCE = {"r1": _annotation("r1", [(0.0, 10.0, "A"), (10.0, 20.0, "B")])}
# X covers 0-12 (2 s of B's speech given to A's match), Y covers 12-18 (B's last 2 s missed), Z 21-22 (false alarm)
HYPOTHESIS = {"r1": _annotation("r1", [(0.0, 12.0, "X"), (12.0, 18.0, "Y"), (21.0, 22.0, "Z")])}


def test_der_and_components_by_hand():
    report = diarization_error(REFERENCE, HYPOTHESIS, collars=(0.0, 1.0))
    exact = report["collars"]["0"]
    assert exact["total"] == pytest.approx(20.0)
    assert exact["confusion"] == pytest.approx(2.0)  # 10-12: B labelled as X (mapped to A)
    assert exact["missed"] == pytest.approx(2.0)  # 18-20
    assert exact["false_alarm"] == pytest.approx(1.0)  # 21-22
    assert exact["der"] == pytest.approx(5.0 / 20.0)
    assert exact["confusion_rate"] == pytest.approx(0.1)
    # collar 1.0 (pyannote: +/- 0.5 s) removes [-0.5, 0.5], [9.5, 10.5] and [19.5, 20.5] of the reference from scoring
    collared = report["collars"]["1"]
    assert collared["total"] == pytest.approx(20.0 - 0.5 - 1.0 - 0.5)
    assert collared["confusion"] == pytest.approx(1.5)  # 10.5-12
    assert collared["missed"] == pytest.approx(1.5)  # 18-19.5
    assert collared["false_alarm"] == pytest.approx(1.0)
    assert collared["der"] == pytest.approx(4.0 / 18.0)


def test_uem_and_missing_or_extra_recordings():
    uem = {"r1": Timeline([Segment(0.0, 15.0)])}
    scored = diarization_error(REFERENCE, HYPOTHESIS, uem=uem, collars=(0.0,))["collars"]["0"]
    assert scored["total"] == pytest.approx(15.0) and scored["der"] == pytest.approx(2.0 / 15.0)
    two = {**REFERENCE, "r2": _annotation("r2", [(0.0, 5.0, "C")])}
    report = diarization_error(two, HYPOTHESIS, collars=(0.0,))["collars"]["0"]  # r2 has no hypothesis
    assert report["missed"] == pytest.approx(7.0) and report["der"] == pytest.approx(10.0 / 25.0)
    with pytest.raises(DataError, match="does not have"):
        diarization_error(REFERENCE, {**HYPOTHESIS, "zz": Annotation(uri="zz")})


def test_rttm_round_trip_and_cli_report(tmp_path):
    reference, hypothesis = tmp_path / "ref.rttm", tmp_path / "hyp.rttm"
    write_rttm(reference, REFERENCE)
    write_rttm(hypothesis, HYPOTHESIS)
    assert _turns(read_rttm(hypothesis)["r1"]) == _turns(HYPOTHESIS["r1"])
    with pytest.raises(UserError, match="--overwrite"):
        write_rttm(hypothesis, REFERENCE)
    assert _turns(read_rttm(hypothesis)["r1"]) == _turns(HYPOTHESIS["r1"])
    out = tmp_path / "der.json"
    report = evaluate_rttm(reference, hypothesis, out=out)
    assert json.loads(out.read_text()) == report
    assert report["collars"]["0"]["der"] == pytest.approx(0.25)
    with pytest.raises(UserError, match="--overwrite"):
        evaluate_rttm(reference, hypothesis, out=out)
    with pytest.raises(DataError, match="not found"):
        read_rttm(tmp_path / "absent.rttm")
