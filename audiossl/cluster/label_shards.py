"""``kmeans label`` sharded (``--shard I/N``) and in local processes (``--nj``), equal to one process.

The data dir's utterances (Kaldi order) are cut into chunks of ``chunk_size``; features are
computed in length-bucketed batches formed *within* a chunk, so an utterance's batch, hence its
features and labels, are the same whoever computes the chunk. Shard ``I/N`` labels a contiguous
block of chunks into ``OUT/shard-I-of-N/``: a label store (:mod:`audiossl.data.labelstore`) plus
``part.json`` (its range and the data dir's fingerprint) and ``quality.npz`` (its share of the
quality report: frames per cluster, the reference/cluster table, one inertia sum per batch).
:func:`merge_label_parts` merges the stores (H2's :func:`~audiossl.data.labelstore.merge_label_stores`,
byte-identical to one writer) and the quality shares: counts and tables are integers, the inertia
is the per-batch sums added in the unsharded order, so the merged report equals the unsharded one
exactly. ``num_jobs`` processes write such parts under the target and merge them the same way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.cluster.features import chunk_features
from audiossl.cluster.features import frame_rate as source_frame_rate
from audiossl.cluster.quality import QualityAccumulator, QualityReport, write_report
from audiossl.cluster.source import feature_source, load_kmeans_dir
from audiossl.data.dataset import AudioDataset
from audiossl.data.labelstore import LabelStore, LabelStoreWriter, merge_label_stores
from audiossl.data.shards import (
    Shard,
    advance,
    check_parts,
    find_parts,
    fingerprint,
    part_meta,
    part_path,
    run_jobs,
    split_range,
)
from audiossl.errors import DataError
from audiossl.fileio import atomic_path, atomic_write

#: Utterances per chunk: batches never span a chunk; shards and jobs split on chunk boundaries.
LABEL_CHUNK = 64

PART = "part.json"
QUALITY_STATE = "quality.npz"


@dataclass
class QualityShare:
    """One part's share of the quality report, mergeable exactly (see the module doc)."""

    counts: np.ndarray  # (K,) int64
    classes: list[str]  # reference classes in order of first appearance
    joint: np.ndarray  # (Y, K) int64
    inertias: list[float]  # one float64 sum per batch, in processing order
    reference: str | None = None  # the reference labelling's name (e.g. utt2spk)

    @classmethod
    def of(cls, accumulator: QualityAccumulator, inertias: list[float]) -> QualityShare:
        return cls(
            accumulator.counts.copy(),
            list(accumulator.classes),
            accumulator.joint.copy(),
            list(inertias),
            accumulator.reference,
        )

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                counts=self.counts,
                classes=np.array(self.classes, dtype=np.str_),
                joint=self.joint,
                inertias=np.array(self.inertias, dtype=np.float64),
                reference=np.str_(self.reference or ""),
            )

    @classmethod
    def load(cls, path: Path) -> QualityShare:
        try:
            with np.load(path, allow_pickle=False) as data:
                classes = [str(c) for c in data["classes"]]
                reference = str(data["reference"]) or None
                return cls(data["counts"], classes, data["joint"], data["inertias"].tolist(), reference)
        except (OSError, KeyError, ValueError) as error:
            raise DataError(f"unreadable quality share of a label shard ({error})", path) from None

    @staticmethod
    def combine(shares: Sequence[QualityShare]) -> tuple[QualityAccumulator, list[float]]:
        """An accumulator holding every share, as if they had been seen one after the other."""
        accumulator = QualityAccumulator(len(shares[0].counts), shares[0].reference)
        inertias: list[float] = []
        for share in shares:
            accumulator.counts += share.counts
            rows = [accumulator.classes.setdefault(name, len(accumulator.classes)) for name in share.classes]
            if len(accumulator.classes) > accumulator.joint.shape[0]:
                grown = np.zeros((len(accumulator.classes), accumulator.n_clusters), dtype=np.int64)
                grown[: accumulator.joint.shape[0]] = accumulator.joint
                accumulator.joint = grown
            if rows:
                accumulator.joint[rows] += share.joint
            inertias += share.inertias
        accumulator.inertia = _ordered_sum(inertias)
        return accumulator, inertias


def _ordered_sum(values: Sequence[float]) -> float:
    """Left-to-right float64 sum (the same additions as accumulating batch by batch)."""
    total = 0.0
    for value in values:
        total += value
    return total


@dataclass
class _LabelJob:
    """Labels a range of utterances into a part dir (picklable: runs in a job process)."""

    model_dir: str
    data_dir: str
    reference: str | None
    device: str | None
    chunk_size: int
    info: dict[str, Any]

    def __call__(self, task: tuple[range, str]) -> None:
        from audiossl.cluster.labels import _reference_frames, load_reference

        block, out = task
        kmeans, config = load_kmeans_dir(self.model_dir, self.device)
        source, config = feature_source(config)
        source = source.to(kmeans.device).eval()
        rate = source_frame_rate(source, config.sample_rate)
        dataset = AudioDataset(self.data_dir, sample_rate=config.sample_rate)
        ref_name, ref_path, ref_table = (
            load_reference(self.data_dir, self.reference) if self.reference else (None, None, None)
        )
        accumulator = QualityAccumulator(kmeans.n_clusters, ref_name)
        inertias: list[float] = []
        with LabelStoreWriter(out, kmeans.n_clusters, rate, info=self.info) as writer:
            for start in range(block.start, block.stop, self.chunk_size):
                indices = list(range(start, min(start + self.chunk_size, block.stop)))
                for ids, features in chunk_features(dataset, source, indices, config.batch_seconds, kmeans.device):
                    clusters, distances = kmeans.nearest(torch.cat(features))  # (N,), (N,)
                    frame_refs: list[str] | None = [] if ref_table is not None else None
                    for utt, values in zip(ids, clusters.cpu().split([len(f) for f in features]), strict=True):
                        writer.add(utt, values)
                        if frame_refs is not None:
                            frame_refs += _reference_frames(ref_table, utt, len(values), ref_path)
                    accumulator.update(clusters, None, frame_refs)
                    inertias.append(float(np.sum(distances.detach().cpu().double().numpy())))
                    advance(len(ids))
        QualityShare.of(accumulator, inertias).save(Path(out) / QUALITY_STATE)


