"""Feature writers for :func:`audiossl.embed.extract`: npy, Kaldi ark/scp, safetensors and HDF5.

Extraction writes in chunks. Each chunk's file(s) appear atomically (temporary name, then
rename); the extraction's done list is what marks a chunk finished, so a chunk whose file was
renamed but never listed is an orphan that the next run deletes and recomputes. When every
utterance is done, :meth:`Writer.finish` writes the format's index in one atomic step:

========== ================================= =====================================================
format     chunk files                       index (what users open)
========== ================================= =====================================================
npy        ``npy/<utt>.npy`` (one per utt)   ``index.scp``: ``<utt> npy/<utt>.npy``
ark        ``ark/part-NNNNN.ark`` + ``.scp`` ``feats.scp`` (``kaldiio.load_scp``), absolute paths
safetensors ``safetensors/part-NNNNN.safetensors`` ``index.json``: ``{"files": {utt: shard}}``
hdf5       ``hdf5/part-NNNNN.h5``            ``feats.h5``: one external link per utterance
========== ================================= =====================================================

:func:`read_features` reads any of them back into ``{utt: array}``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from audiossl.data.kaldi import kaldi_sort_key, read_table, write_table
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path, atomic_write, load_npy

FORMATS = ("npy", "ark", "safetensors", "hdf5")


def _sync(path: Path) -> None:
    """Flush a file a library wrote by name to disk, so a done line never outlives its data after a power loss."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class Writer:
    """One output format: ``write_chunk`` (atomic per file) and ``finish`` (the index)."""

    #: Subdirectory of the output dir holding the chunk files.
    folder: str
    #: The file users open once the extraction is complete.
    index_name: str

    def __init__(self, out: Path):
        self.out = out

    def chunk_files(self, chunk: str, utts: list[str]) -> list[Path]:
        """Files chunk ``chunk`` of utterances ``utts`` writes."""
        raise NotImplementedError

    def write_chunk(self, chunk: str, items: Mapping[str, np.ndarray]) -> None:
        """Write the arrays of one chunk; every file appears whole or not at all."""
        raise NotImplementedError

    def finish(self, chunks: Mapping[str, list[str]]) -> Path:
        """Write the index over every finished chunk (chunk name -> its utterances)."""
        raise NotImplementedError


class NpyWriter(Writer):
    folder, index_name = "npy", "index.scp"

    def chunk_files(self, chunk: str, utts: list[str]) -> list[Path]:
        return [self.out / self.folder / f"{utt}.npy" for utt in utts]

    def write_chunk(self, chunk: str, items: Mapping[str, np.ndarray]) -> None:
        for utt, array in items.items():
            with atomic_write(self.out / self.folder / f"{utt}.npy", "wb") as handle:
                np.save(handle, array)

    def finish(self, chunks: Mapping[str, list[str]]) -> Path:
        table = {utt: f"{self.folder}/{utt}.npy" for utts in chunks.values() for utt in utts}
        write_table(self.out / self.index_name, table)
        return self.out / self.index_name


class ArkWriter(Writer):
    folder, index_name = "ark", "feats.scp"

    def chunk_files(self, chunk: str, utts: list[str]) -> list[Path]:
        return [self.out / self.folder / f"{chunk}.ark", self.out / self.folder / f"{chunk}.scp"]

    def write_chunk(self, chunk: str, items: Mapping[str, np.ndarray]) -> None:
        import kaldiio

        for utt, array in items.items():
            if array.ndim not in (1, 2):
                raise ConfigError(
                    f"Kaldi ark holds vectors and matrices, but {utt!r} has shape {array.shape}: "
                    "choose one layer, or another format for several layers of frames"
                )
        ark = (self.out / self.folder / f"{chunk}.ark").resolve()
        scp = io.StringIO()
        with atomic_path(ark) as tmp:
            kaldiio.save_ark(str(tmp), dict(items), scp=scp)
            _sync(tmp)
        # kaldiio wrote the temporary name into the scp lines: point them at the final one.
        lines = []
        for line in scp.getvalue().splitlines():
            utt, location = line.split(" ", 1)
            lines.append((utt, f"{ark}:{location.rsplit(':', 1)[1]}"))
        write_table(self.out / self.folder / f"{chunk}.scp", lines)

    def finish(self, chunks: Mapping[str, list[str]]) -> Path:
        table: dict[str, str] = {}
        for chunk in chunks:
            table.update(read_table(self.out / self.folder / f"{chunk}.scp"))
        write_table(self.out / self.index_name, table)
        return self.out / self.index_name


