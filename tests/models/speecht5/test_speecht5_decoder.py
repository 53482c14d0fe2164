"""The generic Transformer decoder: incremental == teacher-forced, padding invariance, length limit."""

from __future__ import annotations

import pytest
import torch

from audiossl.errors import DataError
from audiossl.nn.decoder import DecoderConfig, TextDecoder, TransformerDecoder


def tiny_config(**changes) -> DecoderConfig:
    settings = dict(dim=32, num_layers=2, num_heads=4, ffn_dim=64, memory_dim=24, dropout=0.1, max_length=40)
    settings.update(changes)
    return DecoderConfig(**settings)


def test_incremental_equals_teacher_forced() -> None:
    torch.manual_seed(0)
    decoder = TextDecoder(11, tiny_config()).eval()
    memory = torch.randn(3, 9, 24)
    memory_lengths = torch.tensor([9, 5, 7])
    tokens = torch.randint(0, 11, (3, 8))
    lengths = torch.full((3,), 8)
    full = torch.log_softmax(decoder(tokens, lengths, memory, memory_lengths), dim=-1)  # (B, U, V)
    cache = decoder.init_cache(memory, memory_lengths)
    steps = []
    for u in range(tokens.shape[1]):
        log_probs, cache = decoder.step(tokens[:, u], cache)
        steps.append(log_probs)
    incremental = torch.stack(steps, dim=1)
    torch.testing.assert_close(incremental, full, atol=1e-5, rtol=1e-5)
    assert cache.length == tokens.shape[1]


def test_chunked_steps_equal_full_forward() -> None:
    """Several new positions per step (causal among themselves) give the same states."""
    torch.manual_seed(1)
    decoder = TransformerDecoder(tiny_config()).eval()
    memory, memory_lengths = torch.randn(2, 6, 24), torch.tensor([6, 4])
    inputs = torch.randn(2, 7, 32)
    full = decoder(inputs, torch.tensor([7, 7]), memory, memory_lengths)
    cache = decoder.init_cache(memory, memory_lengths)
    first, cache = decoder.step(inputs[:, :3], cache)
    second, cache = decoder.step(inputs[:, 3:], cache)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full, atol=1e-5, rtol=1e-5)


def test_padded_batch_equals_each_item_alone() -> None:
    torch.manual_seed(2)
    decoder = TextDecoder(13, tiny_config()).eval()
    lengths, memory_lengths = [5, 8, 3], [7, 4, 10]
    tokens = torch.randint(0, 13, (3, 8))
    memory = torch.randn(3, 10, 24)
    for b, (u, s) in enumerate(zip(lengths, memory_lengths, strict=True)):  # garbage in the padding
        tokens[b, u:] = 12
        memory[b, s:] = 100.0
    batch = decoder(tokens, torch.tensor(lengths), memory, torch.tensor(memory_lengths))
    for b, (u, s) in enumerate(zip(lengths, memory_lengths, strict=True)):
        alone = decoder(tokens[b : b + 1, :u], torch.tensor([u]), memory[b : b + 1, :s], torch.tensor([s]))
        torch.testing.assert_close(batch[b : b + 1, :u], alone, atol=1e-5, rtol=1e-5)


def test_padding_outputs_are_zero_and_tied_projection() -> None:
    decoder = TextDecoder(9, tiny_config(memory_dim=None)).eval()
    hidden = decoder.decoder(torch.randn(2, 5, 32), torch.tensor([5, 2]), torch.randn(2, 4, 32), torch.tensor([4, 4]))
    assert torch.all(hidden[1, 2:] == 0)
    # The output projection is the embedding matrix itself (one parameter, shared gradients).
    names = [name for name, _ in decoder.named_parameters()]
    assert "embedding.weight" in names and not any("output_projection" in name for name in names)
    logits = decoder.logits(hidden[0])
    torch.testing.assert_close(logits, hidden[0] @ decoder.embedding.weight.T + decoder.output_bias)


def test_too_long_target_names_the_limit() -> None:
    decoder = TextDecoder(5, tiny_config(max_length=4)).eval()
    with pytest.raises(DataError, match="maximum 4"):
        decoder(torch.zeros(1, 5, dtype=torch.long), torch.tensor([5]), torch.randn(1, 3, 24), torch.tensor([3]))


def test_empty_memory_is_refused() -> None:
    decoder = TextDecoder(5, tiny_config()).eval()
    with pytest.raises(DataError, match="empty encoder output"):
        decoder.init_cache(torch.randn(2, 3, 24), torch.tensor([3, 0]))
