"""Bidirectional Mamba encoder, as in SSAMBA (Shams et al. 2024) on Vision Mamba "v2" blocks (Zhu et al. 2024).

A :class:`BiMambaBlock` is a pre-norm residual block around a bidirectional Mamba mixer. The mixer
projects every token once into a content stream ``u`` and a gate ``z`` (shared input projection);
the content is read twice, left to right and right to left, by two selective state-space paths that
have their own depthwise causal convolution, their own input-dependent projections (dt, B, C), their
own decay ``A`` and skip ``D``; the two readings are added (or averaged, Vim's ``if_devide_out``),
gated by ``silu(z)`` and brought back to the model width by one shared output projection.

Padding never reaches a valid token. The left-to-right path is causal and padding comes last. The
right-to-left path reverses every item within its own length (:func:`~audiossl.encoders.scan.flip_padded`),
so its padding also comes last; ``u`` is zeroed at padding before both causal convolutions. Every
block's output is zeroed at padding.

Optional cls token (one learned vector): ``start`` puts it before the tokens (SSAMBA pretraining);
``middle`` puts it in the middle of every item (Vim's ``use_middle_cls_token``; each item's own
middle, not the padded batch's) and moves it to the front of the outputs, so that, as for every
encoder, the cls token is ``EncoderOutput.prefix()`` and input token ``s`` sits at position ``1 + s``.

Where this differs from the SSAMBA / Vim code: positions come from the shared
:class:`~audiossl.encoders.embed.TokenEmbedding` (length-agnostic) instead of a learned table of
fixed length; blocks are stacked plainly (Vim's optional ``if_bidirectional`` arrangement of
layers, switched on in SSAMBA's pretraining script, is not reproduced; every block here is already
bidirectional); no RoPE, no fused add-norm, the residual stays in the activation dtype.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.encoders.base import Encoder, EncoderOutput, register_encoder
from audiossl.encoders.embed import EmbeddedTokens, InputConfig, TokenEmbedding
from audiossl.encoders.scan import flip_padded, selective_scan
from audiossl.nn.masking import lengths_to_padding_mask


@dataclass(kw_only=True)
class MambaConfig:
    """A bidirectional Mamba encoder. Presets: :func:`mamba_tiny`, :func:`mamba_small`, :func:`mamba_base`."""

    input: InputConfig = field(default_factory=InputConfig)
    """Tokens (patches, frames or waveform features) and their positions."""

    dim: int = 768
    """Hidden size D."""

    num_layers: int = 24
    """Number of bidirectional Mamba blocks (SSAMBA and Vim use 24 at every size)."""

    d_state: int = 16
    """State size N of each channel's state-space model."""

    d_conv: int = 4
    """Kernel width of the depthwise causal convolution before each scan."""

    expand: int = 2
    """Inner width of the mixer as a multiple of ``dim``."""

    dt_rank: int | Literal["auto"] = "auto"
    """Rank of the step-size projection; ``auto`` = ceil(dim / 16) as in Mamba."""

    dt_min: float = 0.001
    """Smallest initial step size (initial steps are log-uniform in [dt_min, dt_max])."""

    dt_max: float = 0.1
    """Largest initial step size."""

    combine: Literal["mean", "sum"] = "mean"
    """How the two directions are merged: ``mean`` (Vim/SSAMBA ``if_devide_out``) or ``sum``."""

    cls_token: Literal["none", "start", "middle"] = "start"
    """Learned cls token: none, before the tokens (SSAMBA), or in the middle of each item (Vim).
    Either way it comes first in the outputs (``num_prefix_tokens`` = 1)."""

    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """Norm of the pre-norm blocks and the final norm (SSAMBA: layer norm; Vim: RMS norm)."""

    norm_eps: float = 1e-5
    """Epsilon of the norms."""

    drop_path: float = 0.0
    """Stochastic depth: probability of skipping a block's branch per item while training
    (SSAMBA pretrains with 0.1)."""

    chunk_size: int = 32
    """Scan chunk length: working memory is a few (B, chunk_size, dim * expand, d_state) tensors."""

    scan_method: Literal["auto", "native", "parallel", "sequential"] = "auto"
    """How the scan solves a chunk (see :func:`~audiossl.encoders.scan.selective_scan`)."""

    recompute: bool = True
    """Training memory: keep only each block's input for backward and recompute the block's
    mixer there (activation checkpointing), instead of keeping every intermediate of 24 blocks x 2
    directions. Costs one more forward of the mixers; results are the same."""


