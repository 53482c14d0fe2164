"""``audiossl asr train | decode | score``: thin commands over :mod:`audiossl_asr.recognize` and the downstream trainer.

Heavy imports (torch, the task) happen inside the commands, so mounting the plugin at every
``audiossl`` start-up stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.cli import plugins as plugin_cli
from audiossl.fileio import ensure_writable_dir, ensure_writable_file

app = typer.Typer(
    help="Speech recognition on any upstream (CTC head, or attention decoder + joint CTC): train, decode, score.",
    no_args_is_help=True,
)


@app.command()
@plugin_cli.downstream_options()
def train(
    data: plugin_cli.DataArgument,
    out: plugin_cli.OutOption,
    upstream: plugin_cli.UpstreamOption,
    valid: plugin_cli.ValidOption = None,
    tokenizer: Annotated[str, typer.Option(help="Output units: char, unigram or bpe (sentencepiece).")] = "char",
    vocab_size: Annotated[
        int, typer.Option(help="Sentencepiece units, blank and <unk> included (ignored for char).")
    ] = 64,
    head: Annotated[
        str, typer.Option(help="CTC head: bilstm (default for small corpora), mlp, or linear (a per-frame probe).")
    ] = "bilstm",
    hidden: Annotated[int, typer.Option(help="Hidden size of the mlp / each bilstm direction.")] = 128,
    layers: Annotated[int, typer.Option(help="bilstm layers.")] = 2,
    dropout: Annotated[float, typer.Option(help="Dropout in the head.")] = 0.1,
    stride: Annotated[
        int,
        typer.Option(
            help="CTC head: stack this many upstream frames into one; 0 = from the upstream's frame rate "
            "(keep >= 40 frames/s: 100 frames/s fbank -> 2, SSL layers -> 1)."
        ),
    ] = 0,
    spec_augment: Annotated[
        bool, typer.Option("--spec-augment/--no-spec-augment", help="CTC head: SpecAugment masks on its input.")
    ] = True,
    model: Annotated[str, typer.Option(help="ctc (a CTC head) or seq2seq (attention decoder with joint CTC).")] = "ctc",
    ctc_weight: Annotated[float, typer.Option(help="seq2seq: weight of the CTC loss (0 = attention only).")] = 0.3,
    label_smoothing: Annotated[float, typer.Option(help="seq2seq: label smoothing of the decoder's loss.")] = 0.1,
    decoder_dim: Annotated[int, typer.Option(help="seq2seq: decoder width.")] = 256,
    decoder_layers: Annotated[int, typer.Option(help="seq2seq: decoder blocks.")] = 2,
    decoder_heads: Annotated[int, typer.Option(help="seq2seq: decoder attention heads.")] = 4,
    decoder_ffn: Annotated[int, typer.Option(help="seq2seq: decoder feed-forward width.")] = 1024,
    max_length: Annotated[
        int, typer.Option(help="seq2seq: longest transcript in units (+ eos) the decoder accepts.")
    ] = 256,
    settings: plugin_cli.DownstreamSettings = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train a CTC head or an attention decoder (tokenizer learned from DATA's text) on an upstream into --out."""
    # lazy: audiossl_asr.task pulls in torch; every `audiossl` start-up imports this module
    from audiossl_asr.task import ASRTask

    seq2seq = {}
    if model == "seq2seq":
        seq2seq = {
            "ctc_weight": ctc_weight,
            "label_smoothing": label_smoothing,
            "decoder_dim": decoder_dim,
            "decoder_layers": decoder_layers,
            "decoder_heads": decoder_heads,
            "decoder_ffn": decoder_ffn,
            "max_length": max_length,
        }
    task = ASRTask(
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        head=head,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        model=model,
        stride=stride,
        spec_augment=spec_augment,
        **seq2seq,
    )
    plugin_cli.run_training(task, upstream, data, out, settings, valid=valid, resume=resume)


