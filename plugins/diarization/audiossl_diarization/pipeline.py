"""pyannote's ``SpeakerDiarization`` pipeline on a local segmentation model and audiossl embeddings.

The pipeline (pyannote.audio 4.0) slides the segmentation model over the recording, embeds
every (chunk, local speaker) with :class:`~audiossl_diarization.embedding.AudiosslSpeakerEmbedding`,
clusters the embeddings across chunks and stitches the clusters back into speaker turns.

Clustering is pyannote's agglomerative clustering (centroid linkage on length-normalised
embeddings), not VBx: VBx needs a PLDA trained for the embedding extractor, and none exists for an
arbitrary audiossl encoder. pyannote 4.0's constructor nevertheless loads a PLDA (from the hub by
default) whatever the clustering; it is handed an empty PLDA object, which agglomerative
clustering never touches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchaudio.functional

from audiossl.errors import AudioError, ConfigError
from audiossl_diarization.corpus import read_waveform
from audiossl_diarization.evaluation import diarization_error

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class PipelineConfig:
    """Hyper-parameters of the diarization pipeline."""

    threshold: float = 0.7
    """Clustering threshold: centroid-linkage distance between unit-length embeddings (0..2); lower: more speakers."""
    min_cluster_size: int = 3
    """Smaller clusters are merged into the closest large one (pyannote lowers it for few embeddings)."""
    min_duration_off: float = 0.0
    """Silences shorter than this (seconds) inside a speaker's speech are filled."""
    segmentation_step: float = 0.1
    """Step of the segmentation window, as a fraction of its duration."""
    exclude_overlap: bool = False
    """Embed only the non-overlapped speech of a local speaker (when there is enough of it)."""
    segmentation_threshold: float = 0.5
    """Activation threshold for a multi-label (non-powerset) segmentation model."""
    batch_size: int = 32
    """Chunks per batch for segmentation and for embedding."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 2.0:
            raise ConfigError(f"threshold must be in [0, 2], got {self.threshold}")
        if self.min_cluster_size < 1 or self.batch_size < 1:
            raise ConfigError("min_cluster_size and batch_size must be >= 1")
        if not 0.0 < self.segmentation_step <= 1.0:
            raise ConfigError(f"segmentation_step must be in (0, 1], got {self.segmentation_step}")


def _no_plda() -> Any:
    from pyannote.audio.core.plda import PLDA

    return object.__new__(PLDA)  # never used by agglomerative clustering; see the module doc


def build_pipeline(segmentation: Any, embedding: Any, config: PipelineConfig | None = None) -> Any:
    """An instantiated ``SpeakerDiarization`` pipeline on two loaded models (nothing is downloaded)."""
    from pyannote.audio.pipelines import SpeakerDiarization

    config = config or PipelineConfig()
    pipeline = SpeakerDiarization(
        segmentation=segmentation,
        segmentation_step=config.segmentation_step,
        embedding=embedding,
        embedding_exclude_overlap=config.exclude_overlap,
        plda=_no_plda(),
        clustering="AgglomerativeClustering",
        embedding_batch_size=config.batch_size,
        segmentation_batch_size=config.batch_size,
    )
    parameters: dict[str, Any] = {
        "segmentation": {"min_duration_off": config.min_duration_off},
        "clustering": {
            "method": "centroid",
            "min_cluster_size": config.min_cluster_size,
            "threshold": config.threshold,
        },
    }
    if not segmentation.specifications.powerset:
        parameters["segmentation"]["threshold"] = config.segmentation_threshold
    pipeline.instantiate(parameters)
    return pipeline


def audio_input(path: str | Path, sample_rate: int, uri: str | None = None) -> dict[str, Any]:
    """A pyannote in-memory file ``{"waveform": (1, T), "sample_rate", "uri"}`` at ``sample_rate``.

    Audio at another rate is resampled (torchaudio) with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError("audio file not found", path)
    try:
        waveform, rate = read_waveform(path)
    except RuntimeError as error:  # soundfile's LibsndfileError
        raise AudioError(f"cannot read audio: {error}", path) from None
    if waveform.numel() == 0:
        raise AudioError("no audio samples", path)
    if rate != sample_rate:
        log.warning("%s is at %d Hz; resampling it to the model's %d Hz", path, rate, sample_rate)
        waveform = torchaudio.functional.resample(waveform, rate, sample_rate)
    return {"waveform": waveform.unsqueeze(0), "sample_rate": sample_rate, "uri": uri or path.stem}


def diarize_files(
    pipeline: Any,
    paths: list[Path],
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> dict[str, Any]:
    """``{uri: pyannote.core.Annotation}`` for every audio file (uri: the file name without suffix)."""
    from pyannote.core import Segment

    uris = [Path(p).stem for p in paths]
    duplicates = sorted({u for u in uris if uris.count(u) > 1})
    if duplicates:
        raise ConfigError(f"several inputs share the name(s) {duplicates}; RTTM identifies recordings by name")
    sample_rate = int(pipeline._embedding.sample_rate)
    results = {}
    for path in paths:
        file = audio_input(path, sample_rate)
        with torch.no_grad():
            output = pipeline(file, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)
        # the last sliding window is padded past the end of the audio: keep speech inside the file
        duration = file["waveform"].shape[1] / sample_rate
        results[file["uri"]] = output.speaker_diarization.crop(Segment(0.0, duration), mode="intersection")
    return results


def tune_threshold(
    pipeline: Any, files: list[dict[str, Any]], thresholds: list[float], collar: float = 0.0
) -> list[tuple[float, float]]:
    """DER (at ``collar``) of every clustering threshold on ``files``; the pipeline keeps the best one.

    ``files`` are pyannote files with ``annotation`` (and optionally ``annotated``), e.g. a
    protocol's development subset. The pipeline runs in pyannote's training mode, which caches the
    segmentation and (powerset models) the embeddings in each file, so only the clustering is
    redone for each threshold. Ties go to the first threshold given.
    """
    from pyannote.core import Segment

    if not thresholds:
        raise ConfigError("no thresholds to try")
    # the references are copied before any run: in training mode pyannote works on (and caches into) the files
    references = {file["uri"]: file["annotation"].copy() for file in files}
    uem = {file["uri"]: file["annotated"].copy() for file in files if "annotated" in file}
    results = []
    previous = pipeline.training
    pipeline.training = True
    try:
        for threshold in thresholds:
            _set_threshold(pipeline, threshold)
            hypotheses = {}
            for file in files:
                with torch.no_grad():
                    output = pipeline(file)
                duration = pipeline._audio.get_duration(file)
                hypothesis = output.speaker_diarization.crop(Segment(0.0, duration), mode="intersection")
                # with a reference in the file, pyannote names the hypothesis speakers after the reference's;
                # fresh names keep the metric's own mapping from merging two of them under one name
                fresh = {label: f"SPEAKER_{i:02d}" for i, label in enumerate(sorted(hypothesis.labels(), key=str))}
                hypotheses[file["uri"]] = hypothesis.rename_labels(mapping=fresh)
            report = diarization_error(references, hypotheses, uem or None, collars=(collar,))
            results.append((float(threshold), float(report["collars"][f"{collar:g}"]["der"])))
    finally:
        pipeline.training = previous
    best = min(results, key=lambda item: item[1])[0]
    _set_threshold(pipeline, best)
    return results


def _set_threshold(pipeline: Any, threshold: float) -> None:
    parameters = pipeline.parameters(instantiated=True)
    parameters["clustering"]["threshold"] = float(threshold)
    pipeline.instantiate(parameters)