def mamba_base() -> MambaConfig:
    """SSAMBA-Base size: 768 wide, 24 blocks (about 96 M parameters with 16 x 16 patches)."""
    return MambaConfig(dim=768, num_layers=24)


def mamba_small() -> MambaConfig:
    """SSAMBA-Small size: 384 wide, 24 blocks (about 25 M parameters)."""
    config = mamba_base()
    config.dim = 384
    return config


def mamba_tiny() -> MambaConfig:
    """SSAMBA-Tiny size: 192 wide, 24 blocks (about 6.8 M parameters)."""
    config = mamba_base()
    config.dim = 192
    return config


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (Zhang & Sennrich 2019), computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def _norm(config: MambaConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.dim, eps=config.norm_eps)
    return nn.LayerNorm(config.dim, eps=config.norm_eps)


class DirectionalSSM(nn.Module):
    """One reading direction of the mixer: causal depthwise conv -> SiLU -> selective scan.

    Owns what Vim v2 duplicates per direction: ``conv1d``, ``x_proj`` (to dt, B, C), ``dt_proj``,
    ``A_log`` and ``D``. Initialised as Mamba: S4D-real ``A = -(1..N)``, ``D = 1``, step-size
    bias the inverse softplus of log-uniform steps in [dt_min, dt_max].
    """

    def __init__(self, inner: int, config: MambaConfig, dt_rank: int):
        super().__init__()
        self.d_state = config.d_state
        self.dt_rank = dt_rank
        self.chunk_size = config.chunk_size
        self.scan_method = config.scan_method
        self.conv1d = nn.Conv1d(inner, inner, config.d_conv, groups=inner, padding=config.d_conv - 1)
        self.x_proj = nn.Linear(inner, dt_rank + 2 * config.d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, config.d_state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.A_log._no_weight_decay = True  # Mamba keeps A and D out of weight decay; optimisers may read this
        self.D._no_weight_decay = True
        std = dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_dt = torch.rand(inner) * (math.log(config.dt_max) - math.log(config.dt_min)) + math.log(config.dt_min)
        dt = torch.exp(log_dt).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) == dt

    def _causal_conv(self, u: torch.Tensor) -> torch.Tensor:
        """``conv1d`` as d_conv shifted multiply-adds in the (B, S, E) layout: output t sees t - d_conv + 1 .. t.

        The same sums as ``self.conv1d`` on the transposed input, without the two transposes and
        their copies, and with a cheaper backward than the depthwise convolution's on CPU.
        """
        width = self.conv1d.kernel_size[0]
        length = u.shape[1]
        weight = self.conv1d.weight[:, 0].to(u.dtype)  # (E, K)
        padded = F.pad(u, (0, 0, width - 1, 0))  # (B, S + K - 1, E)
        out = torch.addcmul(self.conv1d.bias.to(u.dtype), padded[:, width - 1 :], weight[:, width - 1])
        for k in range(width - 1):
            out = torch.addcmul(out, padded[:, k : k + length], weight[:, k])
        return out

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u`` (B, S, E), zero at padding, padding last -> (B, S, E)."""
        u = F.silu(self._causal_conv(u))  # (B, S, E)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)  # (B, S, R), (B, S, N) x2
        dt = F.linear(dt, self.dt_proj.weight)  # (B, S, E); bias added inside the scan, before softplus
        A = -torch.exp(self.A_log.float())  # (E, N)
        return selective_scan(
            u,
            dt,
            A,
            B,
            C,
            self.D,
            dt_bias=self.dt_proj.bias,
            dt_softplus=True,
            chunk_size=self.chunk_size,
            method=self.scan_method,
        )


class BiMambaMixer(nn.Module):
    """Vim v2 bidirectional mixer: shared in/out projections, one :class:`DirectionalSSM` per direction."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        inner = config.expand * config.dim
        dt_rank = math.ceil(config.dim / 16) if config.dt_rank == "auto" else config.dt_rank
        self.combine = config.combine
        self.in_proj = nn.Linear(config.dim, 2 * inner, bias=False)
        self.forward_ssm = DirectionalSSM(inner, config, dt_rank)
        self.backward_ssm = DirectionalSSM(inner, config, dt_rank)
        self.out_proj = nn.Linear(inner, config.dim, bias=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, S, D) with ``lengths`` (B,) and ``padding_mask`` (B, S) -> (B, S, D)."""
        # Under autocast the projections run in bf16; the elementwise work between them (conv, SiLU,
        # softplus, the scan, the gate) stays fp32: bf16 elementwise ops are slower on CPUs and the
        # scan wants fp32 anyway.
        u, z = self.in_proj(x).float().chunk(2, dim=-1)  # (B, S, E) each
        u = u.masked_fill(padding_mask.unsqueeze(-1), 0.0)  # the causal convs must read zeros before each item
        forward = self.forward_ssm(u)  # (B, S, E)
        backward = flip_padded(self.backward_ssm(flip_padded(u, lengths)), lengths)  # (B, S, E)
        y = forward + backward
        if self.combine == "mean":
            y = y * 0.5
        return self.out_proj(y * F.silu(z))  # (B, S, D)


class _Recompute(torch.autograd.Function):
    """``function(x)`` whose backward recomputes it: only ``x`` is saved (activation checkpointing).

    Like ``torch.utils.checkpoint``, but what backward needs is saved with ``save_for_backward``,
    so ``saved_tensors_hooks`` see the true cost, and the parameters are explicit inputs, so
    ``torch.autograd.grad`` reaches them. ``function`` must be deterministic (no dropout inside);
    the autocast state of the forward is restored for the recomputation.
    """

    @staticmethod
    def forward(ctx, function, x, *params):
        ctx.function = function
        ctx.autocast = [
            (device, torch.get_autocast_dtype(device))
            for device in ("cpu", x.device.type)
            if torch.is_autocast_enabled(device)
        ]
        ctx.save_for_backward(x, *params)
        return function(x)  # autograd is off inside Function.forward

    @staticmethod
    def backward(ctx, grad):
        x, *params = ctx.saved_tensors
        inputs = [x.detach().requires_grad_(ctx.needs_input_grad[1])]
        wanted = [p for p, needed in zip(params, ctx.needs_input_grad[2:], strict=True) if needed]
        with torch.enable_grad(), contextlib.ExitStack() as stack:
            for device, dtype in ctx.autocast:
                stack.enter_context(torch.autocast(device, dtype=dtype))
            out = ctx.function(inputs[0])
        targets = ([inputs[0]] if inputs[0].requires_grad else []) + wanted
        grads = iter(torch.autograd.grad(out, targets, grad, allow_unused=True))
        grad_x = next(grads) if inputs[0].requires_grad else None
        grad_params = [next(grads) if needed else None for needed in ctx.needs_input_grad[2:]]
        return None, grad_x, *grad_params


class BiMambaBlock(nn.Module):
    """Pre-norm residual block: ``x + drop_path(mixer(norm(x)))``, zero at padding."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.norm = _norm(config)
        self.mixer = BiMambaMixer(config)
        self.drop_path = config.drop_path
        self.recompute = config.recompute

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        def branch_of(tokens: torch.Tensor) -> torch.Tensor:
            return self.mixer(self.norm(tokens), lengths, padding_mask)  # (B, S, D)

        params = [p for p in self.parameters() if p.requires_grad]
        if self.recompute and torch.is_grad_enabled() and (x.requires_grad or params):
            branch = _Recompute.apply(branch_of, x, *params)
        else:
            branch = branch_of(x)
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            kept = torch.rand(x.shape[0], 1, 1, device=x.device) < keep  # (B, 1, 1), per item
            branch = branch * kept.to(branch.dtype) / keep
        return (x + branch).masked_fill(padding_mask.unsqueeze(-1), 0.0)


