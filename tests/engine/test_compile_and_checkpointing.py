"""Per-block activation checkpointing and ``torch.compile`` (run.activation_checkpointing, run.compile).

Every registered encoder calls its blocks through ``Encoder.run_block``: with checkpointing each
block runs twice per training pass (forward, then recomputed in backward; counted by forward-pre
hooks, which also shows the blocks are called as modules, as FSDP and compile need) and the
gradients equal the plain pass's. Training with either option reaches the plain run's weights
(the reference of scale_helpers at step 2): checkpointing recomputes the same operations;
compile is tested with the ``aot_eager`` backend (dynamo capture + AOTAutograd, no generated
kernels): inductor's C++ compilation of even this tiny model takes over a minute on this shared
2-core machine, far past the test budget (run by hand: docs/distributed.md).
"""

from __future__ import annotations

import pytest
import torch
from scale_helpers import max_difference, model_at, mspm_config, reference_run

import audiossl.encoders  # noqa: F401  (registers the built-in encoders)
from audiossl.encoders import ENCODERS, create_encoder
from audiossl.testing.configs import dummy_encoder_inputs, tiny_encoder_config
from audiossl.train import pretrain, resolve_config


def _pass(encoder: torch.nn.Module, features: torch.Tensor, lengths: torch.Tensor) -> tuple[int, dict]:
    """Block calls and parameter gradients of one forward + backward of ``encoder`` (seeded)."""
    calls = []
    hooks = [block.register_forward_pre_hook(lambda *_: calls.append(1)) for block in encoder.block_modules()]
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    output = encoder(features, lengths)
    (output.last.pow(2).mean() + sum(layer.mean() for layer in output.layers)).backward()
    for hook in hooks:
        hook.remove()
    grads = {name: p.grad.clone() for name, p in encoder.named_parameters() if p.grad is not None}
    return len(calls), grads


@pytest.mark.parametrize("family", sorted(ENCODERS.names()))
def test_every_encoder_checkpoints_each_block_with_the_same_gradients(family):
    config = tiny_encoder_config(family, "frame")
    torch.manual_seed(0)
    encoder = create_encoder(family, config=config).train()
    blocks = encoder.block_modules()
    assert len(blocks) == encoder.num_layers, "block_modules() must list every block"
    features, lengths = dummy_encoder_inputs(encoder.input_config, [40, 28])

    plain_calls, plain = _pass(encoder, features, lengths)
    encoder.configure_blocks(activation_checkpointing=True)
    checkpointed_calls, checkpointed = _pass(encoder, features, lengths)

    assert plain_calls == len(blocks)
    assert checkpointed_calls == 2 * len(blocks)  # each block recomputed in backward
    assert plain.keys() == checkpointed.keys() and plain
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, msg=name)
    with torch.no_grad():  # no gradients: nothing to recompute
        calls = []
        hook = blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
        encoder(features, lengths)
        hook.remove()
    assert len(calls) == 1


@pytest.mark.parametrize(
    "run_options",
    [{"activation_checkpointing": True}, {"compile": True, "compile_backend": "aot_eager"}],
    ids=["activation_checkpointing", "compile"],
)
def test_training_with_the_option_matches_the_plain_run(engine_corpus, tmp_path, run_options):
    reference = model_at(reference_run(tmp_path, engine_corpus), 2)
    torch._dynamo.reset()
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    config = mspm_config(tmp_path / "option.yaml", optim={"accumulation_steps": 2}, run={"max_steps": 2, **run_options})
    pretrain(resolve_config(config), [engine_corpus], tmp_path / "run")
    compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before
    if run_options.get("compile"):
        assert compiled > 0, "no block was compiled"
    else:
        assert compiled == 0
    # Same operations (checkpointing) or the same kernels traced (aot_eager): equal to rounding.
    assert max_difference(model_at(tmp_path / "run", 2), reference) < 1e-6
