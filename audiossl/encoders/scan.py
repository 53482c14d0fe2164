"""Mamba's selective scan (S6) in plain PyTorch, with memory linear in sequence length.

The recurrence (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023),
per channel d and state n::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t        h: (B, D, N)
    y_t = C_t . h_t + D * x_t

:func:`selective_scan` cuts the sequence into chunks of ``chunk_size`` steps and carries the
(B, D, N) state from chunk to chunk, so only a few (B, chunk, D, N) tensors exist at a time, never
(B, L, D, N). Inside a chunk the recurrence is solved either by a parallel prefix scan (Hillis &
Steele: log2(chunk) rounds in which every step absorbs the state of the step ``2**k`` before it;
few large operations, what accelerators want) or by a loop over the chunk's steps on cache-sized
slices (less memory traffic, faster on CPUs; docs/benchmarks.md). Every multiplier is a product of
decays ``exp(dt * A)`` with ``dt >= 0`` and ``A < 0``, so it lies in (0, 1]: nothing is
exponentiated from a positive number and nothing overflows in fp32.

Backward is written by hand (:class:`_ChunkedScan`): forward keeps the inputs and the state entering
each chunk; backward recomputes one chunk at a time and runs the adjoint recurrence, which is the
same linear scan in reverse. Memory stays linear in L and autograd records one node, not L.

On CPU, ``method="auto"`` runs the same recurrence (same chunk checkpoints, same adjoint) as a
compiled C kernel (:mod:`audiossl.encoders.scan_native`), built with the system C compiler on
first use; where it cannot be built, one log line and the PyTorch scan below. On CUDA, when the
``mamba_ssm`` package is importable, the fused kernel
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` computes the same thing.

:func:`flip_padded` reverses each item of a padded batch within its own length, which is how the
backward direction of a bidirectional Mamba keeps padding at the end of every sequence.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from audiossl.encoders.scan_native import NativeScan, native_library

#: Default chunk length (fastest of 16..128 in both modes on CPU); a power of two keeps the prefix
#: scan's rounds full.
DEFAULT_CHUNK_SIZE = 32


def flip_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse every item of ``x`` (B, T, ...) along T within its first ``lengths[b]`` steps.

    Padding positions (``t >= lengths[b]``) stay where they are, so the reversed batch still has
    its padding at the end. The operation is its own inverse.
    """
    batch, steps = x.shape[:2]
    positions = torch.arange(steps, device=x.device)  # (T,)
    lengths = lengths.to(device=x.device).unsqueeze(1)  # (B, 1)
    source = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (B, T)
    source = source.view(batch, steps, *([1] * (x.dim() - 2))).expand_as(x)  # (B, T, ...)
    return x.gather(1, source)


def _prepare_dt(dt: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool) -> torch.Tensor:
    """Step sizes in fp32: ``softplus(dt + dt_bias)`` or ``dt + dt_bias``."""
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    return F.softplus(dt) if dt_softplus else dt