@app.command()
def decode(
    run_dir: plugin_cli.RunDirArgument,
    data: Annotated[Path, typer.Argument(help="Kaldi data dir to transcribe (its text, if any, is scored).")],
    out: plugin_cli.OutOption,
    beam: Annotated[
        bool, typer.Option("--beam/--greedy", help="Beam search (torchaudio/flashlight) or greedy.")
    ] = False,
    beam_size: Annotated[
        int | None, typer.Option(help="Beam: hypotheses kept (CTC default 50 per frame; seq2seq default 10).")
    ] = None,
    ctc_weight: Annotated[
        float | None, typer.Option(help="seq2seq: weight of the CTC prefix score (default: the training weight).")
    ] = None,
    length_penalty: Annotated[
        float, typer.Option(help="seq2seq: rank by score / (units + 1) ** this (0 = raw sums, 1 = per-unit mean).")
    ] = 1.0,
    lexicon: Annotated[Path | None, typer.Option(help="Beam: file of allowed words (first column).")] = None,
    lm: Annotated[Path | None, typer.Option(help="Beam: KenLM n-gram model (.arpa or .bin).")] = None,
    lm_weight: Annotated[float, typer.Option(help="Beam: language-model weight.")] = 2.0,
    word_score: Annotated[float, typer.Option(help="Beam: score per word (lexicon decoding).")] = 0.0,
    log_add: Annotated[bool, typer.Option(help="Beam: merge equal prefixes by log-sum-exp.")] = False,
    checkpoint: plugin_cli.CheckpointOption = None,
    device: plugin_cli.DeviceOption = None,
    batch_seconds: Annotated[float, typer.Option(help="Padded seconds of audio per batch.")] = 60.0,
) -> None:
    """Transcribe DATA with a trained run into OUT/hyp.txt (Kaldi text); score it when DATA has a text.

    A seq2seq run always decodes by beam search (--beam-size, --ctc-weight, --length-penalty);
    --beam/--greedy, --lexicon and --lm apply to CTC runs.
    """
    ensure_writable_dir(out)
    # lazy: decoding and recognize pull in torch; every `audiossl` start-up imports this module
    from audiossl_asr.decoding import BeamSearchOptions
    from audiossl_asr.recognize import SearchOptions, decode_run

    options = None
    if beam or lexicon is not None or lm is not None:
        options = BeamSearchOptions(
            beam_size=50 if beam_size is None else beam_size,
            lexicon=None if lexicon is None else str(lexicon),
            lm=None if lm is None else str(lm),
            lm_weight=lm_weight,
            word_score=word_score,
            log_add=log_add,
        )
    search = SearchOptions(beam_size=beam_size, ctc_weight=ctc_weight, length_penalty=length_penalty)
    result = decode_run(
        run_dir,
        data,
        out,
        beam=options,
        search=search,
        checkpoint=checkpoint,
        device=device or "auto",
        batch_seconds=batch_seconds,
    )
    typer.echo(f"wrote {result.hypotheses}")
    if result.score is not None:
        _echo_score(result.score)
        typer.echo(f"wrote {result.metrics}")


@app.command()
def score(
    references: Annotated[Path, typer.Argument(help="Reference transcripts: a data dir or its Kaldi text file.")],
    hypotheses: Annotated[Path, typer.Argument(help="Hypotheses in Kaldi text format (e.g. OUT/hyp.txt).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the scores as JSON here.")] = None,
) -> None:
    """Print WER and CER (corpus rates with their edit counts) of hypotheses against references."""
    if out is not None:
        ensure_writable_file(out)
    # lazy: audiossl_asr.recognize pulls in torch; every `audiossl` start-up imports this module
    from audiossl_asr.recognize import score_files
    from audiossl_asr.task import write_score

    result = score_files(references, hypotheses)
    _echo_score(result)
    if out is not None:
        write_score(result, out, references=str(references), hypotheses=str(hypotheses))
        typer.echo(f"wrote {out}")


def _echo_score(result) -> None:
    typer.echo(
        f"WER {100 * result.wer.rate:.2f}% ({result.wer.edits}/{result.wer.reference_units} words)  "
        f"CER {100 * result.cer.rate:.2f}% ({result.cer.edits}/{result.cer.reference_units} chars)  "
        f"{result.utterances} utterances"
    )
