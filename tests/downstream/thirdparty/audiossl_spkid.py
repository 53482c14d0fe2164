"""A third-party plugin written against audiossl's public API only: closed-set speaker identification.

The test suite installs it through a ``*.dist-info`` folder on ``sys.path`` (what ``pip install``
writes), proving that a plugin needs no change to audiossl. docs/plugins.md walks through it.
"""

from __future__ import annotations

from pathlib import Path

import typer

from audiossl.downstream.plugin import Plugin

app = typer.Typer(help="Speaker identification (third-party example).", no_args_is_help=True)


@app.command()
def hello(name: str = "world") -> None:
    """Print a greeting (proves the command group is mounted)."""
    typer.echo(f"spkid says hello to {name}")


@app.command()
def evaluate(run_dir: Path, data: Path, out: Path) -> None:
    """Accuracy of a trained run on a data dir."""
    from audiossl.cli.plugins import run_evaluation

    run_evaluation(run_dir, data, out)


def make_task(**options):
    from torch import nn

    from audiossl.data.kaldi import read_table
    from audiossl.downstream import DownstreamTask, eval_batches, mean_pool
    from audiossl.objectives.base import LossOutput

    class SpeakerIdTask(DownstreamTask):
        name = "spkid"
        labels = ("spk",)
        level = "utterance"

        def prepare(self, train_dir, out_dir):
            return {"speakers": sorted(set(read_table(Path(train_dir) / "utt2spk").values()))}

        def make_head(self, dim, state):
            return nn.Linear(dim, len(state["speakers"]))

        def _targets(self, batch, state, device):
            import torch

            return torch.tensor([state["speakers"].index(s) for s in batch.labels["spk"]], device=device)

        def loss(self, head, hidden, lengths, batch, state):
            logits = head(mean_pool(hidden, lengths))  # (B, K)
            loss = nn.functional.cross_entropy(logits, self._targets(batch, state, logits.device))
            return LossOutput(total=loss, parts={"ce": loss.detach()})

        def evaluate(self, head, upstream, data_dir, state, out_dir):
            right = total = 0
            for batch, hidden, lengths in eval_batches(upstream, data_dir, self.labels):
                predicted = head(mean_pool(hidden, lengths)).argmax(-1)
                right += int((predicted == self._targets(batch, state, predicted.device)).sum())
                total += len(batch.ids)
            return {"accuracy": right / total}

    return SpeakerIdTask(**options)


def plugin() -> Plugin:
    return Plugin(
        name="spkid",
        version="0.3.0",
        description="Closed-set speaker identification (third-party example).",
        labels=("spk",),
        task_factory=make_task,
        cli=app,
    )


#: Not a Plugin: an entry point naming it is reported as broken.
NOT_A_PLUGIN = 42