def selective_scan_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The recurrence as a plain loop over time, in fp32: slow, obviously right, for tests.

    Same arguments and results as :func:`selective_scan`.
    """
    dt = _prepare_dt(dt, dt_bias, dt_softplus)  # (B, L, D)
    x32, A32, B32, C32 = x.float(), A.float(), B.float(), C.float()
    batch, length, channels = x.shape
    if initial_state is None:
        state = x32.new_zeros(batch, channels, A.shape[1])  # (B, D, N)
    else:
        state = initial_state.float()
    outputs = []
    # unbind (one autograd node) rather than indexing per step, whose backward would be quadratic.
    steps = zip(dt.unbind(1), x32.unbind(1), B32.unbind(1), C32.unbind(1), strict=True)
    for dt_t, x_t, B_t, C_t in steps:  # (B, D), (B, D), (B, N), (B, N)
        decay = torch.exp(dt_t.unsqueeze(-1) * A32)  # (B, D, N)
        drive = (dt_t * x_t).unsqueeze(-1) * B_t.unsqueeze(1)  # (B, D, N)
        state = decay * state + drive
        outputs.append((state * C_t.unsqueeze(1)).sum(-1))  # (B, D)
    y = torch.stack(outputs, dim=1) if outputs else x32.new_zeros(batch, 0, channels)  # (B, L, D)
    if D is not None:
        y = y + x32 * D.float()
    y = y.to(x.dtype)
    return (y, state) if return_final_state else y


def _linear_recurrence(decay: torch.Tensor, drive: torch.Tensor, parallel: bool) -> torch.Tensor:
    """Solve ``s_t = decay_t * s_{t-1} + drive_t`` along dim 1 from ``s_{-1} = 0``, in place in ``drive``.

    ``decay``, ``drive`` (B, c, D, N); ``decay`` is left untouched. Outside autograd only.
    ``parallel``: log2(c) rounds of a Hillis-Steele prefix scan; after round k every step holds
    the sum over its last 2**k steps s of (product of the decays after s) * drive_s, and
    ``window`` the product of its last 2**k decays. Else a loop over the c steps.
    """
    steps = drive.shape[1]
    if not parallel:
        for t in range(1, steps):
            drive[:, t].addcmul_(decay[:, t], drive[:, t - 1])
        return drive
    window = decay
    shift = 1
    while shift < steps:
        drive[:, shift:] += window[:, shift:] * drive[:, :-shift]
        if 2 * shift < steps:
            window = torch.cat([window[:, :shift], window[:, shift:] * window[:, :-shift]], dim=1)
        shift *= 2
    return drive


def _chunk_states(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, entering: torch.Tensor, parallel: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decays and states of one chunk: x, dt (B, c, D), B (B, c, N), entering state (B, D, N).

    Returns (decay, states), both (B, c, D, N); states[:, t] is h_t.
    """
    decay = torch.exp(dt.unsqueeze(-1) * A)  # (B, c, D, N), each in (0, 1]
    states = (dt * x).unsqueeze(-1) * B.unsqueeze(2)  # (B, c, D, N): the drive dt_t * x_t * B_t
    states[:, 0] += decay[:, 0] * entering  # fold the entering state into the first step
    return decay, _linear_recurrence(decay, states, parallel)


