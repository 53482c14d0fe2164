"""RunningNorm: running statistics (not the batch's) standardise training batches; PooledNorm's state dict."""

from __future__ import annotations

import torch

from audiossl.downstream.pooling import PooledNorm, RunningNorm


def test_training_uses_running_statistics_updated_as_an_ema():
    norm = RunningNorm(3, momentum=0.1).train()
    batches = [torch.randn(5, 3) * 4 + 2, torch.randn(7, 3) - 1, torch.randn(4, 3) * 0.5]
    mean, var = None, None
    for index, batch in enumerate(batches):  # the reference: a plain loop
        batch_mean, batch_var = batch.mean(0), batch.var(0, unbiased=False)
        if index == 0:
            mean, var = batch_mean, batch_var
        else:
            mean, var = 0.9 * mean + 0.1 * batch_mean, 0.9 * var + 0.1 * batch_var
        out = norm(batch)
        torch.testing.assert_close(out, (batch - mean) / torch.sqrt(var + norm.eps))
    # an item's output does not depend on which utterances share its batch (unlike BatchNorm's batch statistics)
    frozen = RunningNorm(3)
    frozen.load_state_dict(norm.state_dict())
    frozen.momentum = 0.0
    item = torch.randn(1, 3)
    alone = frozen.train()(item)
    with_others = frozen(torch.cat([item, torch.randn(6, 3) * 10 + 5]))[:1]
    torch.testing.assert_close(alone, with_others)
    torch.testing.assert_close(frozen.eval()(item), alone)


def test_state_dict_is_pooled_norms():
    old = PooledNorm(4)
    old.train()(torch.randn(8, 4) + 3)
    new = RunningNorm(4)
    new.load_state_dict(old.state_dict())
    x = torch.randn(2, 4)
    torch.testing.assert_close(new.eval()(x), old.eval()(x))
