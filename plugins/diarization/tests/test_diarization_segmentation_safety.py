"""Segmentation models are loaded as weights only: every accepted format rebuilds the same model, code never runs.

A real Lightning/pyannote checkpoint (``trainer.save_checkpoint`` after one training step), our
``.pt`` and ``.safetensors`` files and a pyannote model directory all load to a model whose outputs,
and whose diarization, equal those of the model in memory; pyannote's ``Model.from_pretrained``
(which unpickles with ``weights_only=False``) is never called; crafted files are refused naming the file.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from audiossl_diarization.segmentation import SegmentationConfig, _pyannet, load_segmentation, save_segmentation

from audiossl.cli.main import main
from audiossl.errors import DataError

CONFIG = SegmentationConfig(epochs=1, lstm_hidden=8, linear_hidden=8, batch_size=8)


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class TouchPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    """PyanNet after one Lightning training step, with its Lightning checkpoint and our two files."""
    import lightning
    from audiossl_diarization.corpus import corpus_sample_rate, load_protocol
    from pyannote.audio.tasks import SpeakerDiarization

    out = tmp_path_factory.mktemp("segsafe")
    lightning.seed_everything(0, verbose=False)
    task = SpeakerDiarization(
        load_protocol(corpus_dir),
        cache=str(out / "task.npz"),
        duration=CONFIG.duration,
        max_speakers_per_chunk=2,
        max_speakers_per_frame=2,
        batch_size=CONFIG.batch_size,
        num_workers=0,
    )
    model = _pyannet(CONFIG, corpus_sample_rate(corpus_dir), task)
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=CONFIG.lr)
    trainer = lightning.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(out),
    )
    trainer.fit(model)
    trainer.save_checkpoint(out / "seg.ckpt")
    model = model.cpu().eval()
    save_segmentation(model, CONFIG, out / "seg.pt")
    save_segmentation(model, CONFIG, out / "seg.safetensors")
    (out / "pyannote-dir").mkdir()
    (out / "pyannote-dir" / "pytorch_model.bin").write_bytes((out / "seg.ckpt").read_bytes())
    return model, out


@pytest.fixture
def no_from_pretrained(monkeypatch):
    """pyannote's unpickling loader fails the test if anything calls it."""
    from pyannote.audio import Model

    def refuse(*args, **kwargs):
        raise AssertionError("Model.from_pretrained unpickles with weights_only=False: never call it")

    monkeypatch.setattr(Model, "from_pretrained", refuse)


@pytest.mark.parametrize("name", ["seg.pt", "seg.safetensors", "seg.ckpt", "pyannote-dir"])
def test_every_format_rebuilds_the_trained_model(trained, name, no_from_pretrained):
    model, out = trained
    loaded = load_segmentation(out / name)
    assert type(loaded).__name__ == "PyanNet" and not loaded.training
    chunk = torch.randn(3, 1, 32000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(chunk), model(chunk), rtol=0, atol=0)
    assert loaded.specifications == model.specifications


def test_checkpoint_needs_no_unpickling_beyond_the_task_description(trained):
    """What the real Lightning checkpoint holds beyond plain data: exactly pyannote's task description."""
    _, out = trained
    names = set(torch.serialization.get_unsafe_globals_in_checkpoint(out / "seg.ckpt"))
    assert names <= {
        "pyannote.audio.core.task.Specifications",
        "pyannote.audio.core.task.Problem",
        "pyannote.audio.core.task.Resolution",
    }


def test_our_loader_agrees_with_pyannotes_on_a_trusted_file(trained):
    """On our own (trusted) checkpoint, pyannote's unpickling loader builds the same model as ours."""
    from pyannote.audio import Model

    _, out = trained
    theirs = Model.from_pretrained(str(out / "seg.ckpt"), strict=False).eval()
    ours = load_segmentation(out / "seg.ckpt")
    chunk = torch.randn(2, 1, 32000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(chunk), theirs(chunk), rtol=0, atol=0)


def test_diarization_is_the_same_from_every_file(trained, checkpoint, corpus_dir, no_from_pretrained):
    from audiossl_diarization.embedding import load_embedding
    from audiossl_diarization.pipeline import PipelineConfig, build_pipeline, diarize_files

    model, out = trained
    embedding = load_embedding(checkpoint)
    wav = [corpus_dir / "wav" / f"{(corpus_dir / 'test.lst').read_text().split()[0]}.wav"]
    results = {}
    for name, seg in [("memory", model), *((n, load_segmentation(out / n)) for n in ("seg.pt", "seg.ckpt"))]:
        pipeline = build_pipeline(seg, embedding, PipelineConfig(threshold=0.7, segmentation_step=0.25))
        (annotation,) = diarize_files(pipeline, wav).values()
        tracks = annotation.itertracks(yield_label=True)
        results[name] = sorted((round(span.start, 4), round(span.end, 4), label) for span, _, label in tracks)
    assert results["seg.pt"] == results["memory"] and results["seg.ckpt"] == results["memory"]


