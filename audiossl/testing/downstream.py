"""Fixtures for downstream tests and plugin authors: a tiny synthetic corpus and a tiny pretrained checkpoint.

``tiny_corpus(dir)`` writes a few utterances of the embedded synthetic corpus (text, speaker
and emotion labels); ``tiny_pretrained(run_dir, data_dir)`` pretrains a two-block AST of width
32 on stacked fbank frames with masked spectrogram patch modelling for a couple of steps and
returns the run dir, a real checkpoint for ``--upstream`` in a few seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

#: Overrides shrinking the mspm-ast-tiny preset to a test size (frames of 32 bins, 2 x 32 wide blocks).
TINY_PRETRAIN_OVERRIDES = [
    "encoder.overrides.dim=32",
    "encoder.overrides.num_layers=2",
    "encoder.overrides.num_heads=4",
    "encoder.overrides.input.kind=frame",
    "encoder.overrides.input.frame_stack=2",
    "encoder.overrides.input.num_bins=32",
    "encoder.overrides.input.conv_pos_kernel=8",
    "encoder.overrides.input.conv_pos_groups=4",
    "data.frontend_config.num_mel_bins=32",
    "data.normalize=utterance",
    "data.num_workers=0",
    "data.max_seconds_per_batch=4",
    "run.log_every=1",
    "run.device=cpu",
    "run.tensorboard=false",
]


def tiny_corpus(out_dir: str | Path, speakers: int = 2, utts_per_speaker: int = 4, seed: int = 0) -> Path:
    """A small synthetic corpus (wav.scp, utt2spk, text, utt2emo, ...) in ``out_dir``; returns it."""
    # lazy: data.synth pulls in scipy; importing these fixtures stays cheap
    from audiossl.data.synth import SynthConfig, synthesize_corpus

    synthesize_corpus(out_dir, SynthConfig(speakers=speakers, utts_per_speaker=utts_per_speaker, seed=seed))
    return Path(out_dir)


def tiny_pretrained(run_dir: str | Path, data_dir: str | Path, steps: int = 2, sample_rate: int = 16000) -> Path:
    """Pretrain a tiny AST (mspm objective) for ``steps`` steps on ``data_dir`` into ``run_dir``; return it.

    A run dir that already has its checkpoint is reused.
    """
    # lazy: models and train pull in torch and the pretraining stack; only this fixture needs them
    from audiossl.models import latest_checkpoint
    from audiossl.train import pretrain, resolve_config  # a real pretraining run: testing sits above train

    run_dir = Path(run_dir)
    if latest_checkpoint(run_dir) is None:
        sets = [*TINY_PRETRAIN_OVERRIDES, f"run.max_steps={steps}", f"data.sample_rate={sample_rate}"]
        pretrain(resolve_config("mspm-ast-tiny", sets), [data_dir], run_dir)
    return run_dir
