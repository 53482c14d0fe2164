"""Evidence for continued pretraining of a published-format model: FSDD probes before and after.

1. A tiny WavLM in Hugging Face's own format (``WavLMModel.save_pretrained``: group-norm CNN,
   post-LN blocks, gated relative position bias; random weights, nothing is downloaded) stands in
   for a published checkpoint. Its feature extractor config says 8 kHz, FSDD's rate.
2. ``audiossl.train.pretrain`` continues it with the wav2vec 2.0 objective on the FSDD train audio
   (no labels), ``run.init_from`` = that directory (converted on load into the ``wav2vec2`` family;
   the encoder section of the config is the one the conversion reports).
3. The probe of ``bench/ssl_evidence.py`` (weighted layer sum + linear classifier, 3 seeds) is
   trained on frozen features of the train split and scored on the test split, for digits and
   speakers, on the converted model as published (not further pretrained) and after.

    nice -n 10 env OMP_NUM_THREADS=1 python bench/continued_pretraining.py --out exp/continued --steps 400

Results and their reading: docs/results.md ("Continued pretraining"). Resumable: a finished run is reused.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ssl_evidence import evaluate  # noqa: E402

from audiossl.data.fsdd import prepare_fsdd  # noqa: E402
from audiossl.fileio import atomic_write, latest_checkpoint  # noqa: E402
from audiossl.interop.convert import convert_checkpoint  # noqa: E402
from audiossl.train import load_pretrained, pretrain  # noqa: E402
from audiossl.train.config import config_from_dict  # noqa: E402
from audiossl.train.logging import read_records  # noqa: E402

log = logging.getLogger("continued_pretraining")

#: The stand-in published model: 20 ms frames at 8 kHz (hop 160), 192 wide, 4 blocks (WavLM base layout).
PUBLISHED = dict(
    hidden_size=192,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=768,
    conv_dim=(128,) * 6,
    conv_kernel=(10, 3, 3, 3, 3, 2),
    conv_stride=(5, 2, 2, 2, 2, 2),
    conv_bias=False,
    feat_extract_norm="group",
    do_stable_layer_norm=False,
    num_conv_pos_embeddings=64,
    num_conv_pos_embedding_groups=16,
)


def save_published(directory: Path) -> None:
    """The stand-in published checkpoint, written by transformers itself."""
    import transformers

    if (directory / "config.json").is_file():
        return
    torch.manual_seed(0)
    model = transformers.WavLMModel(transformers.WavLMConfig(**PUBLISHED))
    model.save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=8000, do_normalize=False).save_pretrained(directory)


def run_config(published: Path, encoder_section: dict, steps: int) -> object:
    return config_from_dict(
        {
            "data": {
                "sample_rate": 8000,
                "frontend": "none",
                "normalize": "none",
                "max_seconds_per_batch": 16.0,
                "max_utt_seconds": None,
                "min_utt_seconds": 0.1,
                "num_workers": 0,
            },
            "encoder": encoder_section,
            "objective": {
                "name": "wav2vec2",
                # spans of 5 tokens (100 ms) at 10% of the tokens, as the FSDD wav2vec2 evidence of issue 4
                "config": {"mask": {"kind": "span", "start_prob": 0.1, "span_length": 5, "min_spans": 1}},
            },
            "optim": {"lr": 1.0e-3, "warmup_ratio": 0.1, "schedule": "cosine", "min_lr_ratio": 0.01},
            "run": {
                "max_steps": steps,
                "log_every": 10,
                "checkpoint_every": steps,
                "device": "cpu",
                "tensorboard": False,
                "init_from": str(published),
            },
        }
    )


def first_step_loss(published: Path, encoder_section: dict, data: Path, out: Path, steps: int) -> float:
    """The loss of the continued run's first step, computed before any update: the converted model's loss.

    A one-step run with the same seed, data order and initialisation as the long run (only the
    learning-rate schedule differs, which the first loss does not see).
    """
    records_file = out / "train.jsonl"
    if not records_file.is_file():
        config = run_config(published, encoder_section, steps)
        config.run.max_steps, config.run.log_every, config.run.checkpoint_every = 1, 1, 1
        pretrain(config, [data], out)
    return [r for r in read_records(records_file) if "loss" in r][0]["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=REPO.parent / "shared" / "data" / "fsdd" / "recordings")
    parser.add_argument("--out", type=Path, default=REPO / "exp" / "continued")
    parser.add_argument("--steps", type=int, default=400, help="Continued-pretraining steps.")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    data = args.out / "data"
    if not (data / "test" / "wav.scp").is_file():
        prepare_fsdd(args.fsdd, data)
    published = args.out / "published-hf"
    save_published(published)
    converted = convert_checkpoint(published)
    run_dir = args.out / "run"
    section = converted.encoder_section()
    step1 = first_step_loss(published, section, data / "train", args.out / "first-step", args.steps)
    start = time.process_time()
    newest = latest_checkpoint(run_dir)
    if newest is not None and newest.name == f"ckpt-{args.steps:08d}.pt":
        log.info("reusing the finished run %s", run_dir)
    else:  # a fresh run, or the rest of an interrupted one
        config = run_config(published, section, args.steps)
        pretrain(config, [data / "train"], run_dir, resume=newest is not None)
    cpu_minutes = (time.process_time() - start) / 60
    records = [r for r in read_records(run_dir / "train.jsonl") if "loss" in r]
    after = load_pretrained(run_dir)
    before = load_pretrained(run_dir)
    before.encoder.load_state_dict(converted.encoder.state_dict())  # the converted model, not further trained
    results = {
        "pretraining": {
            "steps": records[-1]["step"],
            "cpu_minutes_this_call": cpu_minutes,
            "loss_step_1_before_any_update": step1,
            "loss_first_log": records[0]["loss"],
            "loss_last_log": records[-1]["loss"],
            "first_step": records[0]["step"],
            "parts_first": records[0].get("parts"),
            "parts_last": records[-1].get("parts"),
        },
        "converted": evaluate(before, "encoder", data),
        "continued": evaluate(after, "encoder", data),
        "meta": {
            "date": datetime.date.today().isoformat(),
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
            "command": " ".join(sys.argv),
        },
    }
    for name in ("converted", "continued"):
        scores = results[name]
        print(
            f"{name}: digit {100 * scores['digit']['accuracy']:.1f} ± {100 * scores['digit']['std']:.1f}, "
            f"speaker {100 * scores['speaker']['accuracy']:.1f} ± {100 * scores['speaker']['std']:.1f}"
        )
    print(json.dumps(results["pretraining"], indent=1))
    with atomic_write(args.out / "continued_pretraining.json") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