def test_old_pyannote_checkpoint_layout_loads(trained, tmp_path, monkeypatch, no_from_pretrained):
    """pyannote 3.x checkpoints name torch's version string and Lightning callback classes (dict keys).

    The callback classes become inert stand-ins and are never imported: here ``pytorch_lightning``
    exists only while the file is written.
    """
    from torch.torch_version import TorchVersion

    model, out = trained
    state = torch.load(out / "seg.ckpt", weights_only=False)  # our own trusted file, to make the old layout
    package = types.ModuleType("pytorch_lightning.callbacks.early_stopping")

    class EarlyStopping:
        pass

    EarlyStopping.__module__ = package.__name__
    EarlyStopping.__qualname__ = "EarlyStopping"
    package.EarlyStopping = EarlyStopping
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", package.__name__):
        monkeypatch.setitem(sys.modules, name, package if name == package.__name__ else types.ModuleType(name))
    state["callbacks"] = {EarlyStopping: {"wait_count": 0, "best_score": torch.tensor(0.5)}}
    state["pyannote.audio"]["versions"]["torch"] = TorchVersion(torch.__version__)
    torch.save(state, tmp_path / "old.bin")
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", package.__name__):
        monkeypatch.delitem(sys.modules, name)
    loaded = load_segmentation(tmp_path / "old.bin")
    chunk = torch.randn(1, 1, 32000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(chunk), model(chunk), rtol=0, atol=0)


def test_crafted_pyannote_checkpoints_are_refused(trained, tmp_path, no_from_pretrained):
    from audiossl_diarization.segmentation import _pyannote_safe_globals

    _, out = trained

    with torch.serialization.safe_globals(_pyannote_safe_globals()):
        state = torch.load(out / "seg.ckpt", weights_only=True)
    # another architecture: pyannote would import and build whatever class the file names
    other = dict(state, **{"pyannote.audio": dict(state["pyannote.audio"])})
    other["pyannote.audio"]["architecture"] = {"module": "os", "class": "system"}
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="rebuilds only PyanNet") as caught:
        load_segmentation(tmp_path / "other.ckpt")
    assert str(tmp_path / "other.ckpt") in str(caught.value)
    # hyper-parameters that are not plain numbers
    odd = dict(state, hyper_parameters={**state["hyper_parameters"], "lstm": torch.zeros(2)})
    torch.save(odd, tmp_path / "odd.ckpt")
    with pytest.raises(DataError, match="non-numeric hyper-parameters"):
        load_segmentation(tmp_path / "odd.ckpt")
    # weights of another size
    small = dict(state, state_dict={k: v[..., :1] for k, v in state["state_dict"].items()})
    torch.save(small, tmp_path / "small.ckpt")
    with pytest.raises(DataError, match="do not fit"):
        load_segmentation(tmp_path / "small.ckpt")
    # a safetensors file that is not ours
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(DataError, match="without audiossl-diarization-segmentation metadata"):
        load_segmentation(tmp_path / "foreign.safetensors")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(DataError, match="pytorch_model.bin"):
        load_segmentation(tmp_path / "empty-dir")


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump", "in a pyannote dir"])
def test_malicious_segmentation_never_runs(how, corpus_dir, tmp_path, capsys, no_from_pretrained):
    markers = (tmp_path / "PWNED-shell", tmp_path / "PWNED-touch")
    state = {
        "pyannote.audio": {"architecture": Payload(markers[0])},
        "state_dict": {},
        "hyper_parameters": TouchPayload(markers[1]),
    }
    path = tmp_path / ("dir/pytorch_model.bin" if how == "in a pyannote dir" else "seg.pt")
    path.parent.mkdir(exist_ok=True)
    if how == "pickle.dump":
        path.write_bytes(pickle.dumps(state))
    else:
        torch.save(state, path)
    given = path.parent if how == "in a pyannote dir" else path
    wav = corpus_dir / "wav" / "test_0000.wav"
    args = ["diarization", "diarize", wav, "--segmentation", given, "--model", "unused", "-o", tmp_path / "o.rttm"]
    capsys.readouterr()
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert not any(m.exists() for m in markers)
    assert f"{path}: not a segmentation model readable as plain data" in err
    assert "audiossl never unpickles code" in err and "weights_only=False" not in err and "Traceback" not in err
    assert not (tmp_path / "o.rttm").exists()
    # the payload is live: unpickled the unsafe way, it runs
    if how == "pickle.dump":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert all(m.exists() for m in markers)
