"""Frame labels from a fitted k-means: written per utterance with their frame rate, read back, aligned.

A label dir holds:

* ``labels``: a Kaldi-style text table ``<utt> <l1> <l2> ...``, one cluster index per frame
  (fairseq's ``.km`` files, keyed by utterance);
* ``frame_rate``: the label rate in Hz on one line (100.0 for 10 ms fbank/MFCC frames, 50.0
  for the wav2vec 2.0 CNN), so a consumer never has to guess it;
* ``labels.ark`` + ``labels.scp`` (optional): the same as Kaldi int vectors (kaldiio);
* ``info.json``: the number of clusters, the model and the features they came from.

Labels and encoder frames must line up: :func:`check_label_alignment` allows a difference
of ``tolerance`` frames per utterance (edge effects of different framings; the labels are
then cropped or padded with their last value) and stops with a :class:`DataError` naming the
utterance and both lengths beyond it, the usual symptom of labels made at another frame
rate or with another front-end. :func:`convert_label_rate` resamples labels to the
encoder's rate first when the two rates differ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from audiossl.cluster.features import frame_rate as source_frame_rate
from audiossl.cluster.features import resolve_source, stream_features
from audiossl.cluster.kmeans import KMeans
from audiossl.cluster.quality import QualityAccumulator, QualityReport
from audiossl.data.kaldi import read_entries, read_table, write_table
from audiossl.errors import DataError
from audiossl.fileio import atomic_path, atomic_write

LABELS = "labels"
FRAME_RATE = "frame_rate"
ARK, SCP = "labels.ark", "labels.scp"
INFO = "info.json"

S = TypeVar("S", torch.Tensor, list)


def write_labels(
    out_dir: str | Path,
    labels: Mapping[str, torch.Tensor],
    frame_rate: float,
    *,
    ark: bool = False,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write a label dir (see the module doc); every file atomically, ``frame_rate`` and info last."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(out_dir / LABELS, {utt: " ".join(map(str, values.tolist())) for utt, values in labels.items()})
    if ark:
        import kaldiio

        arrays = {utt: values.to(torch.int32).numpy() for utt, values in sorted(labels.items())}
        with atomic_path(out_dir / ARK) as ark_tmp, atomic_path(out_dir / SCP) as scp_tmp:
            kaldiio.save_ark(str(ark_tmp), arrays, scp=str(scp_tmp))
            # kaldiio wrote the temporary ark name into the scp: point it at the final name.
            text = scp_tmp.read_text(encoding="utf-8").replace(f" {ark_tmp}:", f" {(out_dir / ARK).resolve()}:")
            scp_tmp.write_text(text, encoding="utf-8")
    with atomic_write(out_dir / INFO) as handle:
        json.dump({"frame_rate": frame_rate, "utterances": len(labels), **(info or {})}, handle, indent=1)
        handle.write("\n")
    with atomic_write(out_dir / FRAME_RATE) as handle:
        handle.write(f"{frame_rate!r}\n")
    return out_dir


def read_frame_rate(label_dir: str | Path) -> float:
    """The label rate in Hz recorded in ``label_dir/frame_rate``."""
    path = Path(label_dir) / FRAME_RATE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DataError("no frame_rate file beside the labels: the label rate is unknown", path) from None
    try:
        rate = float(text)
    except ValueError:
        raise DataError(f"frame rate {text!r} is not a number", path, 1) from None
    if not rate > 0 or math.isinf(rate):
        raise DataError(f"frame rate must be positive, got {text}", path, 1)
    return rate


def read_labels(path: str | Path) -> tuple[dict[str, torch.Tensor], float]:
    """Read a label dir (or its ``labels`` file): ``({utt: labels (F,) int64}, frame_rate in Hz)``.

    Reads the text table when present, else the Kaldi ark through ``labels.scp``.
    """
    path = Path(path)
    label_dir = path if path.is_dir() else path.parent
    table = path if path.is_file() else label_dir / LABELS
    rate = read_frame_rate(label_dir)
    if not table.is_file() and (label_dir / SCP).is_file():
        import kaldiio

        with kaldiio.ReadHelper(f"scp:{label_dir / SCP}") as reader:
            return {utt: torch.from_numpy(array.astype("int64")) for utt, array in reader}, rate
    labels: dict[str, torch.Tensor] = {}
    for entry in read_entries(table, allow_empty_value=True):
        try:
            values = [int(token) for token in entry.value.split()]
        except ValueError:
            raise DataError(f"labels of {entry.key!r} must be integers", table, entry.line) from None
        if entry.key in labels:
            raise DataError(f"duplicate utterance {entry.key!r}", table, entry.line)
        labels[entry.key] = torch.tensor(values, dtype=torch.int64)  # (F,)
    return labels, rate


def convert_label_rate(labels: S, from_rate: float, to_rate: float, num_frames: int | None = None) -> S:
    """Resample a label sequence from ``from_rate`` to ``to_rate`` Hz.

    Target frame t (starting at t / to_rate seconds) takes the label of the source frame that
    starts at or just before it, ``floor(t * from_rate / to_rate)``: 100 Hz -> 50 Hz keeps
    frames 0, 2, 4, ... (with 25 ms / 10 ms MFCC frames and the wav2vec 2.0 CNN at 16 kHz,
    CNN frame t covers exactly the samples of MFCC frame 2t); 50 Hz -> 100 Hz repeats each
    label twice. ``num_frames`` (default ``round(len * to_rate / from_rate)``) sets the output
    length; positions past the source's end repeat its last label.
    """
    length = len(labels)
    if num_frames is None:
        num_frames = round(length * to_rate / from_rate)
    if length == 0 or num_frames <= 0:
        return labels[:0]
    ratio = from_rate / to_rate
    index = [min(int(math.floor(t * ratio + 1e-9)), length - 1) for t in range(num_frames)]
    if isinstance(labels, torch.Tensor):
        return labels[torch.tensor(index, dtype=torch.long, device=labels.device)]
    return [labels[i] for i in index]


def check_label_alignment(
    labels: Mapping[str, S],
    frame_lengths_by_utt: Mapping[str, int],
    tolerance: int = 1,
    *,
    source: str | Path | None = None,
) -> dict[str, S]:
    """Labels of every utterance of ``frame_lengths_by_utt``, cut or padded to its frame count.

    An utterance without labels, or whose label count differs from its frame count by more
    than ``tolerance``, raises :class:`DataError` naming it and both lengths (``source`` is
    the label file named in the message).
    """
    aligned: dict[str, S] = {}
    for utt, frames in frame_lengths_by_utt.items():
        frames = int(frames)
        if utt not in labels:
            raise DataError(f"no labels for utterance {utt!r}", source)
        values = labels[utt]
        count = len(values)
        if abs(count - frames) > tolerance:
            raise DataError(
                f"utterance {utt!r} has {count} labels but the encoder gives {frames} frames "
                f"(more than {tolerance} apart): were the labels made at another frame rate or with another front-end?",
                source,
            )
        if count >= frames:
            aligned[utt] = values[:frames]
        elif isinstance(values, torch.Tensor):
            aligned[utt] = torch.cat([values, values[-1:].expand(frames - count)]) if count else values
        else:
            aligned[utt] = list(values) + [values[-1]] * (frames - count) if count else values
    return aligned


def load_reference(data_dir: str | Path, name: str) -> tuple[str, Path, dict[str, list[str]]]:
    """A reference labelling: ``name`` is a table file, a table of ``data_dir``, or ``utt2<name>`` there.

    Returns ``(name, path, {utt: tokens})``: one token per utterance (broadcast to every
    frame) or one per frame.
    """
    candidates = [Path(name), Path(data_dir) / name, Path(data_dir) / f"utt2{name}"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"reference labels {name!r} not found (tried {', '.join(map(str, candidates))})")
    return path.name, path, {utt: value.split() for utt, value in read_table(path).items()}


def label_data_dir(
    kmeans: KMeans,
    data_dir: str | Path,
    source: str | nn.Module,
    out_dir: str | Path,
    *,
    batch_seconds: float = 200.0,
    sample_rate: int = 16000,
    options: Mapping[str, Any] | None = None,
    device: str = "cpu",
    ark: bool = False,
    reference: str | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> QualityReport:
    """Label every utterance of ``data_dir`` with ``kmeans`` over ``source`` features; write a label dir.

    Every utterance gets exactly one label per frame of the source (its ``output_lengths``).
    With ``reference`` (see :func:`load_reference`) the report includes PNMI and purities.
    """
    module = resolve_source(source, sample_rate, options)
    rate = source_frame_rate(module, sample_rate)
    ref_name, ref_path, ref_table = load_reference(data_dir, reference) if reference else (None, None, None)
    accumulator = QualityAccumulator(kmeans.n_clusters, ref_name)
    labels: dict[str, torch.Tensor] = {}
    stream = stream_features(
        data_dir, module, batch_seconds=batch_seconds, sample_rate=sample_rate, device=device, progress=progress
    )
    for ids, features in stream:
        points = torch.cat(features)  # (N, D)
        clusters, distances = kmeans.nearest(points)
        per_utt = clusters.cpu().split([len(f) for f in features])
        frame_refs: list[str] | None = [] if ref_table is not None else None
        for utt, values in zip(ids, per_utt, strict=True):
            labels[utt] = values.to(torch.int32)  # compact: a copy, not a view of the batch
            if frame_refs is not None:
                frame_refs += _reference_frames(ref_table, utt, len(values), ref_path)
        accumulator.update(clusters, distances, frame_refs)
    write_labels(
        out_dir,
        labels,
        rate,
        ark=ark,
        info={"n_clusters": kmeans.n_clusters, "frames": sum(map(len, labels.values())), **(info or {})},
    )
    return accumulator.report(frame_rate=rate, utterances=len(labels))


def _reference_frames(table: Mapping[str, Sequence[str]], utt: str, frames: int, path: Path) -> list[str]:
    """An utterance's reference, one token per frame: broadcast, or checked against the frame count."""
    if utt not in table:
        raise DataError(f"no reference label for utterance {utt!r}", path)
    tokens = table[utt]
    if len(tokens) == 1:
        return list(tokens) * frames
    return check_label_alignment({utt: list(tokens)}, {utt: frames}, source=path)[utt]
