"""``audiossl diarization``: make a multi-speaker corpus, train segmentation, diarize, evaluate.

Each command is a thin wrapper over a library function:

* ``make-corpus SOURCE -o CORPUS``: :func:`~audiossl_diarization.corpus.make_corpus`;
* ``train-segmentation CORPUS -o seg.pt``: :func:`~audiossl_diarization.segmentation.train_segmentation`;
* ``diarize AUDIO... --model M --segmentation seg.pt -o out.rttm``: pyannote's pipeline
  (:func:`~audiossl_diarization.pipeline.build_pipeline`) on audiossl embeddings;
* ``tune CORPUS ...``: the clustering threshold with the lowest development DER
  (:func:`~audiossl_diarization.pipeline.tune_threshold`);
* ``evaluate --reference REF.rttm --hypothesis HYP.rttm``: DER and its components
  (:func:`~audiossl_diarization.evaluation.evaluate_rttm`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from audiossl.fileio import ensure_writable_dir, ensure_writable_file

app = typer.Typer(
    name="diarization",
    help="Speaker diarization: pyannote.audio's pipeline on audiossl embeddings, local segmentation, DER.",
    no_args_is_help=True,
)

OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]


def _pair(text: str, kind: type, name: str, count: int = 2) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected {count} comma-separated numbers, got {text!r}", param_hint=name) from None
    if len(values) != count:
        raise typer.BadParameter(f"expected {count} comma-separated numbers, got {text!r}", param_hint=name)
    return values


@app.command("make-corpus")
def make_corpus_command(
    source: Annotated[
        Path, typer.Argument(help="Data dir with wav.scp and utt2spk (e.g. from 'audiossl data synth').")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Corpus dir to write (wav/, RTTM, UEM, database.yml).")],
    recordings: Annotated[str, typer.Option("--recordings", help="Recordings in train,development,test.")] = "40,6,6",
    speakers: Annotated[int, typer.Option("--speakers-per-recording", help="Speakers per recording.")] = 2,
    turns: Annotated[str, typer.Option("--turns", help="Min,max turns (utterances) per recording.")] = "4,8",
    overlap: Annotated[float, typer.Option("--overlap", help="Probability that a turn overlaps the previous.")] = 0.3,
    sample_rate: Annotated[int | None, typer.Option("--sample-rate", help="Rate of the recordings (Hz).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Mix speaker turns (silences, overlaps) into recordings with RTTM/UEM references and a pyannote protocol."""
    ensure_writable_dir(out)
    # lazy: the diarization modules pull in torch and pyannote; every `audiossl` start-up imports this module
    from audiossl_diarization.corpus import PROTOCOL_NAME, CorpusConfig, make_corpus

    config = CorpusConfig(
        recordings=_pair(recordings, int, "--recordings", 3),
        speakers_per_recording=speakers,
        turns=_pair(turns, int, "--turns"),
        overlap=overlap,
        sample_rate=sample_rate,
        seed=seed,
    )
    make_corpus(source, out, config, overwrite=overwrite)
    typer.echo(f"wrote {sum(config.recordings)} recordings to {out} (protocol {PROTOCOL_NAME} in database.yml)")


