"""``audiossl extract`` (features of a data dir to disk) and ``audiossl export`` (TorchScript / ONNX).

``audiossl extract --model exp/ssl1 --data data/test --layer 6 --pool mean --format ark -o feats/test``
writes one feature array per utterance; run again with the same options to resume an
interrupted extraction. ``audiossl export --model exp/ssl1 --format onnx -o encoder.onnx`` writes
the encoder for inference outside Python. Both wrap library functions
(:func:`audiossl.embed.extract.extract`, :func:`audiossl.export.export_model`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.fileio import ensure_writable_dir, ensure_writable_file, removed_if_failed


def extract(
    model: Annotated[str, typer.Option("--model", "-m", help="audiossl checkpoint or run dir (or an importable one).")],
    data: Annotated[Path, typer.Option("--data", help="Kaldi data dir whose utterances are embedded.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dir (refused if it exists, unless resuming).")],
    layer: Annotated[
        str, typer.Option("--layer", help="'last' (final hidden states), a block index N, or 'all'.")
    ] = "last",
    pool: Annotated[str, typer.Option("--pool", help="none (frames), mean or stats (mean + std).")] = "none",
    format: Annotated[str, typer.Option("--format", help="npy, ark (Kaldi ark/scp), safetensors or hdf5.")] = "npy",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", help="Padded seconds of audio per batch.")] = 200.0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="Run the encoder under bfloat16 autocast.")] = False,
    rate_mismatch: Annotated[
        str, typer.Option("--rate-mismatch", help="Audio at another rate than the model's: resample or error.")
    ] = "resample",
    no_pipes: Annotated[
        bool,
        typer.Option(
            "--no-pipes",
            help="Refuse wav.scp commands ending in '|' even when the global --allow-pipes or "
            "AUDIOSSL_ALLOW_PIPES=1 allows them (refusing is the default).",
        ),
    ] = False,
    channel: Annotated[
        int | None,
        typer.Option(
            "--channel",
            min=0,
            help="Multi-channel audio: read this channel only (0 = the first); default: mix the channels down "
            "to mono (their mean).",
        ),
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option(min=1, help="Utterances per chunk (the unit of resuming, of sharding and of each job's share)."),
    ] = 64,
    nj: Annotated[int, typer.Option("--nj", min=1, help="Local worker processes sharing the utterances.")] = 1,
    shard: Annotated[
        str | None,
        typer.Option(
            help="I/N: extract shard I of N only (a cluster array job) into OUT/shard-I-of-N; then "
            "`audiossl extract-merge OUT` gives exactly the unsharded output."
        ),
    ] = None,
) -> int:
    """Extract frame features or utterance embeddings of every utterance of a data dir (resumable).

    Sharded (--shard I/N, then extract-merge) or with --nj, the output equals the one-process extraction.
    """
    # A file at OUT is checked through its folder: --overwrite may replace it (without, extract refuses it).
    ensure_writable_dir(out if out.is_dir() or not out.exists() else out.parent)
    # lazy: audiossl.embed pulls in torch; every `audiossl` start-up imports this module
    from audiossl.embed.extract import read_done
    from audiossl.embed.extract_shards import extract as run_extract

    # A failure before the first chunk is written leaves no OUT behind (finished chunks stay: they resume).
    with removed_if_failed(out, started=lambda path: bool(read_done(path))):
        result = run_extract(
            model,
            data,
            out,
            layer=layer,
            pooling=pool,
            format=format,
            overwrite=overwrite,
            batch_seconds=batch_seconds,
            device=device,
            bf16=bf16,
            allow_pipes=False if no_pipes else None,  # None: the process policy (audiossl --allow-pipes)
            on_rate_mismatch=rate_mismatch,
            channel=channel,
            chunk_size=chunk_size,
            shard=shard,
            num_jobs=nj,
        )
    if shard is not None:
        typer.echo(
            f"wrote shard {shard} ({result.computed} utterances) under {out}; then: audiossl extract-merge {out}"
        )
        return 0
    if result.already_complete:
        typer.echo(f"{out}: already complete ({result.total} utterances, same settings); index: {result.index}")
        return 0
    resumed = f" ({result.skipped} were already done)" if result.skipped else ""
    typer.echo(f"wrote {result.computed} of {result.total} utterances{resumed}; index: {result.index}")
    return 0


def extract_merge(
    out: Annotated[Path, typer.Argument(help="The output dir the `extract --shard I/N` runs wrote into.")],
) -> int:
    """Merge the finished shards of `audiossl extract --shard I/N --out OUT` into OUT (the unsharded output)."""
    ensure_writable_dir(out)
    # lazy: audiossl.embed pulls in torch; every `audiossl` start-up imports this module
    from audiossl.embed.extract_shards import merge_extract

    index = merge_extract(out)
    typer.echo(f"merged the shards of {out}; index: {index}")
    return 0


def export(
    model: Annotated[str, typer.Option("--model", "-m", help="audiossl checkpoint or run dir.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (plus OUT.json describing it).")],
    format: Annotated[str, typer.Option("--format", help="torchscript or onnx.")] = "torchscript",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    tolerance: Annotated[
        float, typer.Option(help="Largest absolute difference to the eager model accepted on the check input.")
    ] = 1e-4,
) -> int:
    """Export the encoder (on features) to TorchScript or ONNX, checked against the eager model."""
    if overwrite or not out.exists():  # an existing file without --overwrite: export_model says so
        ensure_writable_file(out)
    # lazy: audiossl.export pulls in torch; every `audiossl` start-up imports this module
    from audiossl.export import export_model

    path = export_model(model, out, format, tolerance=tolerance, overwrite=overwrite)
    typer.echo(f"wrote {path} and {path.name}.json")
    return 0
