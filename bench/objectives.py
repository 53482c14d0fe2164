"""Objective benchmark: training-step time against peers, and model FLOPs utilisation on CPU.

Three groups, in one run (``python bench/objectives.py``; ``--quick`` for a smoke run):

1. **wav2vec2 vs Hugging Face ``Wav2Vec2ForPreTraining``** at the same small config (waveform
   CNN of 7 layers with layer norms, 256 wide, 4 pre-norm blocks, 4 heads, FFN 1024, G = 2 x
   V = 320 codebook, 100 distractors, random weights built locally; a batch of 2 x 1 s at
   16 kHz). One step = forward + backward + AdamW step. Our step samples its span mask and distractors inside; Hugging
   Face gets them precomputed (its samplers are numpy code meant for the data collator), so
   its timing excludes them. Correctness first: our weights are copied into the HF model,
   and in eval mode (arg-max codes, the same mask and distractors) both must give the same
   projected states, the same projected codes and the same contrastive loss.
2. **mspm one pass vs two passes** (SSAST's recipe: discriminative and generative losses
   from separate encoder passes with separate masks) on AST-tiny with SSAST's inputs
   (1024 frames x 128 bins, 16 x 16 patches, 400 of 512 patches masked in chunks).
   Correctness: with the same mask for both passes, the two-pass loss equals the one-pass loss.
3. **MFU** of the pretraining steps of groups 1 and 2 in fp32 and in bf16 autocast:
   FLOPs of one step (``torch.utils.flop_counter.FlopCounterMode``, with CPU flash attention
   counted) / median step time / the peak this run measures for a large matmul in that dtype.

Contenders alternate (A B A B ...) after a warm-up; we quote the median, the min-max and the
ratio of medians. Results print as a table and go to ``--json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiossl.encoders import create_encoder  # noqa: E402
from audiossl.encoders.embed import InputConfig  # noqa: E402
from audiossl.objectives import MaskConfig, create_objective  # noqa: E402
from audiossl.objectives.mspm import MSPMConfig, gather_masked, info_nce, masked_mse  # noqa: E402
from audiossl.objectives.quantizer import QuantizerConfig  # noqa: E402
from audiossl.objectives.wav2vec2 import Wav2Vec2Config, contrastive_loss  # noqa: E402

# ----------------------------------------------------------------------------- configs

W2V = {
    "dim": 256,
    "layers": 4,
    "heads": 4,
    "ffn": 1024,
    "conv_channels": 512,
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_pos_kernel": 128,
    "conv_pos_groups": 16,
    "groups": 2,
    "entries": 320,
    "code_dim": 256,
    "project_dim": 256,
    "negatives": 100,
}


def hf_config():
    """The Hugging Face side of group 1: pre-norm ("stable layer norm") blocks, layer-normed CNN."""
    from transformers import Wav2Vec2Config as HFConfig

    return HFConfig(
        hidden_size=W2V["dim"],
        num_hidden_layers=W2V["layers"],
        num_attention_heads=W2V["heads"],
        intermediate_size=W2V["ffn"],
        hidden_act="gelu",
        feat_extract_norm="layer",
        feat_extract_activation="gelu",
        conv_dim=(W2V["conv_channels"],) * 7,
        conv_kernel=W2V["conv_kernel"],
        conv_stride=W2V["conv_stride"],
        conv_bias=True,
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=W2V["conv_pos_kernel"],
        num_conv_pos_embedding_groups=W2V["conv_pos_groups"],
        num_codevector_groups=W2V["groups"],
        num_codevectors_per_group=W2V["entries"],
        codevector_dim=W2V["code_dim"],
        proj_codevector_dim=W2V["project_dim"],
        num_negatives=W2V["negatives"],
        contrastive_logits_temperature=0.1,
        diversity_loss_weight=0.1,
        hidden_dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        feat_quantizer_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.05,  # unused (masks are passed in) but makes HF create its mask embedding
        layer_norm_eps=1e-5,
        apply_spec_augment=True,  # else HF ignores the mask_time_indices it is given
    )


def our_wav2vec2():
    """Our side of group 1: AST blocks on the waveform CNN, no cls token, the wav2vec2 objective."""
    from audiossl.encoders.ast import ASTConfig

    frontend_options = {
        "conv_layers": [
            (W2V["conv_channels"], k, s) for k, s in zip(W2V["conv_kernel"], W2V["conv_stride"], strict=True)
        ],
        "mode": "layer_norm",
        "conv_bias": True,
    }
    input_config = InputConfig(
        kind="waveform",
        frontend="wav2vec2_cnn",
        frontend_options=frontend_options,
        conv_pos_kernel=W2V["conv_pos_kernel"],
        conv_pos_groups=W2V["conv_pos_groups"],
    )
    config = ASTConfig(
        input=input_config,
        dim=W2V["dim"],
        num_layers=W2V["layers"],
        num_heads=W2V["heads"],
        mlp_ratio=W2V["ffn"] / W2V["dim"],
        num_cls_tokens=0,
        norm_eps=1e-5,
    )
    encoder = create_encoder("ast", config=config)
    objective_config = Wav2Vec2Config(
        mask=MaskConfig(kind="span", start_prob=0.065, span_length=10, min_spans=2),
        quantizer=QuantizerConfig(groups=W2V["groups"], entries=W2V["entries"], code_dim=W2V["code_dim"]),
        project_dim=W2V["project_dim"],
        num_negatives=W2V["negatives"],
    )
    return create_objective("wav2vec2", encoder, objective_config)


def hf_wav2vec2():
    from transformers import Wav2Vec2ForPreTraining

    config = hf_config()
    config._attn_implementation = "sdpa"
    return Wav2Vec2ForPreTraining(config)


def copy_weights_to_hf(ours, theirs) -> None:
    """Load our wav2vec2 objective's weights into the Hugging Face model (same architecture)."""
    encoder = ours.encoder
    embedding = encoder.embedding
    hf = theirs.wav2vec2
    with torch.no_grad():
        for ours_block, hf_layer in zip(embedding.frontend.blocks, hf.feature_extractor.conv_layers, strict=True):
            hf_layer.conv.load_state_dict(ours_block.conv.state_dict())
            hf_layer.layer_norm.load_state_dict(ours_block.norm.state_dict())
        hf.feature_projection.layer_norm.load_state_dict(embedding.frontend_norm.state_dict())
        hf.feature_projection.projection.load_state_dict(embedding.projection.state_dict())
        hf.masked_spec_embed.copy_(embedding.mask_embedding)
        hf.encoder.pos_conv_embed.conv.load_state_dict(embedding.conv_positions.conv.state_dict())
        dim = W2V["dim"]
        for block, layer in zip(encoder.blocks, hf.encoder.layers, strict=True):
            layer.layer_norm.load_state_dict(block.attention_norm.state_dict())
            qkv_weight, qkv_bias = block.attention.qkv.weight, block.attention.qkv.bias
            for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
                getattr(layer.attention, name).weight.copy_(qkv_weight[index * dim : (index + 1) * dim])
                getattr(layer.attention, name).bias.copy_(qkv_bias[index * dim : (index + 1) * dim])
            layer.attention.out_proj.load_state_dict(block.attention.out.state_dict())
            layer.final_layer_norm.load_state_dict(block.mlp_norm.state_dict())
            layer.feed_forward.intermediate_dense.load_state_dict(block.mlp.fc1.state_dict())
            layer.feed_forward.output_dense.load_state_dict(block.mlp.fc2.state_dict())
        hf.encoder.layer_norm.load_state_dict(encoder.norm.state_dict())
        theirs.quantizer.weight_proj.load_state_dict(ours.quantizer.logits.state_dict())
        theirs.quantizer.codevectors.copy_(ours.quantizer.codebook.reshape(1, -1, ours.quantizer.codebook.shape[-1]))
        theirs.project_q.load_state_dict(ours.project_quantized.state_dict())
        theirs.project_hid.load_state_dict(ours.project_context.state_dict())