class SafetensorsWriter(Writer):
    folder, index_name = "safetensors", "index.json"

    def chunk_files(self, chunk: str, utts: list[str]) -> list[Path]:
        return [self.out / self.folder / f"{chunk}.safetensors"]

    def write_chunk(self, chunk: str, items: Mapping[str, np.ndarray]) -> None:
        from safetensors.numpy import save_file

        with atomic_path(self.out / self.folder / f"{chunk}.safetensors") as tmp:
            save_file({utt: np.ascontiguousarray(array) for utt, array in items.items()}, str(tmp))
            _sync(tmp)

    def finish(self, chunks: Mapping[str, list[str]]) -> Path:
        files = {utt: f"{self.folder}/{chunk}.safetensors" for chunk, utts in chunks.items() for utt in utts}
        ordered = dict(sorted(files.items(), key=lambda item: kaldi_sort_key(item[0])))
        with atomic_write(self.out / self.index_name) as handle:
            json.dump({"format": "safetensors", "files": ordered}, handle, indent=1)
        return self.out / self.index_name


class Hdf5Writer(Writer):
    folder, index_name = "hdf5", "feats.h5"

    def chunk_files(self, chunk: str, utts: list[str]) -> list[Path]:
        return [self.out / self.folder / f"{chunk}.h5"]

    def write_chunk(self, chunk: str, items: Mapping[str, np.ndarray]) -> None:
        import h5py

        with atomic_path(self.out / self.folder / f"{chunk}.h5") as tmp:
            with h5py.File(tmp, "w") as handle:
                for utt, array in items.items():
                    handle.create_dataset(utt, data=array)
            _sync(tmp)

    def finish(self, chunks: Mapping[str, list[str]]) -> Path:
        import h5py

        # External links resolve relative to feats.h5's own directory, so the output dir can move.
        with atomic_path(self.out / self.index_name) as tmp:
            with h5py.File(tmp, "w") as handle:
                for chunk, utts in sorted(chunks.items()):
                    for utt in utts:
                        handle[utt] = h5py.ExternalLink(f"{self.folder}/{chunk}.h5", utt)
        return self.out / self.index_name


WRITERS: dict[str, type[Writer]] = {
    "npy": NpyWriter,
    "ark": ArkWriter,
    "safetensors": SafetensorsWriter,
    "hdf5": Hdf5Writer,
}


def create_writer(name: str, out: Path) -> Writer:
    """The writer of format ``name`` into output dir ``out``."""
    if name not in WRITERS:
        raise ConfigError(f"unknown feature format {name!r}; known: {', '.join(FORMATS)}")
    return WRITERS[name](out)


def read_features(out: str | Path) -> dict[str, np.ndarray]:
    """Every utterance's array of a finished extraction dir, whatever its format."""
    out = Path(out)
    settings_path = out / "extract.json"
    if not settings_path.is_file():
        raise DataError("not an extraction dir (no extract.json)", out)
    settings = json.loads(settings_path.read_text())
    if not settings.get("complete"):
        raise DataError("the extraction is not complete; run it again to finish it", out)
    fmt = settings["format"]
    if fmt == "npy":
        return {utt: load_npy(out / rel, what="a feature array") for utt, rel in read_table(out / "index.scp").items()}
    if fmt == "ark":
        import kaldiio

        return {utt: np.asarray(array) for utt, array in kaldiio.load_scp(str(out / "feats.scp")).items()}
    if fmt == "safetensors":
        from safetensors.numpy import load_file

        files = json.loads((out / "index.json").read_text())["files"]
        shards = {rel: load_file(str(out / rel)) for rel in set(files.values())}
        return {utt: shards[rel][utt] for utt, rel in files.items()}
    if fmt == "hdf5":
        import h5py

        with h5py.File(out / "feats.h5", "r") as handle:
            return {utt: handle[utt][()] for utt in handle}
    raise DataError(f"unknown format {fmt!r} in extract.json", settings_path)
