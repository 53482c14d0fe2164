"""``audiossl st train | translate | score``: speech translation on any upstream, scored by BLEU.

Heavy imports happen inside the commands: audiossl mounts this app at every start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.cli import plugins as plugin_cli
from audiossl.fileio import ensure_writable_dir, ensure_writable_file

app = typer.Typer(
    help="Speech translation (speech -> text.<lang>) with an attention decoder on any upstream; BLEU.",
    no_args_is_help=True,
)

LangOption = Annotated[str, typer.Option(help="Target language: the data dirs' text.<lang> table.")]


@app.command()
@plugin_cli.downstream_options()
def train(
    data: plugin_cli.DataArgument,
    out: plugin_cli.OutOption,
    upstream: plugin_cli.UpstreamOption,
    valid: plugin_cli.ValidOption = None,
    lang: LangOption = "qaa",
    tokenizer: Annotated[str, typer.Option(help="Target units: char, unigram or bpe.")] = "char",
    vocab_size: Annotated[int, typer.Option(help="Sentencepiece units (ignored for char).")] = 64,
    ctc_weight: Annotated[
        float, typer.Option(help="Weight of the auxiliary CTC loss on the source transcript (text); 0 = none.")
    ] = 0.3,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the decoder's loss.")] = 0.1,
    decoder_dim: Annotated[int, typer.Option(help="Decoder width.")] = 256,
    decoder_layers: Annotated[int, typer.Option(help="Decoder blocks.")] = 2,
    decoder_heads: Annotated[int, typer.Option(help="Decoder attention heads.")] = 4,
    decoder_ffn: Annotated[int, typer.Option(help="Decoder feed-forward width.")] = 1024,
    dropout: Annotated[float, typer.Option(help="Dropout on the frames and in the decoder.")] = 0.1,
    max_length: Annotated[int, typer.Option(help="Longest translation in units (+ eos) the decoder accepts.")] = 256,
    settings: plugin_cli.DownstreamSettings = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train a translation decoder on DATA's speech and text.<lang>; the run goes to --out."""
    from audiossl_speecht5.st import STTask

    task = STTask(
        lang=lang,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        ctc_weight=ctc_weight,
        label_smoothing=label_smoothing,
        decoder_dim=decoder_dim,
        decoder_layers=decoder_layers,
        decoder_heads=decoder_heads,
        decoder_ffn=decoder_ffn,
        dropout=dropout,
        max_length=max_length,
    )
    plugin_cli.run_training(task, upstream, data, out, settings, valid=valid, resume=resume)


@app.command()
def translate(
    run_dir: plugin_cli.RunDirArgument,
    data: Annotated[Path, typer.Argument(help="Data dir to translate (scored when it has text.<lang>).")],
    out: plugin_cli.OutOption,
    beam_size: Annotated[int, typer.Option(help="Hypotheses kept per step.")] = 5,
    length_penalty: Annotated[float, typer.Option(help="Rank by score / (units + 1) ** this.")] = 1.0,
    max_length: Annotated[
        int | None, typer.Option(help="Most units per translation [default: the utterance's frames].")
    ] = None,
    checkpoint: plugin_cli.CheckpointOption = None,
    device: plugin_cli.DeviceOption = None,
) -> None:
    """Translate DATA with a trained run into OUT/hyp.<lang>.txt; BLEU in OUT/metrics.json when DATA has references."""
    ensure_writable_dir(out)
    import json

    from audiossl.data.translation import translation_file
    from audiossl.downstream.trainer import load_downstream, read_run_info
    from audiossl.fileio import atomic_write
    from audiossl.nn.beam_search import BeamSearchConfig
    from audiossl_asr.task import write_hypotheses
    from audiossl_speecht5.metrics import corpus_bleu
    from audiossl_speecht5.st import STTask, hypothesis_file
    from audiossl_speecht5.st import translate as run_translation

    info = read_run_info(run_dir)
    if info.get("task") != STTask.name:
        from audiossl.errors import ConfigError

        raise ConfigError(f"this run trained task {info.get('task')!r}, not st", run_dir)
    task = STTask(**info.get("task_options", {}))
    model = load_downstream(run_dir, checkpoint=checkpoint, task=task, device=device or "auto")
    search = BeamSearchConfig(beam_size=beam_size, ctc_weight=0.0, length_penalty=length_penalty, max_length=max_length)
    hypotheses = run_translation(model.head, model.upstream, data, model.state, search)
    lang = model.task.lang
    path = write_hypotheses(hypotheses, out / hypothesis_file(lang))
    typer.echo(f"wrote {path}")
    references = translation_file(data, lang)
    if references.is_file():
        from audiossl.data.translation import read_translations

        result = corpus_bleu(read_translations(data, lang), hypotheses, references, path)
        with atomic_write(out / "metrics.json") as handle:
            json.dump({"run_dir": str(run_dir), "data_dir": str(data), "metrics": result.as_dict()}, handle, indent=2)
            handle.write("\n")
        typer.echo(f"BLEU {result.score:.2f} ({result.signature})")


@app.command()
def score(
    data: Annotated[Path, typer.Argument(help="Data dir with the reference text.<lang>.")],
    hypotheses: Annotated[Path, typer.Argument(help="Translations in Kaldi text format (e.g. OUT/hyp.qaa.txt).")],
    lang: LangOption = "qaa",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the scores as JSON here.")] = None,
) -> None:
    """BLEU (sacrebleu, 13a tokenisation) of translations against DATA's text.<lang>."""
    if out is not None:
        ensure_writable_file(out)
    import json

    from audiossl.data.translation import read_translations, translation_file
    from audiossl.fileio import atomic_write
    from audiossl_asr.task import read_hypotheses
    from audiossl_speecht5.metrics import corpus_bleu

    result = corpus_bleu(
        read_translations(data, lang), read_hypotheses(hypotheses), translation_file(data, lang), hypotheses
    )
    typer.echo(f"BLEU {result.score:.2f} ({result.signature})")
    if out is not None:
        with atomic_write(out) as handle:
            json.dump(result.as_dict(), handle, indent=2)
            handle.write("\n")
        typer.echo(f"wrote {out}")