class _ChunkedScan(torch.autograd.Function):
    """The scan over fp32 tensors, chunk by chunk, with a hand-written backward.

    Forward keeps only the inputs and the (B, D, N) state entering each chunk. Backward walks the
    chunks from last to first, recomputes each chunk's states from its entering state and runs the
    adjoint recurrence ``g_t = C_t (x) gy_t + decay_{t+1} * g_{t+1}`` (the same linear scan, reversed).
    """

    @staticmethod
    def forward(ctx, x, dt, A, B, C, initial_state, chunk_size, parallel):
        batch, length, channels = x.shape
        num_chunks = -(-length // chunk_size)
        entering = x.new_empty(num_chunks, batch, channels, A.shape[1])  # (K, B, D, N)
        y = x.new_empty(batch, length, channels)  # (B, L, D)
        state = initial_state
        for k, start in enumerate(range(0, length, chunk_size)):
            part = slice(start, start + chunk_size)
            entering[k] = state
            _, states = _chunk_states(x[:, part], dt[:, part], A, B[:, part], state, parallel)
            y[:, part] = torch.einsum("bldn,bln->bld", states, C[:, part])
            state = states[:, -1].clone()
        ctx.save_for_backward(x, dt, A, B, C, entering)
        ctx.chunk_size = chunk_size
        ctx.parallel = parallel
        return y, state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_final):
        x, dt, A, B, C, entering = ctx.saved_tensors
        chunk_size, parallel = ctx.chunk_size, ctx.parallel
        length = x.shape[1]
        grad_x, grad_dt = torch.empty_like(x), torch.empty_like(dt)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        grad_A = torch.zeros_like(A)
        grad_state = grad_final.float().clone()  # (B, D, N): gradient wrt the state leaving the chunk
        starts = list(range(0, length, chunk_size))
        for k in reversed(range(len(starts))):
            part = slice(starts[k], starts[k] + chunk_size)
            x_k, dt_k, B_k, C_k, gy_k = x[:, part], dt[:, part], B[:, part], C[:, part], grad_y[:, part]
            decay, states = _chunk_states(x_k, dt_k, A, B_k, entering[k], parallel)
            grad_C[:, part] = torch.einsum("bldn,bld->bln", states, gy_k)
            # Adjoint recurrence, run forward in time on the reversed chunk.
            adjoint = torch.flip(gy_k.unsqueeze(-1) * C_k.unsqueeze(2), dims=[1])  # (B, c, D, N)
            adjoint[:, 0] += grad_state
            later_decay = torch.flip(decay, dims=[1])  # step s of the reversed chunk decays by decay_{t+1}
            later_decay = torch.cat([torch.ones_like(later_decay[:, :1]), later_decay[:, :-1]], dim=1)
            grad_states = torch.flip(_linear_recurrence(later_decay, adjoint, parallel), dims=[1])  # (B, c, D, N)
            # Through the drive dt * x * B.
            grad_drive = torch.einsum("bldn,bln->bld", grad_states, B_k)  # (B, c, D): grad wrt dt * x
            grad_B[:, part] = torch.einsum("bldn,bld->bln", grad_states, dt_k * x_k)
            grad_x[:, part] = grad_drive * dt_k
            # Gradient wrt the state entering this chunk: h_in reaches h_0 through decay_0.
            grad_entering = decay[:, 0] * grad_states[:, 0]  # (B, D, N)
            # Through the decays exp(dt * A): grad wrt dt * A is g_t * h_{t-1} * decay_t.
            previous = torch.cat([entering[k].unsqueeze(1), states[:, :-1]], dim=1)  # (B, c, D, N)
            grad_log_decay = grad_states.mul_(previous).mul_(decay)  # reuses grad_states' memory
            grad_dt[:, part] = grad_drive * x_k + torch.einsum("bldn,dn->bld", grad_log_decay, A)
            grad_A += torch.einsum("bldn,bld->dn", grad_log_decay, dt_k)
            grad_state = grad_entering
        return grad_x, grad_dt, grad_A, grad_B, grad_C, grad_state, None, None