def hf_inputs(mask: torch.Tensor, num_negatives: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's distractor indices for ``mask`` (B, S), drawn by its own sampler (numpy)."""
    import numpy as np
    from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

    np.random.seed(seed)
    negatives = _sample_negative_indices(tuple(mask.shape), num_negatives, mask.numpy())
    return mask.clone(), torch.from_numpy(negatives).long()


def check_wav2vec2_parity(batch: int, samples: int) -> dict:
    """Eval mode, same weights, mask and distractors: max abs diffs of states and loss."""
    torch.manual_seed(0)
    ours = our_wav2vec2().eval()
    theirs = hf_wav2vec2().eval()
    copy_weights_to_hf(ours, theirs)
    waveforms = torch.randn(batch, samples)  # (B, T)
    lengths = torch.full((batch,), samples)
    token_lengths = ours.encoder.token_lengths(lengths)
    mask = ours.sample_mask(token_lengths, int(token_lengths.max()), torch.Generator().manual_seed(1))  # (B, S)
    mask_hf, negatives_hf = hf_inputs(mask, W2V["negatives"], seed=1)
    with torch.no_grad():
        result = ours.contrastive_pass(waveforms, lengths, mask, step=None)
        context = ours.project_context(result.output.last)  # (B, S, P)
        targets = ours.project_quantized(result.quantized.quantized)  # (B, S, P)
        length = mask.shape[1]
        local = negatives_hf - torch.arange(batch).view(batch, 1, 1) * length  # global -> within-item
        loss, _ = contrastive_loss(context, targets, mask, local, mask.clone(), 0.1)
        out = theirs(waveforms, mask_time_indices=mask_hf, sampled_negative_indices=negatives_hf)
    return {
        "projected_states_max_abs_diff": float((context - out.projected_states).abs().max()),
        "projected_codes_max_abs_diff": float((targets - out.projected_quantized_states).abs().max()),
        "contrastive_loss_ours": float(loss),
        "contrastive_loss_hf": float(out.contrastive_loss / mask.sum()),
    }


# ----------------------------------------------------------------------------- mspm


def our_mspm(config: MSPMConfig):
    """AST-tiny (SSAST-Tiny: 192 wide, 12 blocks, 3 heads, cls + dist) with the mspm ``config``."""
    encoder = create_encoder("ast", "tiny")
    return create_objective("mspm", encoder, config)


def two_pass_loss(objective, features, lengths, masks=None, generator=None):
    """SSAST's recipe: InfoNCE from one masked pass, MSE from another, each with its own mask."""
    targets, token_lengths = objective.targets(features, lengths)  # (B, S, P)
    parts = []
    for index, head in enumerate((objective.discriminative_head, objective.generative_head)):
        mask = masks[index] if masks is not None else objective.sample_mask(token_lengths, targets.shape[1], generator)
        hidden = objective.masked_outputs(features, lengths, mask)  # (B, S, D)
        packed, _, slots = gather_masked(hidden, mask)  # (B, M, D)
        true = gather_masked(targets, mask)[0]  # (B, M, P)
        prediction = head(packed)
        parts.append(info_nce(prediction, true, slots)[0] if index == 0 else masked_mse(prediction, true, slots))
    return parts[0] + objective.config.generative_weight * parts[1]


def check_mspm_parity(features, lengths, config: MSPMConfig) -> dict:
    """With one mask for both passes, two passes must give the one-pass loss."""
    torch.manual_seed(0)
    objective = our_mspm(config).eval()
    targets, token_lengths = objective.targets(features, lengths)
    mask = objective.sample_mask(token_lengths, targets.shape[1], torch.Generator().manual_seed(0))
    with torch.no_grad():
        joint = objective.loss_with_mask(features, lengths, mask, targets).total
        two = two_pass_loss(objective, features, lengths, masks=(mask, mask))
    return {"one_pass_loss": float(joint), "two_pass_loss": float(two), "abs_diff": float((joint - two).abs())}


# ----------------------------------------------------------------------------- timing


def make_step(model, loss_fn: Callable[[], torch.Tensor], bf16: bool) -> Callable[[], float]:
    """One training step: forward + backward + AdamW step; returns seconds."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step


def _flash_cpu_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _flash_cpu_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


def count_flops(model, loss_fn: Callable[[], torch.Tensor]) -> int:
    """FLOPs of forward + backward (matmuls, convolutions, attention incl. CPU flash attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_backward_flops,
    }
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        loss = loss_fn()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """Best FLOP/s of a (size x size) @ (size x size) matmul in ``dtype``."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def run_alternating(steps: dict[str, Callable[[], float]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Warm up every contender, then time them in turn (A B A B ...)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(step())
    return times


def summary(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds), "all_s": seconds}


def machine() -> dict:
    model = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "load_average_1min": os.getloadavg()[0],
        "date": datetime.date.today().isoformat(),
        "cpu": model,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny inputs, 2 repeats")
    parser.add_argument("--json", type=Path, default=REPO / "exp" / "bench" / "objectives.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats, args.warmup = 2, 1
    w2v_batch, w2v_samples = (2, 8000) if args.quick else (2, 16000)  # 2 x 1 s at 16 kHz: 49 frames each
    mspm_batch, mspm_frames = (1, 256) if args.quick else (2, 1024)  # SSAST: 1024 frames x 128 bins
    info = machine()
    print(
        f"{info['date']}  {info['cpu']}  threads={info['threads']}  torch {info['torch']}  "
        f"load average {info['load_average_1min']:.1f}"
    )
    print(f"command: {info['command']}")

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak (2048^3): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")

    # Correctness first.
    w2v_parity = check_wav2vec2_parity(w2v_batch, w2v_samples)
    print("wav2vec2 vs HF (eval, same weights/mask/distractors):", json.dumps(w2v_parity))
    generator = torch.Generator().manual_seed(0)
    mspm_features = torch.randn(mspm_batch, mspm_frames, 128, generator=generator)  # (B, F, C)
    mspm_lengths = torch.full((mspm_batch,), mspm_frames)
    # SSAST: 400 of 512 patches masked in chunks of 3-5 (the quick run has 128 patches).
    mspm_config = MSPMConfig(mask=MaskConfig(kind="chunk", count=100 if args.quick else 400, ratio=0.8))
    mspm_parity = check_mspm_parity(mspm_features, mspm_lengths, mspm_config)
    print("mspm one pass vs two passes (same mask):", json.dumps(mspm_parity))

    # Contenders.
    torch.manual_seed(0)
    waveforms = torch.randn(w2v_batch, w2v_samples)  # (B, T)
    w2v_lengths = torch.full((w2v_batch,), w2v_samples)
    contenders: dict[str, Callable[[], float]] = {}
    flops: dict[str, int] = {}
    for dtype in ("fp32", "bf16"):
        bf16 = dtype == "bf16"
        ours = our_wav2vec2().train()
        counter = {"step": 0}

        def ours_loss(model=ours, counter=counter):
            counter["step"] += 1
            return model(waveforms, w2v_lengths, step=counter["step"]).total

        theirs = hf_wav2vec2().train()
        token_lengths = ours.encoder.token_lengths(w2v_lengths)
        sampler = our_wav2vec2()  # only draws the masks handed to HF (outside its timing)
        sampler_generator = torch.Generator().manual_seed(2)
        hf_batches = []
        for index in range(args.warmup + args.repeats + 1):
            mask = sampler.sample_mask(token_lengths, int(token_lengths.max()), sampler_generator)
            hf_batches.append(hf_inputs(mask, W2V["negatives"], seed=index))
        hf_position = {"index": 0}

        def hf_loss(model=theirs, batches=hf_batches, position=hf_position):
            mask, negatives = batches[position["index"] % len(batches)]
            position["index"] += 1
            out = model(waveforms, mask_time_indices=mask, sampled_negative_indices=negatives)
            return out.loss / mask.sum()

        contenders[f"wav2vec2 ours {dtype}"] = make_step(ours, ours_loss, bf16)
        contenders[f"wav2vec2 HF {dtype}"] = make_step(theirs, hf_loss, bf16)
        if dtype == "fp32":
            flops["wav2vec2 ours"] = count_flops(ours, ours_loss)
            flops["wav2vec2 HF"] = count_flops(theirs, hf_loss)

        torch.manual_seed(0)
        joint = our_mspm(mspm_config).train()
        joint_generator = torch.Generator().manual_seed(3)
        two = our_mspm(mspm_config).train()
        two_generator = torch.Generator().manual_seed(3)

        def joint_loss(model=joint, generator=joint_generator):
            return model(mspm_features, mspm_lengths, generator=generator).total

        def two_loss(model=two, generator=two_generator):
            return two_pass_loss(model, mspm_features, mspm_lengths, generator=generator)

        contenders[f"mspm one pass {dtype}"] = make_step(joint, joint_loss, bf16)
        contenders[f"mspm two passes {dtype}"] = make_step(two, two_loss, bf16)
        if dtype == "fp32":
            flops["mspm one pass"] = count_flops(joint, joint_loss)
            flops["mspm two passes"] = count_flops(two, two_loss)

    groups = [
        ("wav2vec2", ["wav2vec2 ours fp32", "wav2vec2 HF fp32"]),
        ("wav2vec2", ["wav2vec2 ours bf16", "wav2vec2 HF bf16"]),
        ("mspm", ["mspm one pass fp32", "mspm two passes fp32"]),
        ("mspm", ["mspm one pass bf16", "mspm two passes bf16"]),
    ]
    results: dict[str, dict] = {}
    for _, names in groups:
        times = run_alternating({name: contenders[name] for name in names}, args.warmup, args.repeats)
        for name in names:
            results[name] = summary(times[name])
    peaks["fp32"] = max(peaks["fp32"], matmul_peak(torch.float32))
    peaks["bf16"] = max(peaks["bf16"], matmul_peak(torch.bfloat16))

    print()
    print(f"{'contender':<26} {'median s':>9} {'min-max s':>15} {'GFLOP/step':>11} {'MFU':>7}")
    for name, result in results.items():
        dtype = name.rsplit(" ", 1)[1]
        key = name.rsplit(" ", 1)[0]
        step_flops = flops[key]
        result["flops"] = step_flops
        result["mfu"] = step_flops / result["median_s"] / peaks[dtype]
        print(
            f"{name:<26} {result['median_s']:>9.3f} {result['min_s']:>7.3f}-{result['max_s']:<7.3f} "
            f"{step_flops / 1e9:>11.1f} {100 * result['mfu']:>6.1f}%"
        )
    ratios = {}
    for _, (ours_name, peer_name) in groups:
        ratio = results[peer_name]["median_s"] / results[ours_name]["median_s"]
        ratios[f"{peer_name} / {ours_name}"] = ratio
        print(f"speed-up {ours_name} vs {peer_name}: {ratio:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"matmul peak used for MFU: fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    from audiossl.fileio import atomic_write

    payload = {
        "machine": info,
        "peaks_flops": peaks,
        "parity": {"wav2vec2": w2v_parity, "mspm": mspm_parity},
        "results": results,
        "ratios": ratios,
        "config": {"wav2vec2": W2V, "w2v_batch": [w2v_batch, w2v_samples], "mspm_batch": [mspm_batch, mspm_frames]},
    }
    with atomic_write(args.json, "w") as handle:
        json.dump(payload, handle, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
