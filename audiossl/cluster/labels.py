"""Frame labels from a fitted k-means: written per utterance with their frame rate, read back, aligned.

A label dir is a label store (:mod:`audiossl.data.labelstore`, the default written): every
utterance's labels in one memory-mapped ``labels.npy`` (uint8 for k <= 256, else uint16) with
an offsets index, the sorted ids, ``info.json`` (``"format": "labelstore"``, the number of
clusters, the model and the features they came from) and ``frame_rate`` (the label rate in
Hz: 100.0 for 10 ms fbank/MFCC frames, 50.0 for the wav2vec 2.0 CNN), so a consumer never has
to guess it. On request it also holds

* ``labels``: a Kaldi-style text table ``<utt> <l1> <l2> ...`` (fairseq's ``.km`` files keyed
  by utterance; the only format of label dirs before the store, still read);
* ``labels.ark`` + ``labels.scp``: the same as Kaldi int vectors (kaldiio).

Labels and encoder frames must line up: :func:`check_label_alignment` allows a difference
of ``tolerance`` frames per utterance (edge effects of different framings; the labels are
then cropped or padded with their last value) and stops with a :class:`DataError` naming the
utterance and both lengths beyond it, the usual symptom of labels made at another frame
rate or with another front-end. :func:`convert_label_rate` resamples labels to the
encoder's rate first when the two rates differ. Reading, converting and aligning labels is
the data layer's (:mod:`audiossl.data.targets`, which attaches them to batches); the names
stay importable here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiossl.cluster.features import frame_rate as source_frame_rate
from audiossl.cluster.features import resolve_source, stream_features
from audiossl.cluster.kmeans import KMeans
from audiossl.cluster.quality import QualityAccumulator, QualityReport
from audiossl.data.kaldi import read_table, write_table
from audiossl.data.labelstore import STORE_FILES, LabelStore, LabelStoreWriter, write_label_store
from audiossl.data.targets import (  # noqa: F401  (reading, converting, aligning labels: the data layer's; re-exported)
    ARK,
    FRAME_RATE,
    INFO,
    LABELS,
    SCP,
    check_label_alignment,
    convert_label_rate,
    read_frame_rate,
    read_labels,
)
from audiossl.errors import DataError
from audiossl.fileio import atomic_path, atomic_write


def write_labels(
    out_dir: str | Path,
    labels: Mapping[str, torch.Tensor],
    frame_rate: float,
    *,
    ark: bool = False,
    text: bool = False,
    store: bool = True,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write a label dir (see the module doc): a label store, plus the text table / ark on request.

    ``info["n_clusters"]`` picks the store's dtype (default: the largest label + 1).
    ``store=False`` writes the older layout only (``labels`` table, ``info.json``,
    ``frame_rate``). Every file is written atomically, ``frame_rate`` and ``info.json`` last;
    text or ark files of an earlier run that were not asked for again are removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, wanted in ((LABELS, text or not store), (ARK, ark), (SCP, ark)):
        if not wanted:
            (out_dir / name).unlink(missing_ok=True)
    if text or not store:
        write_table(out_dir / LABELS, {utt: " ".join(map(str, values.tolist())) for utt, values in labels.items()})
    if ark:
        _write_ark(out_dir, sorted(labels.items()))
    if store:
        n_clusters = (info or {}).get("n_clusters")
        if n_clusters is None:
            n_clusters = max((int(v.max()) for v in labels.values() if len(v)), default=0) + 1
        return write_label_store(out_dir, labels, int(n_clusters), frame_rate, info=info)
    (out_dir / INFO).unlink(missing_ok=True)
    for name in STORE_FILES:  # an older layout written over a store: no stale store files
        (out_dir / name).unlink(missing_ok=True)
    with atomic_write(out_dir / INFO) as handle:
        json.dump({"frame_rate": frame_rate, "utterances": len(labels), **(info or {})}, handle, indent=1)
        handle.write("\n")
    with atomic_write(out_dir / FRAME_RATE) as handle:
        handle.write(f"{frame_rate!r}\n")
    return out_dir


def _write_ark(out_dir: Path, items: Iterable[tuple[str, Any]]) -> None:
    """``labels.ark`` + ``labels.scp`` (Kaldi int32 vectors), streamed item by item, both atomically."""
    import kaldiio

    with atomic_path(out_dir / ARK) as ark_tmp, atomic_path(out_dir / SCP) as scp_tmp:
        with kaldiio.WriteHelper(f"ark,scp:{ark_tmp},{scp_tmp}") as writer:
            for utt, values in items:
                writer(utt, np.asarray(values, dtype=np.int32))
        # kaldiio wrote the temporary ark name into the scp: point it at the final name.
        text = scp_tmp.read_text(encoding="utf-8").replace(f" {ark_tmp}:", f" {(out_dir / ARK).resolve()}:")
        scp_tmp.write_text(text, encoding="utf-8")


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
    stream = stream_features(
        data_dir, module, batch_seconds=batch_seconds, sample_rate=sample_rate, device=device, progress=progress
    )
    out_dir = Path(out_dir)
    for name in (LABELS, ARK, SCP):  # files of an earlier labelling that this one does not rewrite
        (out_dir / name).unlink(missing_ok=True)
    with LabelStoreWriter(out_dir, kmeans.n_clusters, rate, info=info) as writer:  # labels spill to disk as they come
        for ids, features in stream:
            points = torch.cat(features)  # (N, D)
            clusters, distances = kmeans.nearest(points)
            per_utt = clusters.cpu().split([len(f) for f in features])
            frame_refs: list[str] | None = [] if ref_table is not None else None
            for utt, values in zip(ids, per_utt, strict=True):
                writer.add(utt, values)
                if frame_refs is not None:
                    frame_refs += _reference_frames(ref_table, utt, len(values), ref_path)
            accumulator.update(clusters, distances, frame_refs)
        utterances = writer.utterances
    if ark:
        store = LabelStore(out_dir)
        _write_ark(out_dir, ((utt, store.array(utt)) for utt in store))
    return accumulator.report(frame_rate=rate, utterances=utterances)


def _reference_frames(table: Mapping[str, Sequence[str]], utt: str, frames: int, path: Path) -> list[str]:
    """An utterance's reference, one token per frame: broadcast, or checked against the frame count."""
    if utt not in table:
        raise DataError(f"no reference label for utterance {utt!r}", path)
    tokens = table[utt]
    if len(tokens) == 1:
        return list(tokens) * frames
    return check_label_alignment({utt: list(tokens)}, {utt: frames}, source=path)[utt]
