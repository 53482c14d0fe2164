"""A compiled selective scan for CPUs: a small C kernel, built on first use, called through ctypes.

Why: the PyTorch scan (:mod:`audiossl.encoders.scan`) on CPU spends its time in thousands of small
tensor operations per call (one per time step of every chunk, forward, recompute and adjoint) and
in (B, chunk, D, N) temporaries. The recurrence is elementwise over (D, N): one pass over time with
the state held in cache, ``exp`` evaluated in-register, is what a CPU wants. This module holds the
C source, compiles it with the system C compiler (``cc``; ``-O3 -march=native``, no ``-ffast-math``)
into a per-user cache keyed by the source, the flags and the CPU, and loads it with ctypes. No
torch headers, no ninja: it builds in about a second wherever ``cc`` exists.

Where it cannot build (no compiler, a compile error, a non-x86/ARM oddity), :func:`native_library`
returns None and logs one line; :func:`audiossl.encoders.scan.selective_scan` then runs the PyTorch
scan. ``AUDIOSSL_NATIVE_SCAN=0`` switches the compiled path off.

Kernel layout (all fp32, contiguous): x, dt (Bt, L, D) with dt already ``softplus(dt + bias)``;
A transposed to (N, D) (one per item when ``a_per_item``); B, C (Bt, L, G, N): channel d reads
group ``d // (D / G)``, which lets the two directions of a bidirectional block, stacked along
channels, keep their own B and C. States are kept as (N, D) so that the inner loop runs over
channels, contiguous in memory and vectorised; the state at every chunk boundary is written out
for backward, which recomputes each chunk's states from it and runs the adjoint recurrence.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = r"""
#include <string.h>
#include <stdint.h>
#include <stdlib.h>

/* exp for arguments <= 0 (Cephes expf's polynomial, ~1 ulp), branch-free so loops vectorise.
   Below -87 the result is clamped to exp(-87) ~ 1.6e-38 (a decay of zero for every purpose). */
