"""Evaluate conversions on cross-speaker pairs of a data dir: target-speaker similarity and content.

For every pair (an utterance of speaker A converted to speaker B) three versions are scored:
the source as it is, its *resynthesis* (source features through the vocoder, no matching: what
the vocoder alone does to the voice) and the *conversion*. Each speaker's utterances are split
once: B's pool (what conversion matches against) and B's held-out references are disjoint, and A's
reference excludes the source utterance, so no score compares a recording with itself.

* Similarity: cosine of speaker embeddings to B's reference (mean embedding) and to A's;
  ``gain = to_target - to_source`` and ``target_wins`` (fraction of pairs closer to B).
  Embeddings come from a trained speaker-verification run of the ``sv`` plugin when given
  (``sv_run``), otherwise from the encoder itself: the mean over frames of the average of its
  layer-normalised layers (the frozen baseline of SUPERB-style probing; weaker than a trained
  SV model, and in the same feature family the matching used, so read it as indicative).
* Content: WER and CER of a trained ``asr`` run on the converted, resynthesised and source speech,
  when ``asr_run`` is given and the data dir has transcripts; otherwise not measured (said so).
* Pitch (:mod:`audiossl_vc.pitch_metrics`): F0 RMSE in cents and voicing decision error of every
  output (tracked with pYIN) against the source's track with the key shift applied -- the shift a
  ``neucosvc`` vocoder applies (``auto``: the target pool's register), so the kNN-VC vocoders, which
  sing whatever pitch the matched frames carry, are held to the same melody -- and against the
  sources' ``utt2f0`` reference when the data has one (synthetic singing).

:func:`compare_vocoders` runs the same pairs through several vocoders (e.g. kNN-VC + HiFi-GAN,
kNN-VC + mel/Griffin-Lim and NeuCoSVC) and writes them side by side.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from audiossl.audio.io import load_audio
from audiossl.data.kaldi import DataDir
from audiossl.data.singing import load_f0_track
from audiossl.data.wav_scp import check_pipes, load_utterance
from audiossl.downstream.trainer import load_downstream
from audiossl.errors import DataError
from audiossl.fileio import atomic_write
from audiossl.progress import progress
from audiossl_vc.convert import Converter, write_wav
from audiossl_vc.features import encode_layers
from audiossl_vc.matching import knn_match
from audiossl_vc.pitch import key_shift as resolve_key_shift
from audiossl_vc.pitch_metrics import PitchTally, reference_on_grid
from audiossl_vc.pool import TargetSource, build_pool
from audiossl_vc.vocoder import load_vocoder

CONDITIONS = ("source", "resynthesis", "converted")


@dataclass
class EvaluationReport:
    """Per-condition similarity means, content error rates (or None), and how they were measured."""

    pairs: list[dict]
    similarity: dict[str, dict[str, float]]
    embedding: str
    content: dict[str, float] | None
    notes: list[str] = field(default_factory=list)
    pitch: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per condition: pooled F0 RMSE (cents), VDE and frames against the key-shifted source track
    (``converted``, ``resynthesis``) and against utt2f0 (``*_vs_reference``), when the sources have one."""

    def to_text(self) -> str:
        lines = [f"{len(self.pairs)} cross-speaker pairs; speaker embedding: {self.embedding}"]
        lines.append(f"{'condition':<12} {'cos->target':>11} {'cos->source':>11} {'gain':>7} {'target wins':>11}")
        for name in CONDITIONS:
            s = self.similarity[name]
            numbers = f"{s['to_target']:>11.3f} {s['to_source']:>11.3f} {s['gain']:>7.3f} {s['target_wins']:>11.2f}"
            lines.append(f"{name:<12} {numbers}")
        if self.pitch:
            lines.append(f"{'pitch':<28} {'F0 RMSE (cents)':>15} {'VDE (%)':>8}")
            for name, value in self.pitch.items():
                lines.append(f"{name:<28} {value['f0_rmse_cents']:>15.1f} {100 * value['vde']:>8.1f}")
        if self.content is not None:
            lines.append("content (ASR %): " + ", ".join(f"{k} {v:.1f}" for k, v in self.content.items()))
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines) + "\n"


