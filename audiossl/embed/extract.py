"""Extract features of every utterance of a data dir to disk, resumably (``audiossl extract``).

The output dir holds ``extract.json`` (the settings, and ``complete`` once finished), the
format's chunk files (see :mod:`audiossl.embed.writers`) and ``done.txt``, one line per
finished chunk: ``<chunk> <utt> <utt> ...``. A chunk counts as done only once its line is
written whole (flushed and synced, newline included), after its files were renamed into place.
A run that is killed therefore leaves at worst a chunk whose files exist but are not listed, or
a last line without its newline: the next run with the same settings cuts that line, deletes
unlisted chunk files and temporaries, skips every listed utterance and computes the rest.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiossl.data.kaldi import DataDir
from audiossl.data.shards import advance
from audiossl.data.wav_scp import check_pipes, describe_utterance, load_utterance
from audiossl.embed.embedder import Embedder
from audiossl.embed.loading import load
from audiossl.embed.writers import FORMATS, create_writer
from audiossl.errors import ConfigError, DataError, UserError, spell_option
from audiossl.fileio import atomic_write
from audiossl.models import latest_checkpoint
from audiossl.progress import progress

logger = logging.getLogger(__name__)

SETTINGS_NAME = "extract.json"
DONE_NAME = "done.txt"


class OutputExistsError(UserError):
    """The output path exists and is not an unfinished extraction with the same settings."""


@dataclass
class ExtractResult:
    """What :func:`extract` did: the index file, utterances in total, skipped (already done) and computed."""

    index: Path
    total: int
    skipped: int
    computed: int
    already_complete: bool = False
    """The output was a finished extraction with the same settings and utterances: nothing was done."""


def _check_ids(utts: list[str], data_dir: Path) -> None:
    for utt in utts:
        if "/" in utt or "\\" in utt or utt.startswith("."):
            raise DataError(f"utterance id {utt!r} cannot name a file (no '/', '\\' or leading '.')", data_dir)


def read_done(out: Path) -> dict[str, list[str]]:
    """Finished chunks of ``out`` (chunk -> utterances); an unterminated last line is cut from the file."""
    path = out / DONE_NAME
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    if len(complete) != len(raw):
        logger.warning("%s: dropping an unfinished last line (an interrupted write)", path)
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    chunks: dict[str, list[str]] = {}
    for line in complete.decode("utf-8").splitlines():
        fields = line.split()
        if fields:
            chunks[fields[0]] = fields[1:]
    return chunks


def _append_done(out: Path, chunk: str, utts: list[str]) -> None:
    with open(out / DONE_NAME, "a", encoding="utf-8") as handle:
        handle.write(" ".join([chunk, *utts]) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _prepare_output(out: Path, settings: dict[str, Any], overwrite: bool) -> bool:
    """Create ``out``, resume it (same settings) or refuse it; ``overwrite`` removes an old one.

    Returns True when ``out`` holds a finished extraction with the same settings (the caller
    checks it covers the same utterances), False when there is work to do.
    """
    if out.exists() or out.is_symlink():
        previous = None
        if out.is_dir() and (out / SETTINGS_NAME).is_file():
            previous = json.loads((out / SETTINGS_NAME).read_text())
        if overwrite:
            if out.is_dir() and previous is None and any(out.iterdir()):
                raise OutputExistsError(
                    f"{_overwrite()} only replaces a file or an earlier extraction, and this dir is neither: remove "
                    "it yourself if it should go",
                    out,
                )
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            else:
                out.unlink()
        elif previous is None:
            raise OutputExistsError(f"output path exists (use {_overwrite()} to replace it)", out)
        elif {k: v for k, v in previous.items() if k != "complete"} != settings:
            keys = (set(settings) | set(previous)) - {"complete"}  # a setting added or dropped counts too
            changed = sorted(k for k in keys if previous.get(k) != settings.get(k))
            if previous.get("complete"):
                raise OutputExistsError(
                    f"output path holds a finished extraction with other settings ({', '.join(changed)}); "
                    f"use {_overwrite()} to redo it with these settings",
                    out,
                )
            raise OutputExistsError(
                f"output path holds an unfinished extraction with other settings ({', '.join(changed)}); "
                f"rerun with the same settings to resume it, or use {_overwrite()}",
                out,
            )
        else:
            return bool(previous.get("complete"))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / SETTINGS_NAME) as handle:
        json.dump({**settings, "complete": False}, handle, indent=1)
    return False


def _clean_leftovers(out: Path, folder: str, keep: set[Path]) -> None:
    """Delete chunk files that no done line lists, and temporaries of interrupted writes."""
    directory = out / folder
    if not directory.is_dir():
        return
    removed = 0
    for path in directory.iterdir():
        if path.is_file() and (path.name.startswith(".") or path not in keep):
            path.unlink()
            removed += 1
    if removed:
        logger.info("removed %d file(s) of an interrupted chunk in %s", removed, directory)


def _overwrite() -> str:
    """The overwrite option as the user's interface spells it."""
    return spell_option("overwrite", True, flag="--overwrite")