def _insert_at(tokens: torch.Tensor, position: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Insert ``value`` (D,) into each item of ``tokens`` (B, S, D) at ``position[b]`` -> (B, S + 1, D)."""
    batch, length, dim = tokens.shape
    slots = torch.arange(length + 1, device=tokens.device).unsqueeze(0)  # (1, S + 1)
    position = position.unsqueeze(1)  # (B, 1)
    source = torch.where(slots < position, slots, slots - 1).clamp(min=0)  # (B, S + 1)
    gathered = tokens.gather(1, source.unsqueeze(-1).expand(-1, -1, dim))  # (B, S + 1, D)
    return torch.where((slots == position).unsqueeze(-1), value.to(tokens.dtype), gathered)


def _move_to_front(hidden: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Move the token at ``position[b]`` of each item of ``hidden`` (B, S, D) to the front (inverse of
    :func:`_insert_at` followed by a prefix)."""
    length = hidden.shape[1]
    slots = torch.arange(length, device=hidden.device).unsqueeze(0)  # (1, S)
    position = position.unsqueeze(1)  # (B, 1)
    source = torch.where(slots == 0, position, torch.where(slots <= position, slots - 1, slots))  # (B, S)
    return hidden.gather(1, source.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


@register_encoder(
    "mamba",
    MambaConfig,
    presets={"tiny": mamba_tiny, "small": mamba_small, "base": mamba_base},
    description="bidirectional Mamba (SSAMBA) over patches, frames or waveform features",
)
class MambaEncoder(Encoder):
    """Bidirectional Mamba (SSAMBA); ``forward`` returns every block's output."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        if config.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {config.chunk_size}")
        self.config = config
        self.dim = config.dim
        self.num_layers = config.num_layers
        self.num_prefix_tokens = 0 if config.cls_token == "none" else 1
        self.embedding = TokenEmbedding(config.input, config.dim)
        self.cls_token = nn.Parameter(torch.zeros(self.num_prefix_tokens, config.dim))
        self.blocks = nn.ModuleList(BiMambaBlock(config) for _ in range(config.num_layers))
        self.norm = _norm(config)
        self._init_weights()

    def _init_weights(self) -> None:
        # Mamba's rule: projections keep PyTorch's default init, and each block's output projection is
        # divided by sqrt(depth) (GPT-2's pre-norm residual rescaling); the cls token as ViT/Vim.
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        with torch.no_grad():
            for block in self.blocks:
                block.mixer.out_proj.weight /= math.sqrt(self.num_layers)

    def contextualize(self, embedded: EmbeddedTokens) -> EncoderOutput:
        """Cls token inserted, bidirectional Mamba blocks, final norm; the cls token comes first in the output."""
        x = embedded.tokens  # (B, S, D), zero at padding
        token_lengths = embedded.lengths
        cls_position = None
        if self.config.cls_token == "start":
            cls_position = torch.zeros_like(token_lengths)
        elif self.config.cls_token == "middle":
            cls_position = torch.div(token_lengths, 2, rounding_mode="floor")
        if cls_position is not None:
            x = _insert_at(x, cls_position, self.cls_token[0])  # (B, S + 1, D)
        seq_lengths = token_lengths + self.num_prefix_tokens
        padding_mask = lengths_to_padding_mask(seq_lengths, x.shape[1])  # (B, S')
        layers = []
        for block in self.blocks:
            x = self.run_block(block, x, seq_lengths, padding_mask)
            layers.append(x)
        last = self.norm(x)
        if self.config.cls_token == "middle":
            last = _move_to_front(last, cls_position)
            layers = [_move_to_front(hidden, cls_position) for hidden in layers]
        return self.output(last, layers, seq_lengths, padding_mask, embedded)


def create_mamba(config: MambaConfig) -> MambaEncoder:
    """Build a bidirectional Mamba encoder from its config."""
    return MambaEncoder(config)
