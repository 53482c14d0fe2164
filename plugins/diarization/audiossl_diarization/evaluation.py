"""Diarization error rate (pyannote.metrics) with its components, and RTTM / UEM reading and writing.

DER = (missed speech + false alarm + speaker confusion) / total reference speech, after the
optimal one-to-one mapping of hypothesis to reference speakers (Hungarian algorithm), summed over
recordings. ``collar`` follows pyannote.metrics: a ``collar``-second zone *centred* on every
reference boundary is not scored, i.e. +/- collar/2, so pyannote's 0.25 is md-eval's ``-c 0.125``
and md-eval's usual ``-c 0.25`` is pyannote's 0.5. Overlapped speech is scored (``skip_overlap``
False).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from audiossl.errors import DataError, UserError
from audiossl.fileio import atomic_write

#: Collars reported by default (pyannote convention, seconds in all).
DEFAULT_COLLARS = (0.0, 0.25)
_COMPONENTS = {"total": "total", "missed": "missed detection", "false_alarm": "false alarm", "confusion": "confusion"}


def read_rttm(path: str | Path) -> dict[str, Any]:
    """``{uri: Annotation}`` of an RTTM file (pyannote.database's reader, errors naming the file)."""
    from pyannote.database.util import load_rttm

    path = Path(path)
    if not path.is_file():
        raise DataError("RTTM file not found", path)
    _check_lines(path, "RTTM", 9, "'SPEAKER <uri> <channel> <start> <duration> <NA> <NA> <speaker> <NA> <NA>'", (3, 4))
    try:
        return load_rttm(str(path))
    except Exception as error:  # pandas parse errors of many types
        raise DataError(f"not a valid RTTM file: {type(error).__name__}: {error}", path) from None


def read_uem(path: str | Path) -> dict[str, Any]:
    """``{uri: Timeline}`` of a UEM file (``<uri> <channel> <start> <end>`` lines)."""
    from pyannote.database.util import load_uem

    path = Path(path)
    if not path.is_file():
        raise DataError("UEM file not found", path)
    _check_lines(path, "UEM", 4, "'<uri> <channel> <start> <end>'", (2, 3))
    try:
        return load_uem(str(path))
    except Exception as error:
        raise DataError(f"not a valid UEM file: {type(error).__name__}: {error}", path) from None


def _check_lines(path: Path, kind: str, fields: int, layout: str, numbers: tuple[int, ...]) -> None:
    """Raise :class:`DataError` naming ``path:LINE`` for a line pandas would reject (or misread) later."""
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            parts = raw.decode("utf-8").split()
        except UnicodeDecodeError as error:
            raise DataError(f"not valid UTF-8 (byte {error.start})", path, number) from None
        if not parts:
            continue
        if len(parts) < fields:
            raise DataError(f"a {kind} line has {fields} or more fields: {layout}, got {len(parts)}", path, number)
        for index in numbers:
            try:
                value = float(parts[index])
            except ValueError:
                raise DataError(
                    f"field {index + 1} must be a number of seconds, got {parts[index]!r}", path, number
                ) from None
            if not math.isfinite(value) or value < 0:
                raise DataError(
                    f"field {index + 1} must be a finite number of seconds >= 0, got {parts[index]!r}", path, number
                )


def write_rttm(path: str | Path, annotations: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Write ``{uri: Annotation}`` as one RTTM file, atomically; an existing file needs ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError("the output exists; use --overwrite to replace it", path)
    with atomic_write(path) as handle:
        for uri in sorted(annotations):
            annotation = annotations[uri]
            annotation.uri = uri
            annotation.write_rttm(handle)
    return path


def diarization_error(
    references: Mapping[str, Any],
    hypotheses: Mapping[str, Any],
    uem: Mapping[str, Any] | None = None,
    collars: Iterable[float] = DEFAULT_COLLARS,
) -> dict[str, Any]:
    """DER and its components (seconds and rates) per collar, over every reference recording.

    A reference recording without a hypothesis counts as all missed; a hypothesis without a
    reference is an error (it would otherwise be silently ignored). Returns
    ``{"recordings": n, "collars": {"0": {"der", "missed", "false_alarm", "confusion", "total",
    "missed_rate", ...}}}``; seconds are summed over recordings, rates divide by the total.
    """
    from pyannote.core import Annotation
    from pyannote.metrics.diarization import DiarizationErrorRate

    extra = sorted(set(hypotheses) - set(references))
    if extra:
        raise DataError(f"hypotheses for recordings the reference does not have: {extra[:5]}")
    report: dict[str, Any] = {"recordings": len(references), "collars": {}}
    for collar in collars:
        metric = DiarizationErrorRate(collar=float(collar), skip_overlap=False)
        sums = dict.fromkeys(_COMPONENTS, 0.0)
        for uri in sorted(references):
            hypothesis = hypotheses.get(uri, Annotation(uri=uri))
            annotated = uem.get(uri) if uem is not None else None
            detail = metric(references[uri], hypothesis, uem=annotated, detailed=True)
            for name, key in _COMPONENTS.items():
                sums[name] += float(detail[key])
        total = sums["total"]
        entry = {"der": abs(metric), **sums}
        for name in ("missed", "false_alarm", "confusion"):
            entry[f"{name}_rate"] = sums[name] / total if total > 0 else 0.0
        report["collars"][f"{collar:g}"] = entry
    return report


def evaluate_rttm(
    reference: str | Path,
    hypothesis: str | Path,
    uem: str | Path | None = None,
    collars: Iterable[float] = DEFAULT_COLLARS,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """:func:`diarization_error` of two RTTM files (and an optional UEM); written to ``out`` (JSON) when given."""
    if out is not None and Path(out).exists() and not overwrite:
        raise UserError("the output exists; use --overwrite to replace it", out)
    report = diarization_error(read_rttm(reference), read_rttm(hypothesis), read_uem(uem) if uem else None, collars)
    if out is not None:
        with atomic_write(out) as handle:
            json.dump(report, handle, indent=2)
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """A small table: one line per collar with DER and its components (percent of reference speech)."""
    lines = [f"{'collar':>6}  {'DER%':>6}  {'missed%':>7}  {'FA%':>6}  {'conf%':>6}  {'speech s':>8}"]
    for collar, entry in report["collars"].items():
        lines.append(
            f"{collar:>6}  {100 * entry['der']:6.2f}  {100 * entry['missed_rate']:7.2f}  "
            f"{100 * entry['false_alarm_rate']:6.2f}  {100 * entry['confusion_rate']:6.2f}  {entry['total']:8.2f}"
        )
    return "\n".join(lines)