def _layer_setting(layer: int | str | None) -> int | str:
    if layer is None or layer == "last":
        return "last"
    if layer == "all":
        return "all"
    try:
        return int(layer)
    except (TypeError, ValueError):
        option = spell_option("layer", flag="--layer")
        raise ConfigError(f"{option} must be an integer, 'last' or 'all', got {layer!r}") from None


def extraction_settings(
    model: str | Path | nn.Module,
    data_dir: str | Path,
    layer: int | str | None,
    pooling: str | None,
    format: str,
    bf16: bool,
    channel: int | None,
) -> dict[str, Any]:
    """What ``extract.json`` records: a resume or a merge needs all of it to agree."""
    settings = {
        "model": str(Path(model).resolve()) if isinstance(model, (str, Path)) else type(model).__name__,
        "data": str(Path(data_dir).resolve()),
        "layer": _layer_setting(layer),
        "pooling": pooling if pooling not in (None, "none") else "none",
        "format": format,
        "dtype": "bfloat16" if bf16 else "float32",
    }
    if channel is not None:  # only then: extractions made before this setting existed still resume
        settings["channel"] = channel
    return settings


def extract(
    model: str | Path | nn.Module,
    data_dir: str | Path,
    out: str | Path,
    *,
    layer: int | str | None = None,
    pooling: str | None = None,
    format: str = "npy",
    overwrite: bool = False,
    batch_seconds: float = 200.0,
    device: str | None = None,
    bf16: bool = False,
    chunk_size: int = 64,
    allow_pipes: bool | None = None,
    on_rate_mismatch: str = "resample",
    channel: int | None = None,
    block: range | None = None,
) -> ExtractResult:
    """Write the features of every utterance of ``data_dir`` into the dir ``out`` (see the module doc).

    ``model``: a path for :func:`audiossl.load`, or a loaded model. ``layer``: None/"last" (the
    final hidden states), an index into ``EncoderOutput.layers`` or "all" (arrays (L, S, D)).
    ``pooling``: None/"none" (frames (S, D)), "mean" (D,) or "stats" (2D,). ``format``: npy, ark,
    safetensors or hdf5. An existing ``out`` is resumed when it is an unfinished extraction with
    the same settings, left as it is when it is a finished one with the same settings and
    utterances (``already_complete``), replaced with ``overwrite``, and refused otherwise
    (other settings, other utterances, or not an extraction). ``allow_pipes``: run
    wav.scp pipe commands (None: the process policy, see :mod:`audiossl.data.wav_scp`).
    ``channel``: which channel of multi-channel audio (None: their mixdown to mono, logged once).
    ``block``: only these utterances (indices in Kaldi order), chunks numbered from
    ``block.start // chunk_size``, so a block starting on a chunk boundary writes the chunks the
    whole extraction would (:mod:`audiossl.embed.extract_shards`, which adds ``shard`` and
    ``num_jobs`` to this function: ``audiossl.embed.extract`` is that one).
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown feature format {format!r}; known: {', '.join(FORMATS)}")
    pooling = None if pooling in (None, "none") else pooling
    if pooling not in (None, "mean", "stats"):
        raise ConfigError(f"unknown pooling {pooling!r}; known: none, mean, stats")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    layer_setting = _layer_setting(layer)
    if format == "ark" and layer_setting == "all" and pooling is None:
        formats = ", ".join(spell_option("format", name, flag="--format") for name in ("npy", "safetensors", "hdf5"))
        raise ConfigError(f"Kaldi ark holds matrices: frames of all layers need another format ({formats})")
    data_dir, out = Path(data_dir), Path(out)
    data = DataDir.load(data_dir)
    utts = data.utterance_ids
    _check_ids(utts, data_dir)
    first_chunk = 0
    if block is not None:
        utts, first_chunk = utts[block.start : block.stop], block.start // chunk_size
    check_pipes(data, allow_pipes)  # refuse a pipe entry before writing anything (None: the process policy)
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        newest = latest_checkpoint(model)  # pin the run dir's checkpoint: a resume must not mix two of them
        model = newest if newest is not None else model
    settings = extraction_settings(model, data_dir, layer_setting, pooling, format, bf16, channel)
    complete = _prepare_output(out, settings, overwrite)
    writer = create_writer(format, out)
    done = {chunk: names for chunk, names in read_done(out).items() if names}
    finished = {utt for names in done.values() for utt in names}
    if complete:  # a rerun of a finished extraction: done if it covers the same utterances (like a recipe stage)
        if finished != set(utts):
            new, gone = len(set(utts) - finished), len(finished - set(utts))
            raise OutputExistsError(
                f"output path holds a finished extraction of other utterances ({new} in {data_dir} not in it, "
                f"{gone} in it not in {data_dir}); use {_overwrite()} to redo it",
                out,
            )
        logger.info("%s: already complete (%d utterances, same settings); nothing to do", out, len(utts))
        index = out / writer.index_name
        return ExtractResult(index=index, total=len(utts), skipped=len(utts), computed=0, already_complete=True)
    keep = {path for chunk, names in done.items() for path in writer.chunk_files(chunk, names)}
    _clean_leftovers(out, writer.folder, keep)
    todo = [utt for utt in utts if utt not in finished]
    if finished:
        logger.info("resuming %s: %d utterance(s) done, %d to go", out, len(utts) - len(todo), len(todo))
    if todo:
        loaded = load(model, device=device) if isinstance(model, (str, Path)) else model
        embedder = Embedder(
            loaded,
            device=device,
            dtype=torch.bfloat16 if bf16 else None,
            max_batch_seconds=batch_seconds,
            on_rate_mismatch=on_rate_mismatch,  # type: ignore[arg-type]
        )
        layers = None if layer_setting == "last" else layer_setting
        next_index = max(first_chunk, 1 + max((int(chunk.split("-")[1]) for chunk in done), default=-1))
        warned = False
        chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
        for offset, chunk_utts in enumerate(progress(chunks, desc="extract", total=len(chunks), unit="chunk")):
            name = f"part-{next_index + offset:05d}"
            audio = [(*load_utterance(data, utt, None, allow_pipes, channel=channel), utt) for utt in chunk_utts]
            describe = functools.partial(describe_utterance, data)  # the message names the file, not only the id
            waveforms = embedder.conform_rates(audio, warn=not warned, describe=describe)  # one warning per run
            warned = warned or any(rate != embedder.sample_rate for _, rate, _ in audio)
            result = embedder.embed(waveforms, sample_rate=embedder.sample_rate, layers=layers, pooling=pooling)
            arrays = {utt: np.ascontiguousarray(result[i].numpy()) for i, utt in enumerate(chunk_utts)}
            writer.write_chunk(name, arrays)
            _append_done(out, name, chunk_utts)
            done[name] = chunk_utts
            advance(len(chunk_utts))  # a job's share of the parent's progress bar (sharded runs)
    index = writer.finish(done)
    with atomic_write(out / SETTINGS_NAME) as handle:
        json.dump({**settings, "complete": True}, handle, indent=1)
    return ExtractResult(index=index, total=len(utts), skipped=len(utts) - len(todo), computed=len(todo))
