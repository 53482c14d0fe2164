"""Evidence for SpeechT5's joint pretraining: speech+text vs speech-only pretraining, then the same ASR fine-tuning.

On the synthetic corpus (``audiossl.data.synth``): a training set (``--speakers`` x ``--utts``,
seed 0), a test set of other speakers (seed 1), MFCC k-means labels (k = 50) of the training
audio, and an *unpaired* text corpus of sentences planned with another seed (same lexicon, none
of them a test transcript by construction of the seeds; overlap is counted and reported).

Three models of the same architecture (the speecht5-tiny preset, shrunk by ``MODEL``):

1. ``none``: no pretraining (random initialisation);
2. ``speech``: ``speecht5`` pretraining on speech only (``--pretrain-steps`` speech batches);
3. ``joint``: the same number of speech batches plus as many text batches (alternation 1:1).

Each is fine-tuned the same way for ASR with the whole encoder-decoder (the decoder predicts the
characters of the transcript with teacher forcing, cross-entropy with label smoothing 0.1,
``--finetune-steps`` steps of 8 utterances, AdamW 3e-4), then decoded on the test set with the
joint-decoding beam search (beam 4, no CTC) and scored with the asr plugin's WER/CER. The
character inventory is the text corpus's (the joint model's pretrained tokenizer); the other two
get a fresh embedding over the same characters.

    python bench/speecht5_joint.py --out exp/speecht5_joint --pretrain-steps 300 --finetune-steps 300 --threads 2

Results and their reading: docs/results.md (section "SpeechT5 joint pretraining").
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiossl.cluster.kmeans import KMeansConfig  # noqa: E402
from audiossl.cluster.pipeline import FitConfig, fit_kmeans_dir, label_with_kmeans_dir  # noqa: E402
from audiossl.data.synth import SynthConfig, plan_utterance, synthesize_corpus  # noqa: E402
from audiossl.data.text import BOS, EOS, PAD, CharTokenizer, pad_sequences, read_text_corpus  # noqa: E402
from audiossl.encoders import create_encoder  # noqa: E402
from audiossl.fileio import atomic_write  # noqa: E402
from audiossl.models.speecht5 import SpeechT5Backbone, SpeechT5Pretrained, load_speecht5  # noqa: E402
from audiossl.nn.beam_search import BeamSearchConfig, beam_search_batch  # noqa: E402
from audiossl.train import pretrain, resolve_config  # noqa: E402

log = logging.getLogger("speecht5_joint")

#: The model of every run: speecht5-tiny shrunk for a shared CPU.
MODEL = [
    "encoder.overrides.dim=128",
    "encoder.overrides.num_layers=4",
    "encoder.overrides.num_heads=4",
    "encoder.overrides.ffn_dim=512",
    "objective.config.backbone.decoder_layers=2",
    "objective.config.backbone.speech.hidden_dim=128",
    "objective.config.backbone.speech.postnet_channels=128",
    "objective.config.mask.span_length=5",
    "objective.config.mask.start_prob=0.1",
    "objective.config.mask.min_spans=1",
    "objective.config.text_batch_size=16",
    "data.max_seconds_per_batch=6",
    "data.min_utt_seconds=0.3",
    "data.num_workers=0",
    "optim.warmup_steps=50",
    "optim.lr=5.0e-4",
    "run.device=cpu",
    "run.tensorboard=false",
    "run.log_every=5",
]


def prepare(out: Path, speakers: int, utts: int, sentences: int) -> dict[str, Path]:
    """Train/test corpora, k-means labels of the training audio and the unpaired text corpus."""
    paths = {"train": out / "train", "test": out / "test", "labels": out / "labels", "text": out / "text.txt"}
    synthesize_corpus(paths["train"], SynthConfig(speakers=speakers, utts_per_speaker=utts, seed=0))
    synthesize_corpus(paths["test"], SynthConfig(speakers=4, utts_per_speaker=8, seed=1))
    if not paths["labels"].exists():
        kmeans = KMeansConfig(n_clusters=50, batch_size=1024, n_init=1, max_iter=20)
        fit_kmeans_dir([paths["train"]], out / "kmeans", FitConfig(kmeans=kmeans), progress=False)
        label_with_kmeans_dir(out / "kmeans", paths["train"], paths["labels"], progress=False)
    text_config = SynthConfig(speakers=16, utts_per_speaker=max(1, sentences // 16), seed=7)
    lines = [
        " ".join(plan_utterance(text_config, s, i).words)
        for s in range(text_config.speakers)
        for i in range(text_config.utts_per_speaker)
    ]
    with atomic_write(paths["text"]) as handle:
        handle.write("\n".join(lines) + "\n")
    return paths


def read_set(data_dir: Path) -> list[tuple[str, np.ndarray, str]]:
    """(id, waveform, transcript) of every utterance of a synthetic data dir."""
    text = dict(line.split(" ", 1) for line in (data_dir / "text").read_text().splitlines())
    items = []
    for line in (data_dir / "wav.scp").read_text().splitlines():
        utt, path = line.split(" ", 1)
        wave, _ = soundfile.read(path, dtype="float32")
        items.append((utt, wave, text[utt]))
    return items


def waves_batch(items) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for _, w, _ in items])
    waves = torch.zeros(len(items), int(lengths.max()))
    for row, (_, wave, _) in enumerate(items):
        waves[row, : len(wave)] = torch.from_numpy(wave)
    return waves, lengths


def with_text(model: SpeechT5Pretrained, tokenizer: CharTokenizer, seed: int) -> SpeechT5Pretrained:
    """The model with a text embedding over ``tokenizer`` (kept when it was pretrained with it)."""
    if model.tokenizer is not None:
        return model
    torch.manual_seed(seed)
    backbone = SpeechT5Backbone(model.backbone.config, model.encoder.dim, tokenizer)
    state = {k: v for k, v in model.backbone.state_dict().items() if k != "_extra_state"}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    assert not unexpected and all(
        k.startswith(("embedding", "output_bias", "text_prenet", "_extra_state")) for k in missing
    )
    return SpeechT5Pretrained(model.inputs, model.encoder, backbone, model.config)


def finetune(model: SpeechT5Pretrained, train, steps: int, seed: int, batch_size: int = 8) -> list[float]:
    """Teacher-forced character decoding of the transcripts, all weights trained; returns the loss curve."""
    tokenizer = model.tokenizer
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps):
        items = [train[i] for i in rng.choice(len(train), size=batch_size, replace=False)]
        waves, lengths = waves_batch(items)
        tokens = [torch.tensor(tokenizer.encode(t)) for _, _, t in items]
        decoder_input, target_lengths = pad_sequences([torch.cat([torch.tensor([BOS]), t]) for t in tokens])
        target, _ = pad_sequences([torch.cat([t, torch.tensor([EOS])]) for t in tokens])
        out = model.encode_speech(waves, lengths)
        logits = model.backbone.text_logits(decoder_input, target_lengths, out.last, out.lengths)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD, label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss))
    return losses


def evaluate(model: SpeechT5Pretrained, test) -> dict[str, float]:
    from audiossl_asr.metrics import char_error_rate, word_error_rate

    model.eval()
    hypotheses, references = [], []
    config = BeamSearchConfig(beam_size=4, ctc_weight=0.0, length_penalty=1.0, max_length=40)
    with torch.no_grad():
        for start in range(0, len(test), 8):
            items = test[start : start + 8]
            waves, lengths = waves_batch(items)
            out = model.encode_speech(waves, lengths)
            for hyps, item in zip(
                beam_search_batch(model.backbone, out.last, out.lengths, sos=BOS, eos=EOS, config=config),
                items,
                strict=True,
            ):
                hypotheses.append(model.tokenizer.decode(hyps[0].tokens) if hyps else "")
                references.append(item[2])
    return {
        "wer": word_error_rate(references, hypotheses).rate,
        "cer": char_error_rate(references, hypotheses).rate,
        "examples": list(zip(references[:4], hypotheses[:4], strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--utts", type=int, default=24)
    parser.add_argument("--sentences", type=int, default=1600)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = prepare(args.out, args.speakers, args.utts, args.sentences)
    train, test = read_set(paths["train"]), read_set(paths["test"])
    corpus = {s.text for s in read_text_corpus(paths["text"])}
    overlap = sum(t in corpus for _, _, t in test) / len(test)
    tokenizer = CharTokenizer.from_sentences(read_text_corpus(paths["text"]))
    common = [
        *MODEL,
        f"objective.config.labels={paths['labels']}",
        f"run.num_threads={args.threads}",
        f"run.seed={args.seed}",
    ]
    runs = {
        "speech": [*common, f"run.max_steps={args.pretrain_steps}", f"run.checkpoint_every={args.pretrain_steps}"],
        "joint": [
            *common,
            f"objective.config.text={paths['text']}",
            f"run.max_steps={2 * args.pretrain_steps}",
            f"run.checkpoint_every={2 * args.pretrain_steps}",
        ],
    }
    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for name, sets in runs.items():
        run_dir = args.out / f"pretrain-{name}"
        started = time.monotonic()
        resume = bool(list(run_dir.glob("ckpt-*.pt")))  # an interrupted run continues
        result = pretrain(resolve_config("speecht5-tiny", sets), [paths["train"]], run_dir, resume=resume)
        if result.stopped_by is not None:
            raise SystemExit(f"pretraining {name} stopped by {result.stopped_by}; rerun to continue")
        timings[f"pretrain_{name}_s"] = time.monotonic() - started
    for name in ("none", "speech", "joint"):
        started = time.monotonic()
        source = args.out / f"pretrain-{'speech' if name == 'none' else name}"
        model = load_speecht5(source)
        if name == "none":  # the same architecture, freshly initialised (input statistics kept)
            torch.manual_seed(args.seed + 1)
            encoder = create_encoder("speecht5", config=model.encoder.config)
            backbone = SpeechT5Backbone(model.backbone.config, encoder.dim, None)
            model = SpeechT5Pretrained(model.inputs, encoder, backbone, model.config)
        model = with_text(model, tokenizer, args.seed)
        if name == "joint":
            assert model.tokenizer.state() == tokenizer.state()
        losses = finetune(model, train, args.finetune_steps, args.seed)
        results[name] = {**evaluate(model, test), "final_loss": float(np.mean(losses[-20:]))}
        timings[f"finetune_{name}_s"] = time.monotonic() - started
        log.info("%s: %s", name, results[name])
    report = {
        "results": results,
        "timings_s": timings,
        "test_transcripts_in_text_corpus": overlap,
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads "
        "(shared by other agents)",
    }
    with atomic_write(args.out / "results.json") as handle:
        json.dump(report, handle, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
