"""Encoder benchmark: forward+backward tokens/s and peak memory, side by side.

Four groups, in one run (``python bench/encoders.py``; ``--quick`` for a smoke run):

1. **Long sequences**: AST-tiny vs BiMamba-tiny (when the ``mamba`` family is registered) at
   512, 2k, 8k and 22k tokens, batch 1, fp32. SSAMBA (Shams et al. 2024) reports 92.7 % faster
   inference and 95.4 % less memory than SSAST-tiny at 22k tokens against an attention that
   stores the full matrix; here AST uses SDPA, which does not.
2. **AST-base vs Hugging Face ``ASTModel``** at the same config (768 wide, 12 blocks, 12 heads,
   16 x 16 patches without overlap, 1024 frames x 128 bins, HF with ``attn_implementation="sdpa"``),
   fp32 and bf16 autocast. Correctness first: HF's weights are mapped from ours and the outputs
   must agree (attention is permutation-equivariant; HF orders patches frequency-major, we
   order them time-major, and HF's absolute position table is set to our position code).
3. **fp32 vs bf16 autocast** for every model of groups 1 and 2 (at 512 tokens for group 1).
4. **Inference** (forward only, ``torch.inference_mode``, fp32) at ``--infer-lengths`` (22016):
   AST-tiny with SDPA, AST-tiny with the unfused attention of the SSAST code (explicit
   ``softmax(Q K^T) V``, patched into that worker process only) and BiMamba-tiny: the seed's
   claim in both readings.

Every contender runs in its own process; peak memory is that process's high-water resident set
(VmHWM, see :func:`_max_rss_mib`). The processes of a group are started together and stepped in
turn (A B A B ...), one warm-up step then ``--repeats`` timed steps (fewer, without warm-up, for
the multi-second steps at >= 2k tokens; a step slower than ``--step-timeout`` or a process
growing past ``--memory-cap-mib`` stops that contender); we quote the median, the min-max and
the ratio of medians. Results print as a table and go to ``--json``.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import resource
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PATCH = 16
BINS = 128


def _max_rss_mib() -> float:
    """Peak resident memory of this process image, MiB.

    Linux's ``getrusage`` ``ru_maxrss`` carries the parent's peak over fork + exec (a child of a
    2 GB parent reports >= 2 GB), so read the image's own high-water mark (VmHWM) where there is one.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


# ----------------------------------------------------------------------------- contenders


def _our_encoder(family: str, preset: str):
    from audiossl.encoders import create_encoder

    return create_encoder(family, preset)


def _frames_for_tokens(encoder, tokens: int) -> int:
    """Fewest frames giving at least ``tokens`` input tokens."""
    low, high = 1, 1
    while int(encoder.token_lengths(torch.tensor([high]))[0]) < tokens:
        high *= 2
    while low < high:
        middle = (low + high) // 2
        if int(encoder.token_lengths(torch.tensor([middle]))[0]) < tokens:
            low = middle + 1
        else:
            high = middle
    return low


def _hf_config(attn: str = "sdpa"):
    from transformers import ASTConfig as HFASTConfig

    config = HFASTConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-6,
        patch_size=PATCH,
        frequency_stride=PATCH,
        time_stride=PATCH,
        max_length=1024,
        num_mel_bins=BINS,
    )
    config._attn_implementation = attn
    return config


def _hf_model():
    from transformers import ASTModel

    return ASTModel(_hf_config())


def unfused_attention(query, key, value, attn_mask=None, dropout_p=0.0, **kwargs):
    """Attention as the SSAST code computes it: the (S, S) matrix, explicit ``softmax(Q K^T) V``."""
    scores = (query @ key.transpose(-2, -1)) * query.shape[-1] ** -0.5  # (B, H, S, S)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(dim=-1) @ value


