"""The default CTC head (BiLSTM, frame stacking, SpecAugment) learns a small synthetic task with the default schedule.

Each unit is a noisy prototype vector held for several frames at 100 frames/s (fbank's rate),
followed by a short silence; the head must learn to emit the unit sequence, repeats included
(they need a blank between them). The optimiser follows the task's defaults: AdamW at ``ASRTask.base_lr`` scaled as the
trainer scales it, a 10% linear warm-up and a cosine decay (the engine's ``lr_factor``).
"""

from __future__ import annotations

import math

import torch

from audiossl.engine.optim import lr_factor
from audiossl_asr.decoding import greedy_decode
from audiossl_asr.head import CTCHead, CTCHeadConfig, auto_stride, ctc_loss
from audiossl_asr.task import ASRTask

DIM, UNITS, BATCH, STEPS = 8, 4, 8, 200


def _batch(prototypes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Padded frames (B, S, D), lengths (B,) and unit targets (ids 1..UNITS; 0 is the blank)."""
    items, targets = [], []
    for _ in range(BATCH):
        count = int(torch.randint(2, 4, (1,), generator=generator))
        units = [int(u) + 1 for u in torch.randint(0, UNITS, (count,), generator=generator)]
        frames = []
        for unit in units:  # each unit held for 5-8 frames, then 2-3 frames of silence (so repeats stay apart)
            frames.append(prototypes[unit - 1].expand(int(torch.randint(5, 9, (1,), generator=generator)), DIM))
            frames.append(torch.zeros(int(torch.randint(2, 4, (1,), generator=generator)), DIM))
        sequence = torch.cat(frames)
        items.append(sequence + 0.3 * torch.randn(sequence.shape, generator=generator))
        targets.append(units)
    lengths = torch.tensor([len(x) for x in items])
    padded = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)  # (B, S, D)
    return padded, lengths, targets


def test_default_head_learns_and_decodes():
    torch.set_num_threads(1)  # small recurrent steps: more threads only add contention on a shared machine
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randn(UNITS, DIM, generator=generator)
    head = CTCHead(DIM, UNITS + 1, CTCHeadConfig(stride=auto_stride(100.0)))
    assert head.config.kind == "bilstm" and head.config.spec_augment and head.config.stride == 2
    task = ASRTask()
    peak = task.base_lr * math.sqrt(BATCH / 32)  # the trainer's batch-size rule
    optimizer = torch.optim.AdamW(head.parameters(), lr=peak, weight_decay=0.0)
    warmup = int(task.warmup_ratio * STEPS)
    losses = []
    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = peak * lr_factor(step, warmup_steps=warmup, schedule=task.schedule, max_steps=STEPS)
        frames, lengths, targets = _batch(prototypes, generator)
        log_probs, out_lengths = head(frames, lengths)
        loss = ctc_loss(log_probs, out_lengths, targets, [str(i) for i in range(BATCH)])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 10.0)
        optimizer.step()
        losses.append(float(loss))
    assert sum(losses[-10:]) / 10 < 0.2 * sum(losses[:10]) / 10
    head.eval()
    frames, lengths, targets = _batch(prototypes, generator)
    with torch.no_grad():
        log_probs, out_lengths = head(frames, lengths)
    decoded = greedy_decode(log_probs, out_lengths, blank=0)
    correct = sum(hyp == ref for hyp, ref in zip(decoded, targets, strict=True))
    assert correct >= 0.9 * BATCH, (decoded, targets)