@functools.cache
def _kernel() -> Callable[..., torch.Tensor] | None:
    """``mamba_ssm``'s fused selective scan, or None when the package is not importable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a build that fails to load its CUDA extension
        return None
    return selective_scan_fn


def kernel_available() -> bool:
    """Whether the fused ``mamba_ssm`` kernel can be used (CUDA present and package importable)."""
    return torch.cuda.is_available() and _kernel() is not None


def _kernel_scan(
    kernel: Callable[..., torch.Tensor],
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    dt_bias: torch.Tensor | None,
    dt_softplus: bool,
) -> torch.Tensor:
    """Call ``selective_scan_fn``, which wants channels before time: u, delta (B, D, L); B, C (B, N, L)."""
    dtype = x.dtype
    y = kernel(
        x.transpose(1, 2).contiguous(),  # (B, D, L)
        dt.to(dtype).transpose(1, 2).contiguous(),  # (B, D, L)
        A.float().contiguous(),  # (D, N)
        B.to(dtype).transpose(1, 2).contiguous(),  # (B, N, L)
        C.to(dtype).transpose(1, 2).contiguous(),  # (B, N, L)
        None if D is None else D.float().contiguous(),
        z=None,
        delta_bias=None if dt_bias is None else dt_bias.float().contiguous(),
        delta_softplus=dt_softplus,
    )
    return y.transpose(1, 2)  # (B, L, D)


def selective_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    method: str = "auto",
    use_kernel: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan over ``x`` (B, L, D); returns y (B, L, D) in ``x``'s dtype.

    ``dt`` (B, L, D) are step sizes, turned into ``softplus(dt + dt_bias)`` when ``dt_softplus``
    (else ``dt + dt_bias``); they must end up >= 0. ``A`` (D, N) must be negative. ``B``, ``C``
    (B, L, N) are the input-dependent input and output maps, ``D`` (D,) the optional skip. ``B``
    and ``C`` may also be (B, L, G, N): G groups of channels, channel d reading group
    ``d // (D / G)`` (how a bidirectional block scans its two directions, stacked along channels,
    in one call). The state starts at ``initial_state`` (B, D, N) or zero; ``return_final_state``
    also returns the state after the last step (fp32). Internally everything is fp32, autocast off.

    ``chunk_size`` bounds the working memory to a few (B, chunk_size, D, N) tensors (the compiled
    kernel: one (chunk_size, D, N) buffer in backward). ``method`` solves the recurrence:
    ``native`` (the compiled C kernel of :mod:`audiossl.encoders.scan_native`, CPU; where it cannot
    be built, one log line and ``sequential``), ``parallel`` (prefix scan inside each chunk, few
    large operations: what accelerators want), ``sequential`` (a loop over each chunk's steps on
    cache-sized slices), ``auto`` = native on CPU, parallel elsewhere. With ``use_kernel`` and CUDA
    tensors, ``mamba_ssm``'s fused kernel is used when importable (it takes no initial state,
    no groups and returns no differentiable final state, so those cases stay here).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if method not in ("auto", "native", "parallel", "sequential"):
        raise ValueError(f"method must be auto, native, parallel or sequential, got {method!r}")
    batch, length, channels = x.shape
    grouped = B.dim() == 4
    groups = B.shape[2] if grouped else 1
    if (
        dt.shape != x.shape
        or B.shape[:2] != (batch, length)
        or C.shape != B.shape
        or A.shape != (channels, B.shape[-1])
        or B.dim() not in (3, 4)
        or channels % groups
    ):
        raise ValueError(
            f"selective_scan shapes: x {tuple(x.shape)}, dt {tuple(dt.shape)}, A {tuple(A.shape)}, "
            f"B {tuple(B.shape)}, C {tuple(C.shape)}; want x, dt (B, L, D), A (D, N), B, C (B, L, N) or "
            "(B, L, G, N) with G dividing D"
        )
    if use_kernel and x.is_cuda and initial_state is None and not return_final_state and not grouped:
        kernel = _kernel()
        if kernel is not None:
            return _kernel_scan(kernel, x, dt, A, B, C, D, dt_bias, dt_softplus)
    on_cpu = x.device.type == "cpu"
    native = on_cpu and method in ("auto", "native") and native_library() is not None
    parallel = method == "parallel" or (method == "auto" and not on_cpu)

    with torch.autocast(device_type=x.device.type, enabled=False):
        x32 = x.float()
        dt32 = _prepare_dt(dt, dt_bias, dt_softplus)  # (B, L, D)
        A32, B32, C32 = A.float(), B.float(), C.float()
        if initial_state is None:
            initial_state = x32.new_zeros(batch, channels, A.shape[1])  # (B, D, N)
        state = initial_state.float()
        if length == 0:
            y = x32.new_zeros(batch, 0, channels)
        elif native:
            B32, C32 = (B32, C32) if grouped else (B32.unsqueeze(2), C32.unsqueeze(2))
            y, state = NativeScan.apply(x32, dt32, A32, B32, C32, state, chunk_size)
        elif not grouped:
            y, state = _ChunkedScan.apply(x32, dt32, A32, B32, C32, state, chunk_size, parallel)
        else:  # one PyTorch scan per group of channels
            width = channels // groups
            ys, states = [], []
            for g in range(groups):
                part = slice(g * width, (g + 1) * width)
                y_g, state_g = _ChunkedScan.apply(
                    x32[..., part], dt32[..., part], A32[part], B32[:, :, g], C32[:, :, g], state[:, part],
                    chunk_size, parallel,
                )  # fmt: skip
                ys.append(y_g)
                states.append(state_g)
            y, state = torch.cat(ys, dim=-1), torch.cat(states, dim=1)
        if D is not None:
            y = y + x32 * D.float()
    y = y.to(x.dtype)
    return (y, state) if return_final_state else y
