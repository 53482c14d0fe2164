"""The functions behind ``audiossl asr decode`` and ``score``: decode with a trained run, score hypotheses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audiossl.downstream.trainer import load_downstream, read_run_info
from audiossl.errors import DataError
from audiossl.nn.beam_search import BeamSearchConfig
from audiossl_asr.decoding import BeamSearchOptions
from audiossl_asr.metrics import Score, score_transcripts
from audiossl_asr.task import (
    HYP_FILE,
    ASRTask,
    read_hypotheses,
    tokenizer_of,
    transcribe,
    write_hypotheses,
    write_score,
)
from audiossl_asr.tokenizer import read_transcripts

METRICS_FILE = "metrics.json"


@dataclass(kw_only=True)
class SearchOptions:
    """Beam search of a seq2seq run; None fields take the run's defaults (beam 10, the training CTC weight)."""

    beam_size: int | None = None
    """Hypotheses kept per step."""
    ctc_weight: float | None = None
    """Weight of the CTC prefix score; None = the weight the run was trained with."""
    length_penalty: float = 1.0
    """Finished hypotheses are ranked by score / (units + 1) ** length_penalty."""

    def resolve(self, task: ASRTask) -> BeamSearchConfig:
        default = task.default_search()
        return BeamSearchConfig(
            beam_size=default.beam_size if self.beam_size is None else self.beam_size,
            ctc_weight=default.ctc_weight if self.ctc_weight is None else self.ctc_weight,
            length_penalty=self.length_penalty,
        )


@dataclass
class DecodeResult:
    """Where the hypotheses went, and their score when the data dir has a ``text``."""

    hypotheses: Path
    score: Score | None
    metrics: Path | None


def decode_run(
    run_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    beam: BeamSearchOptions | None = None,
    search: SearchOptions | None = None,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    batch_seconds: float = 60.0,
) -> DecodeResult:
    """Decode every utterance of ``data_dir`` with a trained ASR run into ``OUT_DIR/hyp.txt``.

    A CTC run decodes greedily unless ``beam`` is given; a seq2seq run by beam search with
    ``search`` (default :class:`SearchOptions`). When ``data_dir`` has a ``text``, the hypotheses are also
    scored into ``OUT_DIR/metrics.json``. The data dir needs no transcripts otherwise.
    """
    info = read_run_info(run_dir)
    if info.get("task") != ASRTask.name:
        raise DataError(f"this run trained task {info.get('task')!r}, not asr", Path(run_dir))
    task = ASRTask(**info.get("task_options", {}))
    model = load_downstream(run_dir, checkpoint=checkpoint, task=task, device=device)
    seq2seq = task.seq2seq_config is not None
    config = (search or SearchOptions()).resolve(task) if seq2seq else None
    hypotheses = transcribe(
        model.head, model.upstream, data_dir, tokenizer_of(model.state), beam, batch_seconds, search=config
    )
    out_dir = Path(out_dir)
    hyp_path = write_hypotheses(hypotheses, out_dir / HYP_FILE)
    text = Path(data_dir) / "text"
    if not text.is_file():
        return DecodeResult(hyp_path, None, None)
    score = score_transcripts(read_transcripts(text), hypotheses, text, hyp_path)
    context = {
        "run_dir": str(Path(run_dir).resolve()),
        "checkpoint": str(model.checkpoint.resolve()),
        "data_dir": str(Path(data_dir).resolve()),
        "decoder": "seq2seq beam" if seq2seq else ("greedy" if beam is None else "beam"),
    }
    return DecodeResult(hyp_path, score, write_score(score, out_dir / METRICS_FILE, **context))


def score_files(references: str | Path, hypotheses: str | Path) -> Score:
    """WER/CER of a hypothesis file against references: a Kaldi ``text`` file or a data dir holding one."""
    references = Path(references)
    if references.is_dir():
        references = references / "text"
    return score_transcripts(read_transcripts(references), read_hypotheses(hypotheses), references, hypotheses)
