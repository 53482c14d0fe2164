"""``audiossl qbe evaluate``: query-by-example search of spoken queries in a data dir, MTWV and MAP per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.cli import plugins as plugin_cli
from audiossl.errors import ConfigError
from audiossl.fileio import ensure_writable_dir

app = typer.Typer(
    help="Query-by-example spoken term detection: subsequence DTW (cosine) over one layer; MTWV and MAP.",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Query-by-example spoken term detection (SUPERB QbE)."""


@app.command()
def evaluate(
    documents: Annotated[Path, typer.Argument(help="Data dir of the documents searched (needs text for the truth).")],
    upstream: plugin_cli.UpstreamOption,
    out: plugin_cli.OutOption,
    queries_from: Annotated[
        Path | None,
        typer.Option(
            "--queries-from", help="Data dir whose words.ctm alignments give the queries (cut from its audio)."
        ),
    ] = None,
    queries: Annotated[
        Path | None, typer.Option("--queries", help="Query list: 'query_id term audio_path \\[start end]' per line.")
    ] = None,
    per_term: Annotated[int, typer.Option("--per-term", min=1, help="Queries cut per word (--queries-from).")] = 1,
    layer: Annotated[
        list[int] | None, typer.Option("--layer", help="Layer(s) to search with (repeat); default: every layer.")
    ] = None,
    twv: Annotated[
        str, typer.Option("--twv", help="TWV costs: quesst (C_miss 100, C_fa 1, P_target 8e-4) or nist-std.")
    ] = "quesst",
) -> None:
    """Search spoken queries in DOCUMENTS with an upstream; report MTWV and MAP of the best layer."""
    if (queries_from is None) == (queries is None):
        raise ConfigError("give exactly one of --queries-from (a data dir with words.ctm) and --queries (a list)")
    ensure_writable_dir(out)
    # lazy: the search pulls in torch; every `audiossl` start-up imports this module
    from audiossl_qbe.queries import queries_from_alignments, read_query_list
    from audiossl_qbe.search import evaluate_qbe

    if queries is not None:
        chosen = read_query_list(queries)
    else:
        from audiossl.data.kaldi import DataDir

        words = {w for line in (DataDir.load(documents).text or {}).values() for w in line.split()}
        chosen = queries_from_alignments(queries_from, per_term=per_term, terms=words or None)
    metrics = evaluate_qbe(upstream, chosen, documents, out, layers=layer or None, twv=twv)
    typer.echo(
        f"{len(chosen)} queries, best layer {metrics['layer']}: MTWV {metrics['MTWV']:.4f}  MAP {metrics['MAP']:.4f}"
    )
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'layers.csv'}, {out / 'layers.png'}")