static inline float exp_neg(float x) {
    x = x < -87.0f ? -87.0f : (x > 0.0f ? 0.0f : x);
    float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest, no call */
    float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r2 + r + 1.0f;
    int32_t bits = ((int32_t)fx + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Forward. h0, h_final: (Bt, N, D); ckpt: (Bt, K, N, D), the state entering each chunk. */
void scan_forward(long Bt, long L, long D, long N, long G, long chunk, int a_per_item,
                  const float *x, const float *dt, const float *AT, const float *Bm, const float *Cm,
                  const float *h0, float *y, float *h_final, float *ckpt) {
    long Dg = D / G, K = (L + chunk - 1) / chunk;
    float *h = (float *)malloc(sizeof(float) * N * D);
    for (long b = 0; b < Bt; b++) {
        const float *A = AT + (a_per_item ? b * N * D : 0);
        memcpy(h, h0 + b * N * D, sizeof(float) * N * D);
        for (long t = 0; t < L; t++) {
            if (t % chunk == 0) memcpy(ckpt + (b * K + t / chunk) * N * D, h, sizeof(float) * N * D);
            const float *xt = x + (b * L + t) * D, *dtt = dt + (b * L + t) * D;
            const float *Bt_ = Bm + (b * L + t) * G * N, *Ct = Cm + (b * L + t) * G * N;
            float *yt = y + (b * L + t) * D;
            for (long d = 0; d < D; d++) yt[d] = 0.0f;
            for (long n = 0; n < N; n++) {
                const float *An = A + n * D;
                float *hn = h + n * D;
                for (long g = 0; g < G; g++) {
                    float bn = Bt_[g * N + n], cn = Ct[g * N + n];
                    long lo = g * Dg, hi = lo + Dg;
#pragma omp simd
                    for (long d = lo; d < hi; d++) {
                        float dl = dtt[d];
                        float hv = exp_neg(dl * An[d]) * hn[d] + (dl * xt[d]) * bn;
                        hn[d] = hv;
                        yt[d] += cn * hv;
                    }
                }
            }
        }
        memcpy(h_final + b * N * D, h, sizeof(float) * N * D);
    }
    free(h);
}

/* Backward. g_final, g_h0: (Bt, N, D); gAT: (Bt or 1, N, D), accumulated; gB, gC: (Bt, L, G, N). */
void scan_backward(long Bt, long L, long D, long N, long G, long chunk, int a_per_item,
                   const float *x, const float *dt, const float *AT, const float *Bm, const float *Cm,
                   const float *ckpt, const float *gy, const float *g_final,
                   float *gx, float *gdt, float *gAT, float *gB, float *gC, float *g_h0) {
    long Dg = D / G, K = (L + chunk - 1) / chunk;
    float *H = (float *)malloc(sizeof(float) * (chunk + 1) * N * D); /* states h_{start-1} .. h_{end-1} */
    float *g = (float *)malloc(sizeof(float) * N * D);
    float *acc_x = (float *)malloc(sizeof(float) * D);
    float *acc_dt = (float *)malloc(sizeof(float) * D);
    for (long b = 0; b < Bt; b++) {
        const float *A = AT + (a_per_item ? b * N * D : 0);
        float *gA = gAT + (a_per_item ? b * N * D : 0);
        memcpy(g, g_final + b * N * D, sizeof(float) * N * D);
        for (long k = K - 1; k >= 0; k--) {
            long start = k * chunk, end = start + chunk < L ? start + chunk : L;
            memcpy(H, ckpt + (b * K + k) * N * D, sizeof(float) * N * D);
            for (long t = start; t < end; t++) { /* recompute the chunk's states */
                const float *xt = x + (b * L + t) * D, *dtt = dt + (b * L + t) * D;
                const float *Bt_ = Bm + (b * L + t) * G * N;
                const float *prev = H + (t - start) * N * D;
                float *cur = H + (t - start + 1) * N * D;
                for (long n = 0; n < N; n++) {
                    for (long gi = 0; gi < G; gi++) {
                        float bn = Bt_[gi * N + n];
                        long lo = gi * Dg, hi = lo + Dg;
#pragma omp simd
                        for (long d = lo; d < hi; d++) {
                            float dl = dtt[d];
                            cur[n * D + d] = exp_neg(dl * A[n * D + d]) * prev[n * D + d] + (dl * xt[d]) * bn;
                        }
                    }
                }
            }
            for (long t = end - 1; t >= start; t--) { /* adjoint: g <- dL/dh_t, then a_t * g */
                const float *xt = x + (b * L + t) * D, *dtt = dt + (b * L + t) * D, *gyt = gy + (b * L + t) * D;
                const float *Bt_ = Bm + (b * L + t) * G * N, *Ct = Cm + (b * L + t) * G * N;
                float *gBt = gB + (b * L + t) * G * N, *gCt = gC + (b * L + t) * G * N;
                const float *prev = H + (t - start) * N * D, *cur = H + (t - start + 1) * N * D;
                for (long d = 0; d < D; d++) { acc_x[d] = 0.0f; acc_dt[d] = 0.0f; }
                for (long n = 0; n < N; n++) {
                    const float *An = A + n * D;
                    float *gn = g + n * D, *gAn = gA + n * D;
                    const float *pn = prev + n * D, *cn_ = cur + n * D;
                    for (long gi = 0; gi < G; gi++) {
                        float bn = Bt_[gi * N + n], cn = Ct[gi * N + n];
                        float sum_c = 0.0f, sum_b = 0.0f;
                        long lo = gi * Dg, hi = lo + Dg;
#pragma omp simd reduction(+ : sum_c, sum_b)
                        for (long d = lo; d < hi; d++) {
                            float dl = dtt[d];
                            float gv = gn[d] + cn * gyt[d];
                            sum_c += gyt[d] * cn_[d];
                            sum_b += gv * (dl * xt[d]);
                            acc_x[d] += gv * bn;
                            float a = exp_neg(dl * An[d]);
                            float q = gv * pn[d] * a;
                            acc_dt[d] += q * An[d];
                            gAn[d] += q * dl;
                            gn[d] = a * gv;
                        }
                        gCt[gi * N + n] = sum_c;
                        gBt[gi * N + n] = sum_b;
                    }
                }
                float *gxt = gx + (b * L + t) * D, *gdtt = gdt + (b * L + t) * D;
#pragma omp simd
                for (long d = 0; d < D; d++) {
                    gxt[d] = dtt[d] * acc_x[d];
                    gdtt[d] = xt[d] * acc_x[d] + acc_dt[d];
                }
            }
        }
        memcpy(g_h0 + b * N * D, g, sizeof(float) * N * D);
    }
    free(H); free(g); free(acc_x); free(acc_dt);
}
"""

FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fPIC", "-shared", "-std=gnu99"]

_ARGTYPES = {
    "scan_forward": [ctypes.c_long] * 6 + [ctypes.c_int] + [ctypes.c_void_p] * 9,
    "scan_backward": [ctypes.c_long] * 6 + [ctypes.c_int] + [ctypes.c_void_p] * 14,
}


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU model and flags (a shared home on mixed machines)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        fields = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(fields)))
    except OSError:
        return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    """``$AUDIOSSL_CACHE/native``, else ``$XDG_CACHE_HOME/audiossl/native`` (``~/.cache`` by default)."""
    if os.environ.get("AUDIOSSL_CACHE"):
        return Path(os.environ["AUDIOSSL_CACHE"]) / "native"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "audiossl" / "native"


def build(compiler: str | None = None, cache_dir: Path | None = None) -> Path:
    """Compile the kernel (or find it in the cache); return the shared library's path. Raises on failure."""
    compiler = compiler or os.environ.get("CC") or "cc"
    executable = shutil.which(compiler)
    if executable is None:
        raise RuntimeError(f"no C compiler ({compiler!r} not found)")
    key = hashlib.sha256("\0".join([SOURCE, *FLAGS, executable, _cpu_signature()]).encode()).hexdigest()[:16]
    folder = cache_dir or _cache_dir()
    library = folder / f"selective_scan_{key}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        source = Path(scratch) / "selective_scan.c"
        source.write_text(SOURCE)
        target = Path(scratch) / library.name
        result = subprocess.run(
            [executable, *FLAGS, str(source), "-o", str(target)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["(no output)"])[0]
            raise RuntimeError(f"{compiler} failed: {first}")
        os.replace(target, library)  # atomic: concurrent builders never see half a file
    return library


def _load(path: Path) -> ctypes.CDLL:
    library = ctypes.CDLL(str(path))
    for name, argtypes in _ARGTYPES.items():
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = None
    return library


@functools.cache
def native_library() -> ctypes.CDLL | None:
    """The compiled kernel, built on first call; None (after one log line) where it cannot be built."""
    if os.environ.get("AUDIOSSL_NATIVE_SCAN", "1") == "0":
        return None
    try:
        return _load(build())
    except Exception as error:  # no compiler, compile error, unwritable cache, unloadable library
        log.warning("compiled selective scan unavailable (%s); using the PyTorch scan", error)
        return None


def _pointer(tensor: torch.Tensor) -> int:
    return tensor.data_ptr()


class NativeScan(torch.autograd.Function):
    """The compiled scan as an autograd function over fp32 CPU tensors.

    x, dt (Bt, L, D) (dt after softplus/bias), A (D, N) or (Bt, D, N), B, C (Bt, L, G, N),
    initial_state (Bt, D, N). Saves the inputs and one (N, D) state per chunk per item.
    Returns y (Bt, L, D) (without the D skip) and the final state (Bt, D, N).
    """

    @staticmethod
    def forward(ctx, x, dt, A, B, C, initial_state, chunk_size):
        library = native_library()
        batch, length, channels = x.shape
        groups, states = B.shape[2], B.shape[3]
        a_per_item = A.dim() == 3
        x, dt, B, C = x.contiguous(), dt.contiguous(), B.contiguous(), C.contiguous()
        AT = A.transpose(-1, -2).contiguous()  # (.., N, D)
        h0 = initial_state.transpose(1, 2).contiguous()  # (Bt, N, D)
        chunks = -(-length // chunk_size)
        y = x.new_empty(batch, length, channels)
        final = x.new_empty(batch, states, channels)
        ckpt = x.new_empty(batch, chunks, states, channels)
        library.scan_forward(
            batch, length, channels, states, groups, chunk_size, int(a_per_item),
            *map(_pointer, (x, dt, AT, B, C, h0, y, final, ckpt)),
        )  # fmt: skip
        ctx.save_for_backward(x, dt, AT, B, C, ckpt)
        ctx.chunk_size, ctx.a_per_item = chunk_size, a_per_item
        return y, final.transpose(1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_final):
        x, dt, AT, B, C, ckpt = ctx.saved_tensors
        batch, length, channels = x.shape
        groups, states = B.shape[2], B.shape[3]
        grad_y = x.new_zeros(x.shape) if grad_y is None else grad_y.float().contiguous()
        if grad_final is None:
            g_final = x.new_zeros(batch, states, channels)
        else:
            g_final = grad_final.float().transpose(1, 2).contiguous()  # (Bt, N, D)
        grad_x, grad_dt = torch.empty_like(x), torch.empty_like(dt)
        grad_AT = torch.zeros_like(AT)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        g_h0 = x.new_empty(batch, states, channels)
        native_library().scan_backward(
            batch, length, channels, states, groups, ctx.chunk_size, int(ctx.a_per_item),
            *map(_pointer, (x, dt, AT, B, C, ckpt, grad_y, g_final, grad_x, grad_dt, grad_AT, grad_B, grad_C, g_h0)),
        )  # fmt: skip
        return grad_x, grad_dt, grad_AT.transpose(-1, -2), grad_B, grad_C, g_h0.transpose(1, 2), None
