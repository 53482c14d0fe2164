"""``audiossl data export-shar``: a Kaldi data dir -> lhotse Shar shards for ``data.backend: shar``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.fileio import ensure_writable_dir


def export_shar(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi data dir to export (wav.scp, optional segments and labels).")],
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to write the shards into (an unfinished export there resumes).")
    ],
    shard_size: Annotated[int, typer.Option(help="Utterances per shard.")] = 1000,
    audio_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="original: the files' own lossless container when they all share one (wav/flac), else FLAC; "
            "flac: re-encode to 16-bit FLAC.",
        ),
    ] = "original",
    labels: Annotated[
        Path | None, typer.Option(help="k-means label dir (`audiossl kmeans label` output) to store as frame_labels.")
    ] = None,
    channel: Annotated[
        int | None, typer.Option(help="Channel to store for multi-channel audio (default: mix down to mono).")
    ] = None,
) -> None:
    """Write lhotse Shar shards (audio + text, speaker, every utt2<name> label, frame labels) from a data dir.

    Shards hold --shard-size utterances in Kaldi order; rerun the same command to finish a killed export.
    Pipes in wav.scp run only with the global --allow-pipes (or AUDIOSSL_ALLOW_PIPES=1).
    """
    ensure_writable_dir(out_dir, warn_existing=False)
    # lazy: lhotse is heavy; every `audiossl` start-up imports this module
    from audiossl.data.shar import SharIndex
    from audiossl.data.shar import export_shar as export

    index = SharIndex.load(
        export(
            data_dir,
            out_dir,
            shard_size=shard_size,
            audio_format=audio_format,
            label_dir=labels,
            channel=channel,
            progress=True,
        ).parent
    )
    info = index.info
    typer.echo(
        f"{info['utterances']} utterances ({info['seconds'] / 3600:.2f} h) in {index.num_shards} shard(s) "
        f"[{', '.join(info['fields'])}; audio {info['audio_format']}] -> {out_dir}"
    )


def register_export_shar(app: typer.Typer) -> None:
    """Mount the command as ``audiossl data export-shar``."""
    app.command("export-shar")(export_shar)
