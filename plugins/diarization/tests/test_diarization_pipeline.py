"""pyannote's diarization pipeline end to end on audiossl embeddings and a locally trained segmentation model."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from audiossl_diarization.embedding import load_embedding
from audiossl_diarization.evaluation import diarization_error, read_rttm
from audiossl_diarization.pipeline import PipelineConfig, audio_input, build_pipeline, diarize_files
from audiossl_diarization.segmentation import load_segmentation, save_segmentation

from audiossl.errors import AudioError, DataError, UserError

STEP = 0.001  # seconds per frame of the slow reference DER


def _frame_labels(annotation, duration: float) -> dict[str, np.ndarray]:
    frames = int(round(duration / STEP))
    active = {}
    for segment, _, label in annotation.itertracks(yield_label=True):
        row = active.setdefault(label, np.zeros(frames, dtype=bool))
        row[int(round(segment.start / STEP)) : int(round(segment.end / STEP))] = True
    return active


def slow_der(reference, hypothesis, duration: float) -> float:
    """DER without collar by frames of 1 ms and the best one-to-one speaker mapping found by brute force."""
    ref, hyp = _frame_labels(reference, duration), _frame_labels(hypothesis, duration)
    frames = int(round(duration / STEP))
    n_ref = sum(ref.values(), np.zeros(frames, dtype=int))
    n_hyp = sum(hyp.values(), np.zeros(frames, dtype=int))
    best = 0
    ref_labels, hyp_labels = list(ref), list(hyp)
    for chosen in itertools.permutations(hyp_labels + [None] * len(ref_labels), len(ref_labels)):
        matched = sum(int((ref[r] & hyp[h]).sum()) for r, h in zip(ref_labels, chosen, strict=True) if h is not None)
        best = max(best, matched)
    errors = np.maximum(n_ref, n_hyp).sum() - best
    return float(errors / n_ref.sum())


@pytest.fixture(scope="module")
def pipeline(checkpoint, segmentation):
    torch.set_num_threads(2)
    return build_pipeline(
        load_segmentation(segmentation),
        load_embedding(checkpoint),
        PipelineConfig(threshold=0.7, segmentation_step=0.25),
    )


def test_pipeline_diarizes_and_der_is_right(pipeline, corpus_dir):
    uris = (corpus_dir / "test.lst").read_text().split()
    paths = [corpus_dir / "wav" / f"{uri}.wav" for uri in uris]
    hypotheses = diarize_files(pipeline, paths)
    references = read_rttm(corpus_dir / "test.rttm")
    assert sorted(hypotheses) == sorted(uris)
    report = diarization_error(references, hypotheses, collars=(0.0, 0.25))
    for uri, path in zip(uris, paths, strict=True):
        assert len(hypotheses[uri]) > 0  # speech was found
        duration = sf.info(path).duration
        expected = slow_der(references[uri], hypotheses[uri], duration)
        one = diarization_error({uri: references[uri]}, {uri: hypotheses[uri]}, collars=(0.0,))["collars"]["0"]
        assert one["der"] == pytest.approx(expected, abs=0.01)
    exact = report["collars"]["0"]
    assert exact["der"] == pytest.approx((exact["missed"] + exact["false_alarm"] + exact["confusion"]) / exact["total"])
    assert report["collars"]["0.25"]["total"] < exact["total"]  # the collar removed time from scoring


def test_two_speakers_are_found(pipeline, corpus_dir):
    uri = (corpus_dir / "test.lst").read_text().split()[0]
    file = audio_input(corpus_dir / "wav" / f"{uri}.wav", 16000)
    output = pipeline(file, min_speakers=2, max_speakers=2)
    labels = output.speaker_diarization.labels()
    assert len(labels) == 2
    assert output.speaker_embeddings.shape == (2, pipeline._embedding.dimension)
    assert np.isfinite(output.speaker_embeddings).all()
    # the two centroids differ: the clusters were made from different embeddings
    assert not np.allclose(output.speaker_embeddings[0], output.speaker_embeddings[1])


def test_other_rate_is_resampled_with_a_warning(corpus_dir, tmp_path, caplog):
    uri = (corpus_dir / "test.lst").read_text().split()[0]
    audio, rate = sf.read(corpus_dir / "wav" / f"{uri}.wav", dtype="float32")
    sf.write(tmp_path / "low.wav", audio[::2], rate // 2)
    # a log record (no source line printed under the CLI), naming the file
    with caplog.at_level(logging.WARNING):
        file = audio_input(tmp_path / "low.wav", 16000)
    assert any("low.wav is at 8000 Hz; resampling it to the model's 16000 Hz" in r.getMessage() for r in caplog.records)
    assert file["sample_rate"] == 16000 and abs(file["waveform"].shape[1] - len(audio)) <= 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        audio_input(corpus_dir / "wav" / f"{uri}.wav", 16000)  # the right rate: no warning
    assert not [r for r in caplog.records if "resampling" in r.getMessage()]
    with pytest.raises(AudioError, match="not found"):
        audio_input(tmp_path / "absent.wav", 16000)


def test_segmentation_file_round_trip(segmentation, tmp_path):
    model = load_segmentation(segmentation)
    from audiossl_diarization.segmentation import SegmentationConfig

    again = save_segmentation(model, SegmentationConfig(lstm_hidden=8, linear_hidden=8), tmp_path / "again.pt")
    state = torch.load(again, weights_only=True)  # plain data: readable without unpickling code
    assert state["specifications"]["powerset_max_classes"] == 2
    reloaded = load_segmentation(again)
    chunk = torch.randn(2, 1, 32000)
    torch.testing.assert_close(reloaded(chunk), model(chunk))
    assert model(chunk).shape[-1] == 4  # powerset of 2 speakers, at most 2 at once: {}, {1}, {2}, {1, 2}
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a segmentation model"):
        load_segmentation(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="nothing is downloaded"):
        load_segmentation(tmp_path / "pyannote-segmentation-3.0")


def test_tuning_reuses_nothing_it_should_not(checkpoint, segmentation, corpus_dir):
    from audiossl_diarization.corpus import load_protocol
    from audiossl_diarization.pipeline import tune_threshold

    files = list(load_protocol(corpus_dir).test())[:1]
    config = PipelineConfig(segmentation_step=0.25)
    pipeline = build_pipeline(load_segmentation(segmentation), load_embedding(checkpoint), config)
    references = {f["uri"]: f["annotation"].copy() for f in files}
    uem = {f["uri"]: f["annotated"].copy() for f in files}
    results = tune_threshold(pipeline, files, [0.05, 2.0])
    assert [t for t, _ in results] == [0.05, 2.0]
    best = min(results, key=lambda item: item[1])
    assert pipeline.clustering.threshold == best[0] and not pipeline.training
    # a DER is what a fresh pipeline at that threshold gives (the cached segmentation and embeddings are right)
    for threshold, der in results[:1]:
        fresh = build_pipeline(
            load_segmentation(segmentation),
            load_embedding(checkpoint),
            PipelineConfig(threshold=threshold, segmentation_step=0.25),
        )
        hypotheses = diarize_files(fresh, [corpus_dir / "wav" / f"{f['uri']}.wav" for f in files])
        assert diarization_error(references, hypotheses, uem, collars=(0.0,))["collars"]["0"]["der"] == pytest.approx(
            der, abs=1e-6
        )