def encoder_embedding(converter: Converter, waveform: torch.Tensor) -> np.ndarray:
    """Frozen speaker embedding (D,): frame mean of the average of the encoder's layer-normalised layers."""
    model = converter.model
    layers = tuple(range(model.encoder.num_layers))
    stacked, lengths = encode_layers(model, waveform[None], torch.tensor([waveform.shape[-1]]), layers)  # (L,1,N,D)
    frames = F.layer_norm(stacked[:, 0, : int(lengths[0])], stacked.shape[-1:]).mean(dim=0)  # (N, D)
    return frames.mean(dim=0).numpy()


def _split_speakers(data: DataDir, rng: random.Random) -> dict[str, tuple[list[str], list[str]]]:
    """Per speaker: (pool utterances, held-out reference utterances); a quarter (at least one) is held out."""
    by_speaker: dict[str, list[str]] = {}
    for utt, speaker in data.utt2spk.items():
        by_speaker.setdefault(speaker, []).append(utt)
    splits = {}
    for speaker, utts in sorted(by_speaker.items()):
        utts = sorted(utts)
        if len(utts) < 2:
            continue
        rng.shuffle(utts)
        held = max(1, len(utts) // 4)
        splits[speaker] = (sorted(utts[held:]), sorted(utts[:held]))
    return splits


def _pool_source(
    data: DataDir, data_dir: str | Path, splits: dict, speaker: str, pool_data: str | Path | None
) -> TargetSource:
    """Where ``speaker``'s target pool comes from: its pool split of ``data_dir``, or all of it in ``pool_data``."""
    if pool_data is None:
        items = [(u, None) for u in splits[speaker][0]]
        return TargetSource(f"speaker {speaker!r} of {data_dir}", Path(data_dir) / "utt2spk", items, data)
    other = DataDir.load(pool_data)
    held_out = set(splits[speaker][1])
    utts = sorted(u for u, s in other.utt2spk.items() if s == speaker and u not in held_out)
    if not utts:
        raise DataError(f"speaker {speaker!r} has no utterance here to pool", Path(pool_data) / "utt2spk")
    return TargetSource(
        f"speaker {speaker!r} of {pool_data}", Path(pool_data) / "utt2spk", [(u, None) for u in utts], other
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def evaluate_conversions(
    model_path: str | Path,
    vocoder_run: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    pairs: int = 8,
    k: int = 4,
    seed: int = 0,
    min_seconds: float = 5.0,
    sv_run: str | Path | None = None,
    asr_run: str | Path | None = None,
    pool_data: str | Path | None = None,
    source_data: str | Path | None = None,
    key_shift: str | float | None = None,
) -> EvaluationReport:
    """Convert ``pairs`` random cross-speaker pairs of ``data_dir``, write them under ``out_dir``, score them.

    Target pools come from the pool part of each speaker's utterances in ``data_dir``, or, with
    ``pool_data``, from all of the speaker's utterances in that data dir (e.g. the training split of
    the same speakers: more target speech; the held-out references of ``data_dir`` are left out).
    With ``source_data`` the sources come from that data dir (e.g. speech converted to singers of
    ``data_dir``). ``key_shift`` (``auto``, the default, or semitones) is what a ``neucosvc``
    vocoder applies and what every vocoder's pitch is scored against.
    """
    out_dir = Path(out_dir)
    data = DataDir.load(data_dir)
    check_pipes(data)  # wav.scp pipes: refused before anything runs unless allowed (audiossl --allow-pipes)
    for extra in (pool_data, source_data):
        if extra is not None:
            check_pipes(DataDir.load(extra))
    sources_data = DataDir.load(source_data) if source_data is not None else data
    rng = random.Random(seed)
    splits = _split_speakers(data, rng)
    source_splits = _split_speakers(sources_data, rng) if source_data is not None else splits
    if source_data is None and len(splits) < 2:
        raise DataError("need at least two speakers with two or more utterances each in utt2spk", Path(data_dir))
    if not splits or not source_splits:
        where = data_dir if not splits else source_data
        raise DataError("need speakers with two or more utterances each in utt2spk", Path(where))
    converter = Converter.load(model_path, vocoder_run)
    rate, hop = converter.sample_rate, converter.vocoder.spec.hop
    speakers, source_speakers = sorted(splits), sorted(source_splits)
    chosen = []
    for index in range(pairs):
        if source_data is None:
            source_spk, target_spk = rng.sample(speakers, 2)
        else:
            source_spk, target_spk = rng.choice(source_speakers), rng.choice(speakers)
        utt = rng.choice(source_splits[source_spk][0] + source_splits[source_spk][1])
        chosen.append((f"pair{index:03d}", utt, source_spk, target_spk))
    pools = {}
    converted_dir = DataDir(text={} if sources_data.text is not None else None)
    resynth_dir = DataDir(text={} if sources_data.text is not None else None)
    tallies = {c: PitchTally() for c in CONDITIONS if c != "source"}
    reference_tallies = {c: PitchTally() for c in CONDITIONS}
    pitch_records: dict[str, dict] = {}
    notes: list[str] = []
    for pair_id, utt, source_spk, target_spk in progress(chosen, desc="convert", total=len(chosen)):
        if target_spk not in pools:
            source = _pool_source(data, data_dir, splits, target_spk, pool_data)
            pools[target_spk] = build_pool(
                converter.model, converter.vocoder.spec.layer_spec, source,
                selector=converter.vocoder.selector, min_seconds=min_seconds, with_pitch=True,
            )  # fmt: skip
        waveform, _ = load_utterance(sources_data, utt, rate)
        features = converter.features(waveform)
        track = converter.pitch(waveform, features.shape[0])
        where = f"{source_data or data_dir} (utterance {utt!r})"
        if bool(track.voiced.any()):
            shift = resolve_key_shift(
                key_shift or "auto", track, pools[target_spk].pitch, where, pools[target_spk].path
            )
        else:  # nothing to sing: kept (similarity and content still count), no key shift, no F0 frames to score
            shift = 0.0
            notes.append(f"{where}: no voiced frames (pYIN), converted without a key shift")
        rendered = converter.vocode(_match(features, pools[target_spk], k), track.shifted(shift))
        outputs = [
            ("converted", converted_dir, rendered, shift),
            ("resynthesis", resynth_dir, converter.vocode(features, track), 0.0),
        ]
        reference = load_f0_track(sources_data, utt)
        record: dict = {"key_shift": shift}
        if reference is not None:
            sung = reference_on_grid(*reference, hop, rate, features.shape[0])
            record["source_vs_reference"] = reference_tallies["source"].add(track.f0, sung)
        for name, table, wave, semitones in outputs:
            path = write_wav(out_dir / name / "wav" / f"{pair_id}.wav", wave, rate).resolve()
            table.wav_scp[pair_id] = str(path)
            table.utt2spk[pair_id] = target_spk if name == "converted" else source_spk
            if table.text is not None:
                table.text[pair_id] = sources_data.text.get(utt, "")
            out_track = converter.pitch(load_audio(path, rate)[0], features.shape[0])
            record[name] = tallies[name].add(out_track.f0, track.shifted(semitones).f0)
            if reference is not None:
                scaled = sung * 2.0 ** (semitones / 12.0)
                record[f"{name}_vs_reference"] = reference_tallies[name].add(out_track.f0, scaled)
        pitch_records[pair_id] = record
    converted_dir.save(out_dir / "converted")
    resynth_dir.save(out_dir / "resynthesis")
    sources = DataDir(text={} if sources_data.text is not None else None)
    for pair_id, utt, source_spk, _ in chosen:
        value = sources_data.wav_scp[utt]
        sources.wav_scp[pair_id] = str(Path(value).resolve()) if sources_data.segments is None else value
        sources.utt2spk[pair_id] = source_spk
        if sources.text is not None:
            sources.text[pair_id] = sources_data.text.get(utt, "")
    if sources_data.segments is None:
        sources.save(out_dir / "sources")

    if sv_run is not None:
        embed, embed_rate, embedding = *_sv_embedder(sv_run), f"trained sv run {sv_run}"
    else:
        embed, embed_rate = (lambda w: encoder_embedding(converter, w)), rate
        embedding = "mean-pooled layer average of the encoder"
        notes.append("similarity from frozen encoder features, not a trained speaker model (pass --sv-run for one)")
    cache: dict[tuple[int, str], np.ndarray] = {}

    def original(table: DataDir, utt: str) -> np.ndarray:
        key = (id(table), utt)
        if key not in cache:
            cache[key] = embed(load_utterance(table, utt, embed_rate)[0])
        return cache[key]

    def reference(table: DataDir, utts: list[str]) -> np.ndarray:
        return np.mean([original(table, u) for u in utts], axis=0)

    records, sums = [], {c: {"to_target": 0.0, "to_source": 0.0, "gain": 0.0, "target_wins": 0.0} for c in CONDITIONS}
    for pair_id, utt, source_spk, target_spk in progress(chosen, desc="score", total=len(chosen)):
        target_ref = reference(data, splits[target_spk][1])
        source_utts = [u for u in source_splits[source_spk][0] + source_splits[source_spk][1] if u != utt]
        source_ref = reference(sources_data, source_utts)
        record = {"pair": pair_id, "utterance": utt, "source_speaker": source_spk, "target_speaker": target_spk}
        for condition in CONDITIONS:
            if condition == "source":
                vector = original(sources_data, utt)
            else:
                vector = embed(load_audio(out_dir / condition / "wav" / f"{pair_id}.wav", embed_rate)[0])
            to_target, to_source = _cosine(vector, target_ref), _cosine(vector, source_ref)
            record[condition] = {"to_target": to_target, "to_source": to_source}
            for key, value in (("to_target", to_target), ("to_source", to_source), ("gain", to_target - to_source),
                               ("target_wins", float(to_target > to_source))):  # fmt: skip
                sums[condition][key] += value
        record["pitch"] = pitch_records[pair_id]
        records.append(record)
    similarity = {c: {key: value / len(chosen) for key, value in sums[c].items()} for c in CONDITIONS}
    pitch = {name: tally.summary() for name, tally in tallies.items()}
    for name, tally in reference_tallies.items():
        if tally.frames:
            pitch[f"{name}_vs_reference"] = tally.summary()
    if not converter.vocoder.needs_pitch:
        notes.append(
            f"a {converter.vocoder.spec.kind} vocoder sings the pitch of the matched frames; its F0 is scored against "
            "the source's key-shifted like NeuCoSVC's"
        )

    content = None
    if asr_run is None:
        notes.append("content preservation not measured (pass --asr-run with a trained asr run)")
    elif sources_data.text is None:
        notes.append(f"content preservation not measured: {source_data or data_dir} has no text")
    else:
        content = _asr_content(asr_run, out_dir, sources_data.segments is None)
    report = EvaluationReport(records, similarity, embedding, content, notes, pitch)
    with atomic_write(out_dir / "metrics.json") as handle:
        pools_from = str(pool_data) if pool_data is not None else "pool split of the data"
        json.dump(
            {"task": "vc", "vocoder": str(vocoder_run), "kind": converter.vocoder.spec.kind, "k": k, "seed": seed,
             "pools": pools_from, "sources": str(source_data or data_dir), **asdict(report)},
            handle, indent=2,
        )  # fmt: skip
        handle.write("\n")
    return report


def _match(features: torch.Tensor, pool, k: int) -> torch.Tensor:
    """Matched features (N, D) of ``features`` against a :class:`~audiossl_vc.pool.TargetPool`."""
    return knn_match(features, pool.features, k)


def _sv_embedder(sv_run: str | Path):
    """Embedding function of a trained ``sv`` run (its head on its upstream's layer mix) and its sample rate."""
    try:
        # lazy: the sv plugin is optional
        from audiossl_sv.evaluation import embed_data_dir  # noqa: F401  (checks the plugin is there)
    except ImportError as error:
        raise DataError(f"--sv-run needs the sv plugin (audiossl-sv): {error}", sv_run) from None

    model = load_downstream(sv_run, device="cpu")

    @torch.no_grad()
    def embed(waveform: torch.Tensor) -> np.ndarray:
        hidden, lengths = model.upstream(waveform[None], torch.tensor([waveform.shape[-1]]))
        return model.head.embed(hidden, lengths)[0].float().numpy()

    return embed, model.upstream.sample_rate


def _asr_content(asr_run: str | Path, out_dir: Path, with_sources: bool) -> dict[str, float]:
    """WER and CER (%) of a trained ``asr`` run on the converted, resynthesised and (when written) source dirs."""
    try:
        # lazy: the asr plugin is optional
        from audiossl_asr.recognize import decode_run
    except ImportError as error:
        raise DataError(f"--asr-run needs the asr plugin (audiossl-asr): {error}", asr_run) from None
    content = {}
    for name in ("converted", "resynthesis", "sources") if with_sources else ("converted", "resynthesis"):
        result = decode_run(asr_run, out_dir / name, out_dir / "asr" / name, device="cpu")
        content[f"wer_{name}"] = 100.0 * (result.score.wer.rate if result.score is not None else math.nan)
        content[f"cer_{name}"] = 100.0 * (result.score.cer.rate if result.score is not None else math.nan)
    return content


def compare_vocoders(
    model_path: str | Path, vocoder_runs: list[str | Path], data_dir: str | Path, out_dir: str | Path, **options
) -> dict[str, EvaluationReport]:
    """:func:`evaluate_conversions` of each vocoder on the same pairs (``out_dir/<label>``), then
    ``comparison.json`` and ``comparison.md`` side by side. Labels: ``<kind>:<run dir name>``."""
    out_dir = Path(out_dir)
    reports: dict[str, EvaluationReport] = {}
    for run in vocoder_runs:
        kind = load_vocoder(run).spec.kind
        label = f"{kind}:{Path(run).name}"
        if label in reports:
            label = f"{label}#{len(reports)}"
        reports[label] = evaluate_conversions(model_path, run, data_dir, out_dir / label.replace(":", "-"), **options)
    rows = [comparison_row(label, report) for label, report in reports.items()]
    with atomic_write(out_dir / "comparison.json") as handle:
        json.dump({"task": "vc-comparison", "rows": rows}, handle, indent=2)
        handle.write("\n")
    with atomic_write(out_dir / "comparison.md") as handle:
        handle.write(comparison_table(rows))
    return reports


#: Columns of the comparison table: (title, row key, format).
COMPARISON_COLUMNS = (
    ("F0 RMSE (cents)", "f0_rmse_cents", "{:.0f}"),
    ("VDE (%)", "vde", "{:.1f}"),
    ("F0 RMSE vs utt2f0", "f0_rmse_reference", "{:.0f}"),
    ("cos to target", "to_target", "{:.3f}"),
    ("cos to source", "to_source", "{:.3f}"),
    ("closer to target", "target_wins", "{:.0%}"),
    ("CER (%)", "cer", "{:.1f}"),
    ("WER (%)", "wer", "{:.1f}"),
)


def comparison_row(label: str, report: EvaluationReport) -> dict[str, float | str]:
    """The converted condition of one report as a flat row."""
    converted = report.pitch.get("converted", {})
    row: dict[str, float | str] = {"system": label, "pairs": len(report.pairs)}
    row["f0_rmse_cents"] = converted.get("f0_rmse_cents", math.nan)
    row["vde"] = 100 * converted.get("vde", math.nan)
    row["f0_rmse_reference"] = report.pitch.get("converted_vs_reference", {}).get("f0_rmse_cents", math.nan)
    row.update({key: report.similarity["converted"][key] for key in ("to_target", "to_source", "target_wins")})
    content = report.content or {}
    row["cer"], row["wer"] = content.get("cer_converted", math.nan), content.get("wer_converted", math.nan)
    return row


def comparison_table(rows: list[dict]) -> str:
    """Markdown table of :func:`comparison_row` rows."""
    lines = ["| system | " + " | ".join(title for title, _, _ in COMPARISON_COLUMNS) + " |"]
    lines.append("|---" * (len(COMPARISON_COLUMNS) + 1) + "|")
    for row in rows:
        cells = ["-" if math.isnan(row[key]) else fmt.format(row[key]) for _, key, fmt in COMPARISON_COLUMNS]
        lines.append(f"| {row['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