@app.command("train-segmentation")
def train_segmentation_command(
    corpus: Annotated[Path, typer.Argument(help="Corpus dir from make-corpus.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Segmentation model file to write (.pt).")],
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 5,
    duration: Annotated[float, typer.Option("--duration", help="Chunk length (seconds).")] = 2.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Chunks per batch.")] = 16,
    lstm_hidden: Annotated[int, typer.Option("--lstm-hidden", help="LSTM units per direction.")] = 32,
    lstm_layers: Annotated[int, typer.Option("--lstm-layers", help="Bidirectional LSTM layers.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 3e-3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    overwrite: OverwriteOption = False,
) -> None:
    """Train pyannote's PyanNet segmentation model (powerset) on the corpus's train subset."""
    ensure_writable_file(out)
    # lazy: the diarization modules pull in torch and pyannote; every `audiossl` start-up imports this module
    from audiossl_diarization.segmentation import SegmentationConfig, train_segmentation

    config = SegmentationConfig(
        epochs=epochs,
        duration=duration,
        batch_size=batch_size,
        lstm_hidden=lstm_hidden,
        lstm_layers=lstm_layers,
        lr=lr,
        seed=seed,
    )
    summary = train_segmentation(corpus, out, config, overwrite=overwrite, device=device)
    last = summary["epochs"][-1] if summary["epochs"] else {}
    der = last.get("DiarizationErrorRate")
    typer.echo(
        f"wrote {out}"
        + (
            f" (development frame DER {100 * der:.2f}% after {len(summary['epochs'])} epochs)"
            if der is not None
            else ""
        )
    )


@app.command()
def diarize(
    inputs: Annotated[
        list[Path], typer.Argument(help="Audio files, or a corpus dir from make-corpus (its --subset recordings).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="RTTM file to write.")],
    segmentation: Annotated[
        Path, typer.Option("--segmentation", help="Local segmentation model (train-segmentation).")
    ],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="audiossl checkpoint, run dir or importable checkpoint.")
    ] = None,
    sv_run: Annotated[Path | None, typer.Option("--sv-run", help="Trained 'audiossl sv train' run (its head).")] = None,
    layer: Annotated[int | None, typer.Option("--layer", help="With --model: pool this layer (default: last).")] = None,
    pooling: Annotated[str, typer.Option("--pooling", help="With --model: mean or stats.")] = "mean",
    subset: Annotated[str, typer.Option("--subset", help="With a corpus dir: train, development or test.")] = "test",
    threshold: Annotated[float, typer.Option("--threshold", help="Clustering distance threshold (0..2).")] = 0.7,
    min_cluster_size: Annotated[int, typer.Option("--min-cluster-size", help="Smallest cluster kept.")] = 3,
    num_speakers: Annotated[int | None, typer.Option("--num-speakers", help="Known number of speakers.")] = None,
    min_speakers: Annotated[int | None, typer.Option("--min-speakers", help="Lower bound on speakers.")] = None,
    max_speakers: Annotated[int | None, typer.Option("--max-speakers", help="Upper bound on speakers.")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    overwrite: OverwriteOption = False,
) -> None:
    """Diarize audio with pyannote's pipeline: local segmentation model + audiossl speaker embeddings; RTTM out."""
    import torch

    # lazy: the diarization modules pull in torch and pyannote; every `audiossl` start-up imports this module
    from audiossl_diarization.embedding import load_embedding
    from audiossl_diarization.evaluation import write_rttm
    from audiossl_diarization.pipeline import PipelineConfig, build_pipeline, diarize_files
    from audiossl_diarization.segmentation import load_segmentation

    if (model is None) == (sv_run is None):
        raise typer.BadParameter("give exactly one of --model and --sv-run", param_hint="--model/--sv-run")
    if out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists; use --overwrite to replace it", param_hint="--out")
    ensure_writable_file(out)
    paths = _audio_paths(inputs, subset)
    seg = load_segmentation(segmentation).to(torch.device(device))  # first: small, and refused without running code
    embedding = load_embedding(model, sv_run=sv_run, layer=layer, pooling=pooling, device=device)  # type: ignore[arg-type]
    pipeline = build_pipeline(seg, embedding, PipelineConfig(threshold=threshold, min_cluster_size=min_cluster_size))
    pipeline.to(torch.device(device))
    results = diarize_files(
        pipeline, paths, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers
    )
    write_rttm(out, results, overwrite=overwrite)
    speakers = sum(len(a.labels()) for a in results.values())
    typer.echo(f"wrote {out}: {len(results)} recordings, {speakers} speakers in all")


@app.command()
def tune(
    corpus: Annotated[Path, typer.Argument(help="Corpus dir from make-corpus.")],
    segmentation: Annotated[
        Path, typer.Option("--segmentation", help="Local segmentation model (train-segmentation).")
    ],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="audiossl checkpoint, run dir or importable checkpoint.")
    ] = None,
    sv_run: Annotated[Path | None, typer.Option("--sv-run", help="Trained 'audiossl sv train' run (its head).")] = None,
    layer: Annotated[int | None, typer.Option("--layer", help="With --model: pool this layer (default: last).")] = None,
    pooling: Annotated[str, typer.Option("--pooling", help="With --model: mean or stats.")] = "mean",
    subset: Annotated[str, typer.Option("--subset", help="Subset to tune on.")] = "development",
    thresholds: Annotated[
        str, typer.Option("--thresholds", help="Comma-separated clustering thresholds to try.")
    ] = "0.3,0.5,0.7,0.9,1.1,1.3",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the results as JSON here.")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    overwrite: OverwriteOption = False,
) -> None:
    """Pick the clustering threshold with the lowest DER (collar 0) on a corpus subset (default: development)."""
    import torch

    # lazy: the diarization modules pull in torch and pyannote; every `audiossl` start-up imports this module
    from audiossl.fileio import atomic_write
    from audiossl_diarization.corpus import SUBSETS, load_protocol
    from audiossl_diarization.embedding import load_embedding
    from audiossl_diarization.pipeline import build_pipeline, tune_threshold
    from audiossl_diarization.segmentation import load_segmentation

    if (model is None) == (sv_run is None):
        raise typer.BadParameter("give exactly one of --model and --sv-run", param_hint="--model/--sv-run")
    if subset not in SUBSETS:
        raise typer.BadParameter(f"unknown subset {subset!r}; known: {', '.join(SUBSETS)}", param_hint="--subset")
    if out is not None and out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists; use --overwrite to replace it", param_hint="--out")
    if out is not None:
        ensure_writable_file(out)
    try:
        values = [float(t) for t in thresholds.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected numbers, got {thresholds!r}", param_hint="--thresholds") from None
    seg = load_segmentation(segmentation).to(torch.device(device))  # first: small, and refused without running code
    files = list(getattr(load_protocol(corpus), subset)())
    if not files:
        raise typer.BadParameter(f"the corpus has no {subset} recordings", param_hint="--subset")
    embedding = load_embedding(model, sv_run=sv_run, layer=layer, pooling=pooling, device=device)  # type: ignore[arg-type]
    pipeline = build_pipeline(seg, embedding)
    results = tune_threshold(pipeline, files, values)
    best = min(results, key=lambda item: item[1])
    for threshold, der in results:
        typer.echo(
            f"threshold {threshold:<5g} DER {100 * der:6.2f}%" + ("  <- best" if (threshold, der) == best else "")
        )
    if out is not None:
        with atomic_write(out) as handle:
            json.dump({"subset": subset, "results": results, "best_threshold": best[0]}, handle, indent=2)


def _audio_paths(inputs: list[Path], subset: str) -> list[Path]:
    if len(inputs) == 1 and inputs[0].is_dir():
        listing = inputs[0] / f"{subset}.lst"
        if not listing.is_file():
            raise typer.BadParameter(f"{inputs[0]} is not a corpus dir with a {subset}.lst", param_hint="INPUTS")
        uris = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        return [inputs[0] / "wav" / f"{uri}.wav" for uri in uris]
    return list(inputs)


@app.command()
def evaluate(
    reference: Annotated[Path, typer.Option("--reference", "-r", help="Reference RTTM.")],
    hypothesis: Annotated[Path, typer.Option("--hypothesis", "-H", help="Hypothesis RTTM (from diarize).")],
    uem: Annotated[Path | None, typer.Option("--uem", help="UEM: the scored regions (default: everything).")] = None,
    collars: Annotated[
        str, typer.Option("--collars", help="Comma-separated collars (s, pyannote: centred, +/- half).")
    ] = "0,0.25",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the report as JSON here.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """DER from pyannote.metrics at each collar, with missed speech, false alarm and confusion."""
    if out is not None and (overwrite or not out.exists()):
        ensure_writable_file(out)
    # lazy: evaluation is not needed to start; every `audiossl` start-up imports this module
    from audiossl_diarization.evaluation import evaluate_rttm, format_report

    try:
        values = [float(c) for c in collars.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {collars!r}", param_hint="--collars") from None
    report = evaluate_rttm(reference, hypothesis, uem, values, out=out, overwrite=overwrite)
    typer.echo(format_report(report))
    if out is not None:
        typer.echo(f"wrote {out}")
    else:
        typer.echo(json.dumps({k: round(v["der"], 4) for k, v in report["collars"].items()}))
