"""Kaldi data dir -> lhotse Shar shards (``audiossl data export-shar``), and the index the shar backend reads.

Lhotse's Shar format (used by icefall, NeMo, ESPnet) stores a corpus as numbered shards: per
shard ``cuts.NNNNNN.jsonl.gz`` (one lhotse cut per utterance: id, duration, supervision with
text, speaker and every ``utt2<name>`` label) and one tar per data field: ``recording.NNNNNN.tar``
(the audio, re-encoded as 16-bit ``wav`` or ``flac``) and, with ``--labels``, ``frame_labels.NNNNNN.tar``
(the k-means labels of each utterance, a numpy array). Readers pick the fields they need and
read every shard sequentially.

Shard ``i`` holds utterances ``i*N .. (i+1)*N-1`` in Kaldi order (``N`` = shard size). Each shard
is written into ``OUT/.partial-i/`` and its files are renamed into ``OUT`` with the cuts file
last, so a shard whose cuts file exists is complete. ``export.json`` (settings and a fingerprint
of the utterance ids) is written first, ``shar_index.json`` (shards, counts, durations) last: an
export is complete when the index exists, and a killed export run again with the same settings
keeps the finished shards and writes the others.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from audiossl.data.kaldi import DataDir
from audiossl.data.shards import fingerprint
from audiossl.data.wav_scp import check_pipes, load_utterance
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write

logger = logging.getLogger(__name__)

INDEX_NAME = "shar_index.json"
EXPORT_NAME = "export.json"
AUDIO_FIELD = "recording"
LABEL_FIELD = "frame_labels"
FORMATS = ("original", "flac")
#: Containers lhotse's Shar audio writer can re-encode to losslessly.
_LOSSLESS = ("wav", "flac")
_QUANTILES = 101


def shard_name(field: str, index: int) -> str:
    """File name of one field of shard ``index`` (lhotse's ``field.NNNNNN.ext`` naming)."""
    ext = ".jsonl.gz" if field == "cuts" else ".tar"
    return f"{field}.{index:06d}{ext}"


def _audio_format(data: DataDir, requested: str) -> str:
    """``flac``, or for ``original`` the container of the plain files (wav/flac) when they all share one."""
    if requested == "flac":
        return "flac"
    suffixes = {Path(value.strip()).suffix.lower().lstrip(".") for value in data.wav_scp.values()}
    if len(suffixes) == 1 and next(iter(suffixes)) in _LOSSLESS:
        return next(iter(suffixes))
    logger.info("audio is not all in one lossless container (%s): storing FLAC", ", ".join(sorted(suffixes)))
    return "flac"


def _labels(data: DataDir, utt: str) -> tuple[str | None, str | None, dict[str, str]]:
    """(text, speaker, other utt2<name> labels) of one utterance."""
    text = None if data.text is None else data.text.get(utt)
    speaker = data.utt2spk.get(utt) if data.utt2spk else None
    return text, speaker, {name: table[utt] for name, table in sorted(data.labels.items()) if utt in table}


def _cut(data: DataDir, utt: str, audio_format: str, frame_labels: Any, allow_pipes: bool | None, channel: int | None):
    """One utterance as a lhotse cut with its audio in memory (encoded as ``audio_format``)."""
    from lhotse import Recording, SupervisionSegment

    samples, rate = load_utterance(data, utt, allow_pipes=allow_pipes, channel=channel)  # (T,) float32
    buffer = io.BytesIO()
    soundfile.write(
        buffer,
        samples.numpy(),
        rate,
        format=audio_format.upper(),
        subtype="PCM_16",  # lhotse's Shar audio writer stores 16-bit PCM in either container
    )
    recording = Recording.from_bytes(buffer.getvalue(), recording_id=utt)
    cut = recording.to_cut()
    cut.id = utt
    text, speaker, labels = _labels(data, utt)
    cut.supervisions = [
        SupervisionSegment(
            id=utt, recording_id=utt, start=0.0, duration=recording.duration, text=text, speaker=speaker, custom=labels
        )
    ]
    if frame_labels is not None:
        cut = cut.attach_tensor(LABEL_FIELD, np.asarray(frame_labels, dtype=np.int32))
    return cut


@dataclass
class ExportSettings:
    """What an export was made with; a resumed export must match it."""

    shard_size: int
    audio_format: str
    channel: int | None
    labels: str | None
    ids: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_shar(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    shard_size: int,
    audio_format: str = "original",
    label_dir: str | Path | None = None,
    allow_pipes: bool | None = None,
    channel: int | None = None,
    progress: bool = False,
) -> Path:
    """Write ``data_dir`` as Shar shards into ``out_dir``; returns the index path (see the module doc)."""
    from lhotse.shar import SharWriter

    from audiossl.data.targets import read_labels
    from audiossl.progress import progress as bar

    if shard_size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {shard_size}")
    if audio_format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {audio_format!r}")
    data = DataDir.load(data_dir)
    check_pipes(data, allow_pipes)
    ids = data.utterance_ids
    if not ids:
        raise DataError("data dir has no utterances (wav.scp is empty)", Path(data_dir) / "wav.scp")
    labels, frame_rate = (None, None) if label_dir is None else read_labels(label_dir)
    if labels is not None:
        missing = [utt for utt in ids if utt not in labels]
        if missing:
            raise DataError(f"{len(missing)} utterance(s) have no frame labels, e.g. {missing[0]!r}", label_dir)
    fmt = _audio_format(data, audio_format)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = ExportSettings(shard_size, fmt, channel, None if label_dir is None else str(label_dir), fingerprint(ids))
    _claim(out, settings)
    fields = {AUDIO_FIELD: fmt}
    if labels is not None:
        fields[LABEL_FIELD] = "numpy"
    num_shards = (len(ids) + shard_size - 1) // shard_size
    shards = []
    for index in (
        bar(range(num_shards), desc="export-shar", total=num_shards, unit="shard") if progress else range(num_shards)
    ):
        part = ids[index * shard_size : (index + 1) * shard_size]
        if not (out / shard_name("cuts", index)).is_file():
            partial = out / f".partial-{index}"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            with SharWriter(partial, fields=fields, shard_size=len(part), shard_offset=index) as writer:
                for utt in part:
                    writer.write(_cut(data, utt, fmt, None if labels is None else labels[utt], allow_pipes, channel))
            for field in [*fields, "cuts"]:  # cuts last: its presence marks the shard complete
                (partial / shard_name(field, index)).replace(out / shard_name(field, index))
            partial.rmdir()
        shards.append(_shard_summary(out, index))
    index_data = {
        "format": "audiossl-shar",
        "version": 1,
        "source": str(Path(data_dir)),
        "fields": sorted(fields),
        "audio_format": fmt,
        "label_frame_rate": frame_rate,
        "utterances": sum(shard["utterances"] for shard in shards),
        "seconds": sum(shard["seconds"] for shard in shards),
        "shards": shards,
    }
    with atomic_write(out / INDEX_NAME) as handle:
        json.dump(index_data, handle, indent=1)
    return out / INDEX_NAME


def _claim(out: Path, settings: ExportSettings) -> None:
    """Write ``export.json``, or check that the export found in ``out`` was made with the same settings."""
    path = out / EXPORT_NAME
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != settings.as_dict():
            changed = sorted(
                key for key in saved.keys() | settings.as_dict().keys() if saved.get(key) != settings.as_dict().get(key)
            )
            raise ConfigError(
                f"{out} holds an export made with other settings or data ({', '.join(changed)} differ): "
                "use another output dir or remove it",
                path,
            )
        return
    if any(out.glob("cuts.*.jsonl.gz")):
        raise ConfigError(f"{out} holds shards without {EXPORT_NAME}: use an empty output dir", out)
    with atomic_write(path) as handle:
        json.dump(settings.as_dict(), handle, indent=1)


def _shard_summary(out: Path, index: int) -> dict[str, Any]:
    """Counts and duration quantiles of a finished shard, read from its cuts file."""
    from lhotse import CutSet

    cuts = CutSet.from_jsonl_lazy(out / shard_name("cuts", index))
    pairs = [(cut.id, float(cut.duration)) for cut in cuts]
    durations = np.array([seconds for _, seconds in pairs])
    shortest = int(durations.argmin())
    return {
        "index": index,
        "utterances": len(pairs),
        "seconds": float(durations.sum()),
        "shortest": [pairs[shortest][0], float(durations[shortest])],
        "longest": float(durations.max()),
        "quantiles": np.quantile(durations, np.linspace(0, 1, _QUANTILES)).round(4).tolist(),
    }


@dataclass
class SharIndex:
    """A finished export: its shards and duration statistics (``shar_index.json``)."""

    path: Path
    info: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> SharIndex:
        """Read the index of a Shar dir; a DataError when it is not a complete export or a shard file is missing."""
        path = Path(path)
        index_path = path / INDEX_NAME
        if not index_path.is_file():
            what = (
                "an unfinished export (run export-shar again to finish it)"
                if (path / EXPORT_NAME).is_file()
                else "not a Shar export"
            )
            raise DataError(f"{what}: no {INDEX_NAME}", path)
        try:
            info = json.loads(index_path.read_text())
        except json.JSONDecodeError as error:
            raise DataError(f"not valid JSON: {error}", index_path) from None
        if AUDIO_FIELD not in info.get("fields", []):
            raise DataError(f"the export has no audio field {AUDIO_FIELD!r} (fields: {info.get('fields')})", index_path)
        index = cls(path, info)
        for shard in range(index.num_shards):
            for field in ("cuts", AUDIO_FIELD):
                if not index.file(field, shard).is_file():
                    raise DataError(f"shard {shard} of {index.num_shards}: missing {shard_name(field, shard)}", path)
        return index

    @property
    def num_shards(self) -> int:
        return len(self.info["shards"])

    def file(self, field: str, shard: int) -> Path:
        return self.path / shard_name(field, shard)

    def shortest(self) -> tuple[str, float]:
        utt, seconds = min((tuple(shard["shortest"]) for shard in self.info["shards"]), key=lambda pair: pair[1])
        return str(utt), float(seconds)

    @property
    def longest(self) -> float:
        return max(float(shard["longest"]) for shard in self.info["shards"])

    def duration_bins(self, num_buckets: int, max_seconds: float | None) -> list[float]:
        """Bucket boundaries (seconds, after cropping to ``max_seconds``) from the shards' duration quantiles."""
        points = np.concatenate([shard["quantiles"] for shard in self.info["shards"]])
        weights = np.concatenate(
            [np.full(_QUANTILES, shard["utterances"] / _QUANTILES) for shard in self.info["shards"]]
        )
        if max_seconds is not None:
            points = np.minimum(points, max_seconds)
        order = np.argsort(points, kind="stable")
        cumulative = np.cumsum(weights[order]) / weights.sum()
        bins = [float(points[order][np.searchsorted(cumulative, k / num_buckets)]) for k in range(1, num_buckets)]
        return sorted(set(bins))


def read_shar_labels(shar_dir: str | Path, fields: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Every utterance's labels as stored: ``{utt: {"text", "spk", <name>..., [frame_labels]}}`` (small exports)."""
    from lhotse import CutSet

    index = SharIndex.load(shar_dir)
    chosen = {"cuts": [index.file("cuts", shard) for shard in range(index.num_shards)]}
    for field in fields:
        chosen[field] = [index.file(field, shard) for shard in range(index.num_shards)]
    result = {}
    for cut in CutSet.from_shar(fields=chosen):
        supervision = cut.supervisions[0]
        entry = {"text": supervision.text, "spk": supervision.speaker, **(supervision.custom or {})}
        if LABEL_FIELD in fields:
            entry[LABEL_FIELD] = cut.load_custom(LABEL_FIELD)
        result[cut.id] = entry
    return result
