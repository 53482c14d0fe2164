"""The chunked selective scan against a plain sequential loop, its memory, and flip_padded."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from audiossl.encoders import scan
from audiossl.encoders.scan import flip_padded, kernel_available, selective_scan, selective_scan_reference

METHODS = ["parallel", "sequential", "native"]  # native: the compiled kernel (PyTorch fallback where it cannot build)


def make_inputs(batch=2, length=37, channels=6, state=5, seed=0, requires_grad=True, device="cpu"):
    """Scan inputs in realistic ranges: raw dt around softplus^-1 of 0.001..0.5, A = -(0.5..16)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    tensors = {
        "x": randn(batch, length, channels),
        "dt": randn(batch, length, channels) - 1.0,
        "A": -torch.exp(torch.rand(channels, state, generator=generator) * 3.5 - 0.7),
        "B": randn(batch, length, state),
        "C": randn(batch, length, state),
        "D": randn(channels),
        "dt_bias": 0.3 * randn(channels),
        "initial_state": randn(batch, channels, state),
    }
    return {k: v.to(device).requires_grad_(requires_grad) for k, v in tensors.items()}


def run(fn, inputs, **kwargs):
    return fn(
        inputs["x"],
        inputs["dt"],
        inputs["A"],
        inputs["B"],
        inputs["C"],
        inputs["D"],
        dt_bias=inputs["dt_bias"],
        dt_softplus=True,
        initial_state=inputs["initial_state"],
        return_final_state=True,
        **kwargs,
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 16, 37, 64])  # divides L=36 or not, one chunk, bigger than L
def test_chunked_scan_matches_sequential_reference_forward_and_backward(method, chunk_size):
    inputs = make_inputs(length=36 if chunk_size == 4 else 37)
    y, final = run(selective_scan, inputs, chunk_size=chunk_size, method=method)
    y_ref, final_ref = run(selective_scan_reference, inputs)
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(final, final_ref, atol=1e-4, rtol=0)

    generator = torch.Generator().manual_seed(1)
    grad_y, grad_final = torch.randn(y.shape, generator=generator), torch.randn(final.shape, generator=generator)
    names = list(inputs)
    grads = torch.autograd.grad((y * grad_y).sum() + (final * grad_final).sum(), [inputs[n] for n in names])
    grads_ref = torch.autograd.grad((y_ref * grad_y).sum() + (final_ref * grad_final).sum(), [inputs[n] for n in names])
    for name, grad, grad_ref in zip(names, grads, grads_ref, strict=True):
        assert grad_ref.abs().max() > 1e-3, name  # every input really matters
        torch.testing.assert_close(grad, grad_ref, atol=1e-4, rtol=0, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("method", METHODS)
def test_without_optional_arguments_and_zero_initial_state(method):
    inputs = make_inputs(requires_grad=False)
    x, dt, A, B, C = (inputs[k] for k in ("x", "dt", "A", "B", "C"))
    dt = F.softplus(dt)
    y = selective_scan(x, dt, A, B, C, chunk_size=8, method=method)
    torch.testing.assert_close(y, selective_scan_reference(x, dt, A, B, C), atol=1e-5, rtol=0)
    zero = torch.zeros(x.shape[0], x.shape[2], A.shape[1])
    torch.testing.assert_close(y, selective_scan(x, dt, A, B, C, initial_state=zero, method=method), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_strong_decays_stay_finite(method):
    """dt * |A| up to several hundred per step: decays underflow to 0, nothing overflows."""
    inputs = make_inputs(length=50, requires_grad=True)
    with torch.no_grad():
        inputs["dt_bias"].fill_(40.0)
        inputs["A"].mul_(10.0)
    y, final = run(selective_scan, inputs, chunk_size=32, method=method)
    y_ref, final_ref = run(selective_scan_reference, inputs)
    assert torch.isfinite(y).all() and torch.isfinite(final).all()
    torch.testing.assert_close(y, y_ref, atol=1e-3, rtol=1e-5)  # values reach ~1e3: relative tolerance
    grads = torch.autograd.grad(y.sum(), [inputs["x"], inputs["dt"], inputs["A"]])
    assert all(torch.isfinite(g).all() for g in grads)


def test_low_precision_inputs_and_autocast_compute_in_fp32():
    inputs = make_inputs(requires_grad=False)
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D")]
    y32 = selective_scan(*args, dt_softplus=True)
    y16 = selective_scan(*[a.bfloat16() for a in args], dt_softplus=True)
    assert y16.dtype == torch.bfloat16
    assert (y16.float() - y32).abs().max() < 0.1 * y32.abs().max()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_autocast = selective_scan(*args, dt_softplus=True)
    assert y_autocast.dtype == torch.float32
    torch.testing.assert_close(y_autocast, y32, atol=1e-6, rtol=0)


def test_empty_sequence_and_bad_arguments():
    inputs = make_inputs(length=0, requires_grad=False)
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C")]
    assert selective_scan(*args).shape == (2, 0, 6)
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(*args, chunk_size=0)
    with pytest.raises(ValueError, match="method"):
        selective_scan(*args, method="fast")
    with pytest.raises(ValueError, match="shapes"):
        selective_scan(args[0], args[1], args[2].T, args[3], args[4])


def saved_tensor_sizes(fn) -> list[int]:
    """Numel of every distinct tensor that autograd saves for backward while ``fn()`` runs."""
    sizes: dict[tuple[int, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        sizes[(tensor.untyped_storage().data_ptr(), tensor.numel())] = tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return list(sizes.values())


@pytest.mark.parametrize("method", METHODS)
def test_memory_is_linear_no_full_state_tensor_is_kept_for_backward(method):
    batch, length, channels, state, chunk = 1, 4096, 32, 16, 64
    full = batch * length * channels * state  # what a naive scan keeps: every state h_t
    inputs = make_inputs(batch, length, channels, state)
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D")]
    outputs = []
    sizes = saved_tensor_sizes(
        lambda: outputs.append(selective_scan(*args, dt_softplus=True, chunk_size=chunk, method=method))
    )
    assert max(sizes) < full / 8
    # Inputs (x, dt, B, C), the (B, D, N) state entering each chunk and a few (B, L, D) tensors.
    assert sum(sizes) < full / 2
    outputs[0].square().mean().backward()
    assert all(torch.isfinite(inputs[k].grad).all() for k in ("x", "dt", "A", "B", "C", "D"))


def test_memory_probe_sees_a_naive_scan():
    """The probe above is not blind: the step-by-step reference keeps far more than one full state tensor."""
    batch, length, channels, state = 1, 512, 32, 16
    inputs = make_inputs(batch, length, channels, state)
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D")]
    sizes = saved_tensor_sizes(lambda: selective_scan_reference(*args, dt_softplus=True))
    assert sum(sizes) > batch * length * channels * state


def test_flip_padded_matches_a_per_item_loop_and_is_its_own_inverse():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, 3, 2, generator=generator)
    lengths = torch.tensor([9, 4, 0, 1])
    expected = x.clone()
    for b, n in enumerate(lengths.tolist()):
        expected[b, :n] = x[b, :n].flip(0)
    flipped = flip_padded(x, lengths)
    assert torch.equal(flipped, expected)
    assert torch.equal(flip_padded(flipped, lengths), x)
    assert torch.equal(flip_padded(x[..., 0, 0], lengths), expected[..., 0, 0])  # (B, T) works too


def layout_reference_kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Stand-in for ``mamba_ssm``'s ``selective_scan_fn`` in its own layout: u, delta (B, D, L); B, C (B, N, L)."""
    assert z is None
    if delta_bias is not None:
        delta = delta + delta_bias.unsqueeze(-1)
    if delta_softplus:
        delta = F.softplus(delta)
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])  # (B, D, N)
    ys = []
    for t in range(u.shape[2]):
        state = (
            torch.exp(delta[:, :, t, None] * A) * state + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        )
        ys.append((state * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    return y if D is None else y + u * D[:, None]


def test_kernel_call_passes_mamba_ssm_layout():
    """The arguments given to the fused kernel follow its (B, D, L) / (B, N, L) convention."""
    inputs = make_inputs(requires_grad=False)
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D")]
    y = scan._kernel_scan(layout_reference_kernel, *args, inputs["dt_bias"], True)
    expected = selective_scan(*args, dt_bias=inputs["dt_bias"], dt_softplus=True)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


@pytest.mark.skipif(not kernel_available(), reason="needs CUDA and the mamba_ssm package (fused selective-scan kernel)")
def test_mamba_ssm_kernel_matches_chunked_scan_on_cuda():
    inputs = make_inputs(batch=2, length=300, channels=64, state=16, device="cuda")
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D")]
    kwargs = {"dt_bias": inputs["dt_bias"], "dt_softplus": True}
    y_kernel = selective_scan(*args, **kwargs, use_kernel=True)
    y_ours = selective_scan(*args, **kwargs, use_kernel=False)
    torch.testing.assert_close(y_kernel, y_ours, atol=1e-4, rtol=1e-4)
    grads_kernel = torch.autograd.grad(y_kernel.square().sum(), args)
    grads_ours = torch.autograd.grad(y_ours.square().sum(), args)
    for grad_kernel, grad_ours in zip(grads_kernel, grads_ours, strict=True):
        torch.testing.assert_close(grad_kernel, grad_ours, atol=1e-3, rtol=1e-3)


# ----------------------------------------------------------------------------- the compiled kernel

from audiossl.encoders import scan_native  # noqa: E402

needs_native = pytest.mark.skipif(
    scan_native.native_library() is None, reason="no C compiler here: the compiled scan cannot be built"
)


@needs_native
@pytest.mark.parametrize("chunk_size", [1, 7, 32, 64])
def test_compiled_scan_equals_the_pytorch_scan(chunk_size):
    """Outputs, final state and every gradient of the compiled kernel equal the eager chunked scan."""
    inputs = make_inputs(length=45)
    y, final = run(selective_scan, inputs, chunk_size=chunk_size, method="native")
    y_eager, final_eager = run(selective_scan, inputs, chunk_size=chunk_size, method="sequential")
    torch.testing.assert_close(y, y_eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(final, final_eager, atol=1e-5, rtol=0)
    generator = torch.Generator().manual_seed(3)
    grad_y, grad_final = torch.randn(y.shape, generator=generator), torch.randn(final.shape, generator=generator)
    names = list(inputs)
    grads = torch.autograd.grad((y * grad_y).sum() + (final * grad_final).sum(), [inputs[n] for n in names])
    eager = torch.autograd.grad((y_eager * grad_y).sum() + (final_eager * grad_final).sum(), [inputs[n] for n in names])
    for name, grad, grad_eager in zip(names, grads, eager, strict=True):
        torch.testing.assert_close(grad, grad_eager, atol=1e-4, rtol=1e-5, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("method", METHODS)
def test_grouped_B_and_C_equal_one_scan_per_group(method):
    """B, C (B, L, G, N): channel group g reads B[:, :, g] (two directions stacked along channels)."""
    first, second = make_inputs(channels=6, seed=0), make_inputs(channels=6, seed=1)
    stacked = {
        "x": torch.cat([first["x"], second["x"]], -1),
        "dt": torch.cat([first["dt"], second["dt"]], -1),
        "A": torch.cat([first["A"], second["A"]], 0),
        "B": torch.stack([first["B"], second["B"]], 2),
        "C": torch.stack([first["C"], second["C"]], 2),
        "D": torch.cat([first["D"], second["D"]]),
        "dt_bias": torch.cat([first["dt_bias"], second["dt_bias"]]),
        "initial_state": torch.cat([first["initial_state"], second["initial_state"]], 1),
    }
    y, final = run(selective_scan, stacked, chunk_size=8, method=method)
    for part, inputs in ((slice(0, 6), first), (slice(6, 12), second)):
        y_ref, final_ref = run(selective_scan_reference, inputs)
        torch.testing.assert_close(y[..., part], y_ref, atol=1e-4, rtol=0)
        torch.testing.assert_close(final[:, part], final_ref, atol=1e-4, rtol=0)


def test_without_a_compiler_the_pytorch_scan_runs_after_one_log_line(monkeypatch, tmp_path, caplog):
    """Where ``cc`` is missing, native_library() is None with one warning, and the scan still answers."""
    monkeypatch.setenv("CC", "no-such-compiler-audiossl")
    monkeypatch.setenv("AUDIOSSL_CACHE", str(tmp_path))
    scan_native.native_library.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="audiossl.encoders.scan_native"):
            assert scan_native.native_library() is None
            assert scan_native.native_library() is None  # cached: logged once
            inputs = make_inputs(requires_grad=False)
            y, _ = run(selective_scan, inputs, method="native")
        records = [r for r in caplog.records if r.name == "audiossl.encoders.scan_native"]
        assert len(records) == 1 and "\n" not in records[0].getMessage()
        assert "no-such-compiler-audiossl" in records[0].getMessage()
        torch.testing.assert_close(y, run(selective_scan_reference, inputs)[0], atol=1e-4, rtol=0)
    finally:
        monkeypatch.undo()
        scan_native.native_library.cache_clear()


def test_a_compile_error_is_reported_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(scan_native, "SOURCE", "this is not C;")
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: nothing to compile")
    with pytest.raises(RuntimeError, match="failed"):
        scan_native.build(cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.so"))  # nothing half-written left in the cache