def build(spec: dict):
    """(model, step function taking the autocast flag -> (loss, tokens))."""
    torch.manual_seed(0)
    if spec.get("attention") == "unfused":  # this worker process only
        torch.nn.functional.scaled_dot_product_attention = unfused_attention
    if spec["model"] == "hf_ast":
        model = _hf_model().train()
        frames = spec["frames"]
        x = torch.randn(spec["batch"], frames, BINS)  # (B, T, F): HF's layout

        def step():
            return model(input_values=x).last_hidden_state

    else:
        model = _our_encoder(spec["model"], spec["preset"]).train()
        frames = spec["frames"] or _frames_for_tokens(model, spec["tokens"])
        x = torch.randn(spec["batch"], frames, BINS)  # (B, F, C)
        lengths = torch.full((spec["batch"],), frames)

        def step():
            return model(x, lengths).last

    return model, step


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so an idle contender does not crowd the next one.

    Peak memory (VmHWM) is unaffected; only the resident set between steps shrinks.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def worker(spec: dict) -> None:
    """Child process: build one contender, then run one step per ``step`` line on stdin."""
    torch.set_num_threads(spec["threads"])
    model, forward = build(spec)
    bf16 = spec["dtype"] == "bf16"
    infer = spec.get("mode") == "infer"
    if infer:
        model.eval()
    print(json.dumps({"ready": True, "rss_mib": _max_rss_mib()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.inference_mode(infer):
            hidden = forward()  # (B, S, D)
            loss = hidden.float().pow(2).mean()
        if not infer:
            loss.backward()
        seconds = time.perf_counter() - start
        answer = {"seconds": seconds, "loss": loss.item(), "tokens": hidden.shape[0] * hidden.shape[1]}
        model.zero_grad(set_to_none=True)
        del hidden, loss
        _release_free_memory()
        print(json.dumps(answer), flush=True)
    print(json.dumps({"max_rss_mib": _max_rss_mib()}), flush=True)


def _process_memory_mib(pid: int, field: str = "VmHWM") -> float:
    """``field`` (VmHWM: peak, VmRSS: current) of another running process, MiB; 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _answer(process: subprocess.Popen, timeout: float | None, memory_cap_mib: float | None) -> dict | str:
    """The worker's next JSON line, or ``"time"`` / ``"memory"`` when it passes a limit first.

    The memory cap protects a shared machine: the worker's resident set is polled every 0.2 s.
    """
    start = time.monotonic()
    while True:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            return json.loads(process.stdout.readline())
        if timeout is not None and time.monotonic() - start > timeout:
            return "time"
        if memory_cap_mib is not None and _process_memory_mib(process.pid, "VmRSS") > memory_cap_mib:
            return "memory"


def run_group(
    specs: list[dict],
    repeats: int,
    warmup: int,
    step_timeout: float | None = None,
    memory_cap_mib: float | None = None,
) -> list[dict]:
    """Start one process per spec, step them in turn (A B A B ...), return timings and memory.

    A step slower than ``step_timeout`` seconds, or growing past ``memory_cap_mib`` resident,
    stops that contender: its process is killed, its peak memory so far is kept and the result
    says why in ``stopped``.
    """
    processes = []
    for spec in specs:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
        env = dict(os.environ)
        if spec.get("malloc_mmap_threshold"):  # glibc: fixed threshold, no dynamic raise (see --help)
            env["MALLOC_MMAP_THRESHOLD_"] = str(spec["malloc_mmap_threshold"])
        processes.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))
    results = []
    for process, spec in zip(processes, specs, strict=True):
        ready = json.loads(process.stdout.readline())
        results.append({"spec": spec, "build_rss_mib": ready["rss_mib"], "seconds": [], "losses": []})
        results[-1].update(stopped=None, tokens=0, step_timeout=step_timeout, memory_cap_mib=memory_cap_mib)
    for repeat in range(warmup + repeats):
        for process, result in zip(processes, results, strict=True):
            if result["stopped"]:
                continue
            process.stdin.write("step\n")
            process.stdin.flush()
            answer = _answer(process, step_timeout, memory_cap_mib)
            if isinstance(answer, str):
                result.update(stopped=answer, max_rss_mib=_process_memory_mib(process.pid))
                process.kill()
                process.wait()
                continue
            result["tokens"] = answer["tokens"]
            result["losses"].append(answer["loss"])
            if repeat >= warmup:
                result["seconds"].append(answer["seconds"])
    for process, result in zip(processes, results, strict=True):
        if not result["stopped"]:
            process.stdin.write("stop\n")
            process.stdin.flush()
            result["max_rss_mib"] = json.loads(process.stdout.readline())["max_rss_mib"]
            process.wait()
        seconds = result["seconds"] or [float("inf")]
        result["median_s"] = statistics.median(seconds)
        result["min_s"], result["max_s"] = min(seconds), max(seconds)
        result["tokens_per_s"] = result["tokens"] / result["median_s"]
    return results


# ----------------------------------------------------------------------------- correctness


def check_hf_parity() -> float:
    """Map our AST-base weights into HF ASTModel; return the max abs diff of the final hidden states."""
    from transformers import ASTModel

    from audiossl.nn.positional import sinusoidal_encoding

    torch.manual_seed(0)
    ours = _our_encoder("ast", "base").eval()
    theirs = ASTModel(_hf_config()).eval()
    embedding = ours.embedding
    freq_patches, time_patches = BINS // PATCH, 1024 // PATCH
    with torch.no_grad():
        # Patch projection: ours reads (time, freq) patches; HF's Conv2d reads (freq, time).
        weight = embedding.projection.weight.view(768, PATCH, PATCH)  # (D, pt, pf)
        hf_embed = theirs.embeddings
        hf_embed.patch_embeddings.projection.weight.copy_(weight.transpose(1, 2).unsqueeze(1))
        hf_embed.patch_embeddings.projection.bias.copy_(embedding.projection.bias)
        hf_embed.cls_token.copy_(ours.cls_tokens[0].view(1, 1, -1))
        hf_embed.distillation_token.copy_(ours.cls_tokens[1].view(1, 1, -1))
        # HF's table: cls, dist, then patches frequency-major (s = f * Tp + t); cls rows get none.
        t = torch.arange(time_patches).repeat(freq_patches)  # (Fp * Tp,)
        f = torch.arange(freq_patches).repeat_interleave(time_patches)
        table = sinusoidal_encoding(t, 768) + embedding.freq_embedding(f)  # (Fp * Tp, D)
        hf_embed.position_embeddings.copy_(torch.cat([torch.zeros(2, 768), table]).unsqueeze(0))
        for block, layer in zip(ours.blocks, theirs.encoder.layer, strict=True):
            q, k, v = block.attention.qkv.weight.chunk(3)
            qb, kb, vb = block.attention.qkv.bias.chunk(3)
            attention = layer.attention.attention
            for linear, w, b in ((attention.query, q, qb), (attention.key, k, kb), (attention.value, v, vb)):
                linear.weight.copy_(w)
                linear.bias.copy_(b)
            layer.attention.output.dense.load_state_dict(block.attention.out.state_dict())
            layer.intermediate.dense.load_state_dict(block.mlp.fc1.state_dict())
            layer.output.dense.load_state_dict(block.mlp.fc2.state_dict())
            layer.layernorm_before.load_state_dict(block.attention_norm.state_dict())
            layer.layernorm_after.load_state_dict(block.mlp_norm.state_dict())
        theirs.layernorm.load_state_dict(ours.norm.state_dict())
        x = torch.randn(1, 1024, BINS)
        mine = ours(x, torch.tensor([1024])).last  # (1, 2 + Tp * Fp, D), time-major
        hf = theirs(input_values=x).last_hidden_state  # (1, 2 + Fp * Tp, D), frequency-major
        hf_patches = hf[:, 2:].view(1, freq_patches, time_patches, 768).transpose(1, 2).reshape(1, -1, 768)
        hf = torch.cat([hf[:, :2], hf_patches], dim=1)
    return float((mine - hf).abs().max())


def count_flops(spec: dict) -> int:
    """FLOPs of one forward+backward, counted with the math attention kernel (which the counter sees)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model, forward = build(spec)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        forward().float().pow(2).mean().backward()
    return counter.get_total_flops()


def peak_matmul_flops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large square matmul in ``dtype`` on this machine (best of ``repeats``)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- main


def _label(spec: dict) -> str:
    name = "HF ASTModel-base" if spec["model"] == "hf_ast" else f"{spec['model']}-{spec['preset']}"
    if spec.get("attention") == "unfused":
        name += " unfused"
    return f"{name} {spec['dtype']}"


def _row(result: dict, reference: dict | None = None) -> str:
    spec = result["spec"]
    if result["stopped"] == "time":
        limit, peak = result["step_timeout"], result["max_rss_mib"]
        return f"{_label(spec):<24} stopped: one step took > {limit:.0f} s; peak so far {peak:.0f} MiB"
    if result["stopped"] == "memory":
        limit, peak = result["memory_cap_mib"], result["max_rss_mib"]
        return f"{_label(spec):<24} stopped: resident memory passed the {limit:.0f} MiB cap (peak so far {peak:.0f})"
    line = (
        f"{_label(spec):<24} {result['tokens']:>6} {result['median_s']:>9.3f} "
        f"[{result['min_s']:.3f}-{result['max_s']:.3f}] {result['tokens_per_s']:>9.0f} "
        f"{result['max_rss_mib']:>8.0f} {result['max_rss_mib'] - result['build_rss_mib']:>8.0f}"
    )
    if reference is not None and reference is not result and reference["stopped"]:
        line += f"   ({_label(reference['spec'])} stopped)"
    elif reference is not None and reference is not result:
        speed = reference["median_s"] / result["median_s"]
        memory = result["max_rss_mib"] / reference["max_rss_mib"]
        line += f"   speed x{speed:.2f}  memory x{memory:.2f} vs {_label(reference['spec'])}"
    return line


HEADER = (
    f"{'contender':<24} {'tokens':>6} {'median s':>9} {'[min-max]':<13} {'tokens/s':>9} {'peak MiB':>8} {'step MiB':>8}"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--lengths", default="512,2048,8192,22016", help="token counts of the long-sequence group")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per contender (after one warm-up)")
    parser.add_argument("--mid-repeats", type=int, default=3, help="timed steps at 2k-8k tokens (no warm-up)")
    parser.add_argument("--long-repeats", type=int, default=1, help="timed steps at >= 8k tokens (no warm-up)")
    parser.add_argument(
        "--step-timeout", type=float, default=300.0, help="long-sequence group: stop a contender whose step is slower"
    )
    parser.add_argument(
        "--memory-cap-mib",
        type=float,
        default=9216.0,
        help="long-sequence group: stop a contender whose resident memory passes this (shared machines)",
    )
    parser.add_argument(
        "--infer-lengths",
        default="22016",
        help="inference group (forward only): BiMamba-tiny vs AST-tiny with SDPA and with SSAST's unfused attention",
    )
    parser.add_argument("--skip-long", action="store_true", help="skip the training group (long sequences)")
    parser.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        default=0,
        help="set glibc's MALLOC_MMAP_THRESHOLD_ (bytes) in every contender: a fixed threshold stops glibc "
        "from raising it after each large free, after which freed blocks stay in the heap and peak RSS "
        "measures the allocator's retention more than the step's needs (0: glibc's default)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per contender")
    parser.add_argument("--quick", action="store_true", help="smoke run: short lengths, 2 repeats")
    parser.add_argument("--skip-base", action="store_true", help="skip the AST-base vs Hugging Face group")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "encoders.json")
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0

    from audiossl.encoders import ENCODERS
    from audiossl.fileio import atomic_write

    lengths = [int(n) for n in args.lengths.split(",")]
    repeats = args.repeats
    if args.quick:
        lengths, repeats = [256, 512], 2
    families = ["ast"] + (["mamba"] if "mamba" in ENCODERS else [])
    report: dict = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "families": families,
        "load_average_start": os.getloadavg(),
        "malloc_mmap_threshold": args.malloc_mmap_threshold,
        "groups": {},
    }
    print(
        f"# {report['date']}  {report['cpu']}  threads={args.threads}  torch {report['torch']}  "
        f"load average {report['load_average_start'][0]:.1f}"
    )
    if args.malloc_mmap_threshold:
        print(f"# every contender runs with MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold}")
    if "mamba" not in ENCODERS:
        print("# the mamba family is not registered: long-sequence group runs AST only")
    peaks = {"fp32": peak_matmul_flops(torch.float32), "bf16": peak_matmul_flops(torch.bfloat16)}
    report["peak_matmul_flops"] = peaks
    print(f"# peak matmul (2048^2): fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")

    def spec(model: str, preset: str = "", *, tokens: int = 0, frames: int = 0, dtype: str = "fp32", **extra) -> dict:
        return {"model": model, "preset": preset, "tokens": tokens, "frames": frames, "batch": 1,
                "dtype": dtype, "threads": args.threads, "malloc_mmap_threshold": args.malloc_mmap_threshold,
                **extra}  # fmt: skip

    print("\n## long sequences: tiny encoders, batch 1, forward+backward")
    print(HEADER)
    long_results = []
    for index, n in enumerate([] if args.skip_long else lengths):
        specs = [spec(family, "tiny", tokens=n) for family in families]
        if index == 0:  # fp32 vs bf16 autocast at the shortest length
            specs += [spec(family, "tiny", tokens=n, dtype="bf16") for family in families]
        if n < 2048:
            count, warmup = repeats, 1
        else:  # steps take long enough that a warm-up step changes nothing measurable
            count, warmup = (args.mid_repeats if n < 8192 else args.long_repeats), 0
        results = run_group(specs, count, warmup, args.step_timeout, args.memory_cap_mib)
        for result in results:
            print(_row(result, results[0]))
        long_results.append(results)
    report["groups"]["long"] = long_results

    infer_lengths = [int(n) for n in args.infer_lengths.split(",") if n] if not args.quick else [512]
    if infer_lengths:
        print("\n## inference: tiny encoders, batch 1, forward only (inference_mode), fp32")
        print("# AST-tiny with SDPA (flash kernel) and with SSAST's unfused attention, softmax(QK^T)V")
        print(HEADER)
        infer_results = []
        for n in infer_lengths:
            specs = [spec("ast", "tiny", tokens=n, mode="infer")]
            specs += [spec("ast", "tiny", tokens=n, mode="infer", attention="unfused")]
            specs += [spec(family, "tiny", tokens=n, mode="infer") for family in families if family != "ast"]
            results = run_group(specs, args.long_repeats if n >= 8192 else repeats, 0 if n >= 8192 else 1,
                                args.step_timeout, args.memory_cap_mib)  # fmt: skip
            for result in results:
                print(_row(result, results[0]))
            infer_results.append(results)
        report["groups"]["infer"] = infer_results

    if not args.skip_base:
        print("\n## AST-base vs Hugging Face ASTModel (sdpa), 1024 frames x 128 bins, batch 1, forward+backward")
        difference = check_hf_parity()
        print(f"# parity: max |ours - HF| on the final hidden states = {difference:.2e} (weights mapped from ours)")
        if not difference < 1e-4:
            print("# parity FAILED: the two sides do not compute the same thing; not timing them")
            return 1
        specs = [
            spec("ast", "base", frames=1024),
            spec("hf_ast", frames=1024),
            spec("ast", "base", frames=1024, dtype="bf16"),
            spec("hf_ast", frames=1024, dtype="bf16"),
        ]
        flops = count_flops(specs[0])
        results = run_group(specs, repeats, 1)
        print(HEADER)
        for result in results:
            print(_row(result))
        for result in results:
            result["mfu"] = flops / result["median_s"] / peaks[result["spec"]["dtype"]]
        print(f"# FLOPs per step (ours, counted): {flops / 1e9:.0f} G")
        print(
            "# MFU vs measured matmul peak: " + ", ".join(f"{_label(r['spec'])} {100 * r['mfu']:.0f}%" for r in results)
        )
        for ours, theirs in ((results[0], results[1]), (results[2], results[3])):
            print(
                f"# {ours['spec']['dtype']}: speed ratio ours/HF = {theirs['median_s'] / ours['median_s']:.2f} "
                f"(target >= 1.0), memory ratio = {ours['max_rss_mib'] / theirs['max_rss_mib']:.2f} (target <= 1.0)"
            )
        report["groups"]["base"] = {"parity_max_abs_diff": difference, "flops_per_step": flops, "results": results}

    report["load_average_end"] = os.getloadavg()
    print(f"# load average at the end: {report['load_average_end'][0]:.1f} (machine shared: absolute times are noisy)")
    with atomic_write(args.json) as handle:
        json.dump(report, handle, indent=1)
    print(f"\nwrote {args.json}")
    return 0


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