def label_parts(
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    shard: Shard | str | None = None,
    num_jobs: int = 1,
    chunk_size: int = LABEL_CHUNK,
    reference: str | None = None,
    device: str | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Label shard ``shard`` of ``data_dir`` into its part dir (``out_dir`` itself when unsharded).

    Returns the dir written: a label store with ``quality.npz`` (and ``part.json`` for a shard).
    """
    from audiossl.data.targets import ARK, LABELS, SCP

    shard = Shard.parse(shard)
    target = Path(out_dir) if shard.whole else part_path(out_dir, shard)
    for name in (LABELS, ARK, SCP, PART):  # files of an earlier labelling that this one does not rewrite
        (target / name).unlink(missing_ok=True)
    dataset = AudioDataset(data_dir)
    ids = dataset.ids
    block = shard.range(len(ids), chunk_size)
    job = _LabelJob(str(model_dir), str(data_dir), reference, device, chunk_size, dict(info or {}))
    ranges = [r for r in split_range(block, max(1, num_jobs), chunk_size) if len(r)] or [block]
    if len(ranges) == 1:
        tasks = [(ranges[0], str(target))]
    else:
        tasks = [(r, str(target / f".job-{j}-of-{len(ranges)}")) for j, r in enumerate(ranges)]
    run_jobs(
        job,
        tasks,
        num_jobs=num_jobs,
        desc=f"labels (shard {shard})" if not shard.whole else "labels",
        total=len(block),
        unit="utt",
        describe=lambda task: f"utterances {task[0].start}..{task[0].stop - 1} of {data_dir}",
        show_progress=progress,
    )
    if len(tasks) > 1:
        _merge_dirs([Path(out) for _, out in tasks], target)
    if not shard.whole:
        meta = part_meta(
            shard, block, fingerprint(ids), model=str(Path(model_dir).resolve()), chunk=chunk_size, reference=reference
        )
        with atomic_write(target / PART) as handle:
            json.dump(meta, handle, indent=1)
    return target


def write_ark(label_dir: str | Path) -> None:
    """``labels.ark`` + ``labels.scp`` (Kaldi int32 vectors) beside a label store, streamed, atomically."""
    import kaldiio

    from audiossl.data.targets import ARK, SCP

    label_dir = Path(label_dir)
    store = LabelStore(label_dir)
    with atomic_path(label_dir / ARK) as ark_tmp, atomic_path(label_dir / SCP) as scp_tmp:
        with kaldiio.WriteHelper(f"ark,scp:{ark_tmp},{scp_tmp}") as writer:
            for utt in store:
                writer(utt, np.asarray(store.array(utt), dtype=np.int32))
        # kaldiio wrote the temporary ark name into the scp: point it at the final name.
        text = scp_tmp.read_text(encoding="utf-8").replace(f" {ark_tmp}:", f" {(label_dir / ARK).resolve()}:")
        scp_tmp.write_text(text, encoding="utf-8")


def _merge_dirs(parts: Sequence[Path], target: Path, *, remove: bool = True) -> None:
    """Merge the label stores and quality shares of ``parts`` (in order) into ``target``; remove the parts."""
    merge_label_stores(parts, target)  # info: the first part's (every part has the same)
    shares = [QualityShare.load(part / QUALITY_STATE) for part in parts]
    accumulator, inertias = QualityShare.combine(shares)
    QualityShare.of(accumulator, inertias).save(target / QUALITY_STATE)
    if remove:
        for part in parts:
            shutil.rmtree(part)


def quality_report(label_dir: str | Path) -> QualityReport:
    """The quality report of a finished label dir from its ``quality.npz``."""
    label_dir = Path(label_dir)
    store = LabelStore(label_dir)
    accumulator, _ = QualityShare.combine([QualityShare.load(label_dir / QUALITY_STATE)])
    return accumulator.report(frame_rate=store.frame_rate, utterances=len(store))


def merge_label_parts(out_dir: str | Path, *, keep_parts: bool = False) -> QualityReport:
    """Merge the shard parts ``OUT/shard-I-of-N`` of ``kmeans label --shard`` into the label dir ``OUT``.

    Checks the parts are one complete run (:func:`~audiossl.data.shards.check_parts`), merges
    their stores and quality shares exactly, writes the quality report, and removes the parts
    unless ``keep_parts``.
    """
    out_dir = Path(out_dir)
    found = [(str(path), _read_part(path)) for path in find_parts(out_dir)]
    ordered = [Path(location) for location, _ in check_parts(found, f"labels in {out_dir}")]
    _merge_dirs(ordered, out_dir, remove=not keep_parts)
    (out_dir / PART).unlink(missing_ok=True)
    report = quality_report(out_dir)
    write_report(report, out_dir)
    return report


def _read_part(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / PART).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"unfinished label shard (no {PART}): rerun that shard", path) from None
    except ValueError as error:
        raise DataError(f"unreadable {PART} ({error})", path / PART) from None
