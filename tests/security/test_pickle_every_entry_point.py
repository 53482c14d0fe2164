"""No file a user hands audiossl can run code: a malicious pickle at every entry point that loads one.

Each malicious file holds two live payloads (a ``__reduce__`` that touches a marker file through
``pathlib.Path.touch``, and one that runs ``touch`` through ``os.system``), saved three ways:
``torch.save`` (zip), ``torch.save`` in the legacy format, and a bare ``pickle.dump``. A first test
shows the payloads are live (unpickled, they do create the markers); every other test feeds the
files to an entry point, through the CLI where there is a command, and checks that the markers never
appear, that the CLI exits 2 without a traceback, that the message names the file, and that torch's
advice ("re-running torch.load with weights_only=False will likely succeed") is never passed on.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audiossl.cli.main import main
from audiossl.errors import DataError, UserError

KINDS = ("torch-zip", "torch-legacy", "pickle")


class TouchPayload:
    """Unpickled, touches ``marker`` (a method call, as a real exploit would chain)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class ShellPayload:
    """Unpickled, runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def write_malicious(path: Path, kind: str, markers: tuple[Path, Path]) -> Path:
    """A file that looks like an audiossl checkpoint (format, model...) with both payloads inside."""
    state = {
        "format": 1,
        "model": {"w": torch.zeros(2)},
        "state_dict": {"w": torch.zeros(2)},
        "pyannote.audio": {"architecture": TouchPayload(markers[0])},
        "payload": ShellPayload(markers[1]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "torch-zip":
        torch.save(state, path)
    elif kind == "torch-legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as handle:
            pickle.dump(state, handle)
    return path


@pytest.fixture
def markers(tmp_path) -> tuple[Path, Path]:
    return tmp_path / "PWNED-touch", tmp_path / "PWNED-shell"


@pytest.fixture(params=KINDS)
def evil(request, tmp_path, markers) -> Path:
    return write_malicious(tmp_path / "evil" / "model.pt", request.param, markers)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from audiossl.testing.downstream import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("security") / "data", speakers=2, utts_per_speaker=2)


def check_refused(code: int, err: str, named: Path, markers: tuple[Path, Path]) -> None:
    """Exit 2, the file named, no traceback, none of torch's advice, and no payload ran."""
    assert not any(m.exists() for m in markers), f"a payload ran: {[m for m in markers if m.exists()]}"
    assert code == 2, err
    assert "Traceback" not in err, err
    assert str(named) in err, err
    assert "weights_only=False" not in err and "will likely succeed" not in err, err


def check_message(error: BaseException, named: Path, markers: tuple[Path, Path]) -> None:
    assert not any(m.exists() for m in markers)
    assert isinstance(error, UserError)
    assert str(named) in str(error)
    assert "weights_only=False" not in str(error) and "will likely succeed" not in str(error)


def run_cli(args: list, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------------- the payloads are live


@pytest.mark.parametrize("kind", KINDS)
def test_the_payloads_are_live(tmp_path, markers, kind):
    """Unpickled the unsafe way, each file does run both payloads: the tests below could fail."""
    path = write_malicious(tmp_path / "live.pt", kind, markers)
    if kind == "pickle":
        with open(path, "rb") as handle:
            pickle.load(handle)
    else:
        torch.load(path, weights_only=False)
    assert all(m.exists() for m in markers)


# ----------------------------------------------------------------------------- commands


def run_dir_with(evil: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A run dir whose newest checkpoint is the malicious file."""
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "ckpt-00000005.pt"
    evil.rename(ckpt)
    return run, ckpt


def test_extract_model(evil, data_dir, tmp_path, markers, capsys):
    code, err = run_cli(["extract", "--model", evil, "--data", data_dir, "--out", tmp_path / "emb"], capsys)
    check_refused(code, err, evil, markers)


def test_extract_run_dir(evil, data_dir, tmp_path, markers, capsys):
    run, ckpt = run_dir_with(evil, tmp_path)
    code, err = run_cli(["extract", "--model", run, "--data", data_dir, "--out", tmp_path / "emb"], capsys)
    check_refused(code, err, ckpt, markers)


def test_export_model(evil, tmp_path, markers, capsys):
    code, err = run_cli(["export", "--model", evil, "-o", tmp_path / "enc.pt"], capsys)
    check_refused(code, err, evil, markers)
    assert not (tmp_path / "enc.pt").exists()


TINY = ["--set", "run.max_steps=1", "--set", "run.log_every=1"]


def test_pretrain_init_from(evil, data_dir, tmp_path, markers, capsys):
    args = ["pretrain", "--config", "mspm-ast-tiny", "--data", data_dir, "--out", tmp_path / "out"]
    code, err = run_cli([*args, *TINY, "--set", f"run.init_from={evil}"], capsys)
    check_refused(code, err, evil, markers)


def test_pretrain_resume(evil, data_dir, tmp_path, markers, capsys):
    run, ckpt = run_dir_with(evil, tmp_path)
    args = ["pretrain", "--config", "mspm-ast-tiny", "--data", data_dir, "--out", run, "--resume"]
    code, err = run_cli([*args, *TINY], capsys)
    check_refused(code, err, ckpt, markers)


@pytest.mark.parametrize("format", [None, "torchaudio", "fairseq2"])
def test_interop_inspect(evil, format, markers, capsys):
    args = ["interop", "inspect", evil] + (["--format", format] if format else [])
    code, err = run_cli(args, capsys)
    check_refused(code, err, evil, markers)


def test_interop_inspect_fairseq2_card(evil, tmp_path, markers, capsys):
    card = tmp_path / "card.yaml"
    card.write_text(f"model_family: wav2vec2\nmodel_arch: base\ncheckpoint: {evil}\n")
    code, err = run_cli(["interop", "inspect", card], capsys)
    check_refused(code, err, evil, markers)


def test_interop_inspect_hugging_face_dir(evil, tmp_path, markers, capsys):
    """A save_pretrained dir whose pytorch_model.bin is a pickle with code: refused before transformers reads it."""
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "architectures": ["Wav2Vec2Model"]}))
    weights = hf / "pytorch_model.bin"
    evil.rename(weights)
    code, err = run_cli(["interop", "inspect", hf], capsys)
    check_refused(code, err, weights, markers)


def test_kmeans_label_model(evil, data_dir, tmp_path, markers, capsys):
    km = tmp_path / "km"
    km.mkdir()
    model = km / "kmeans.safetensors"
    evil.rename(model)
    (km / "config.yaml").write_text("{}\n")
    code, err = run_cli(["kmeans", "label", "--model", km, "--data", data_dir, "--out", tmp_path / "labels"], capsys)
    check_refused(code, err, model, markers)


@pytest.mark.parametrize("command", ["asr train", "er train", "sv evaluate"])
def test_plugin_upstream(command, evil, data_dir, tmp_path, markers, capsys):
    code, err = run_cli([*command.split(), data_dir, "-u", evil, "-o", tmp_path / "out"], capsys)
    check_refused(code, err, evil, markers)


def downstream_run_with(evil: Path, tmp_path: Path, task: str) -> tuple[Path, Path]:
    """A downstream run dir (its downstream.json) whose newest checkpoint is the malicious file."""
    run, ckpt = run_dir_with(evil, tmp_path)
    info = {"task": task, "task_options": {}, "upstream": "fbank", "config": {}}
    (run / "downstream.json").write_text(json.dumps(info))
    return run, ckpt


@pytest.mark.parametrize("command", ["asr decode", "sv evaluate --run", "er evaluate"])
def test_plugin_run_dirs(command, evil, data_dir, tmp_path, markers, capsys):
    """A downstream run dir whose checkpoint is malicious."""
    run, ckpt = downstream_run_with(evil, tmp_path, command.split()[0])
    if command == "sv evaluate --run":
        args = ["sv", "evaluate", data_dir, "--run", run]
    else:
        args = [*command.split(), run, data_dir]
    code, err = run_cli([*args, "-o", tmp_path / "out"], capsys)
    check_refused(code, err, ckpt, markers)


def test_vc_model_and_vocoder(evil, data_dir, tmp_path, markers, capsys):
    wav = next((data_dir / "wav").glob("*.wav")) if (data_dir / "wav").is_dir() else None
    source = wav if wav is not None else next(data_dir.rglob("*.wav"))
    base = ["vc", "convert", source, "--target", source.parent, "-o", tmp_path / "out.wav"]
    code, err = run_cli([*base, "--model", evil, "--vocoder", evil], capsys)
    check_refused(code, err, evil, markers)
    code, err = run_cli(["vc", "train-vocoder", "--data", data_dir, "--model", evil, "--out", tmp_path / "voc"], capsys)
    check_refused(code, err, evil, markers)


def test_dino_cluster_and_vc_evaluate(evil, data_dir, tmp_path, markers, capsys):
    code, err = run_cli(["dino", "cluster", evil, "--data", data_dir, "--k", 2, "-o", tmp_path / "dino"], capsys)
    check_refused(code, err, evil, markers)
    args = ["vc", "evaluate", "--model", evil, "--vocoder", evil, "--data", data_dir, "--out", tmp_path / "vc"]
    code, err = run_cli(args, capsys)
    check_refused(code, err, evil, markers)


SV_TRAIN = ["sv", "train", "-u", "fbank", "--max-steps", 1, "--device", "cpu"]


@pytest.fixture(scope="module")
def sv_run(data_dir, tmp_path_factory) -> Path:
    """A real one-step ``sv train`` run on fbank features."""
    out = tmp_path_factory.mktemp("sv") / "run"
    assert main([str(a) for a in [*SV_TRAIN[:2], data_dir, *SV_TRAIN[2:], "-o", out]]) == 0
    return out


def test_downstream_resume(evil, data_dir, sv_run, tmp_path, markers, capsys):
    """``--resume`` of a downstream run whose newest checkpoint is malicious (a copy of a real run)."""
    run = tmp_path / "run"
    shutil.copytree(sv_run, run)
    ckpt = run / "ckpt-00000099.pt"
    evil.rename(ckpt)
    code, err = run_cli([*SV_TRAIN[:2], data_dir, *SV_TRAIN[2:], "-o", run, "--resume"], capsys)
    check_refused(code, err, ckpt, markers)


def _segmentation_file(path: Path) -> Path:
    """A legit (untrained) segmentation model written by our own save, to get past --segmentation."""
    from audiossl_diarization.segmentation import SegmentationConfig, _pyannet, save_segmentation
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    config = SegmentationConfig(lstm_hidden=4, linear_hidden=4)
    model = _pyannet(config, 16000)
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=2.0,
        min_duration=2.0,
        warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    model.build()
    return save_segmentation(model, config, path)


@pytest.mark.parametrize("command", ["diarize", "tune"])
def test_diarization_segmentation(command, evil, data_dir, tmp_path, markers, capsys):
    pytest.importorskip("audiossl_diarization")
    wav = next(data_dir.rglob("*.wav"))
    target = [wav, "-o", tmp_path / "out.rttm"] if command == "diarize" else [tmp_path]
    code, err = run_cli(["diarization", command, *target, "--segmentation", evil, "--model", "unused"], capsys)
    check_refused(code, err, evil, markers)


def test_diarization_model_and_sv_run(evil, data_dir, tmp_path, markers, capsys):
    pytest.importorskip("audiossl_diarization")
    seg = _segmentation_file(tmp_path / "seg.pt")
    wav = next(data_dir.rglob("*.wav"))
    base = ["diarization", "diarize", wav, "--segmentation", seg, "-o", tmp_path / "out.rttm"]
    code, err = run_cli([*base, "--model", evil], capsys)
    check_refused(code, err, evil, markers)
    run, ckpt = downstream_run_with(evil, tmp_path, "sv")
    code, err = run_cli([*base, "--sv-run", run], capsys)
    check_refused(code, err, ckpt, markers)
    assert not (tmp_path / "out.rttm").exists()


# ----------------------------------------------------------------------------- the Python API


def test_python_load_functions(evil, tmp_path, markers):
    import audiossl
    from audiossl.fileio import load_checkpoint
    from audiossl.interop import import_model
    from audiossl.models import init_from_checkpoint, read_checkpoint

    calls = [
        lambda: audiossl.load(evil, device="cpu"),
        lambda: read_checkpoint(evil),
        lambda: load_checkpoint(evil),
        lambda: init_from_checkpoint(torch.nn.Linear(2, 2), evil),
        lambda: import_model(evil, format="torchaudio"),
        lambda: import_model(evil, format="fairseq2"),
    ]
    for call in calls:
        with pytest.raises(DataError) as caught:
            call()
        check_message(caught.value, evil, markers)


def test_python_segmentation_loader(evil, tmp_path, markers):
    pytest.importorskip("audiossl_diarization")
    from audiossl_diarization.segmentation import load_segmentation

    with pytest.raises(DataError, match="not a segmentation model") as caught:
        load_segmentation(evil)
    check_message(caught.value, evil, markers)
    assert "never" in str(caught.value)  # says it runs no code from it


def test_message_names_what_the_pickle_would_build(tmp_path, markers):
    """Beyond "not plain data", the refusal names the Python objects the file would have called."""
    from audiossl.fileio import read_weights_only

    path = write_malicious(tmp_path / "x.pt", "torch-zip", markers)
    with pytest.raises(DataError) as caught:
        read_weights_only(path, what="an audiossl checkpoint")
    message = str(caught.value)
    assert message.startswith(f"{path}: not an audiossl checkpoint readable as plain data")
    assert "posix.system" in message or "os.system" in message
    assert not any(m.exists() for m in markers)


@pytest.mark.parametrize("damage", ["empty", "truncated", "random"])
def test_damaged_checkpoints_are_named_without_torch_text(damage, tmp_path, capsys, data_dir):
    good = tmp_path / "good.pt"
    torch.save({"format": 1, "model": {"w": torch.zeros(1000)}}, good)
    path = tmp_path / f"{damage}.pt"
    content = {"empty": b"", "truncated": good.read_bytes()[:300], "random": os.urandom(4096)}[damage]
    path.write_bytes(content)
    code, err = run_cli(["extract", "--model", path, "--data", data_dir, "--out", tmp_path / "emb"], capsys)
    assert code == 2 and str(path) in err and "Traceback" not in err
    assert "weights_only=False" not in err and "UnpicklingError" not in err and "PytorchStreamReader" not in err


def test_a_torchscript_file_is_not_weights(tmp_path, capsys, data_dir):
    """A TorchScript archive is a program: handed over as a checkpoint, it is refused, not run."""
    script = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "model.pt"
    torch.jit.save(script, str(path))
    code, err = run_cli(["extract", "--model", path, "--data", data_dir, "--out", tmp_path / "emb"], capsys)
    assert code == 2 and str(path) in err and "TorchScript" in err


# ----------------------------------------------------------------------------- numpy files


def write_object_npy(path: Path, markers: tuple[Path, Path]) -> Path:
    np.save(path, np.array([TouchPayload(markers[0]), ShellPayload(markers[1])], dtype=object), allow_pickle=True)
    return path


def test_object_npy_is_live(tmp_path, markers):
    path = write_object_npy(tmp_path / "live.npy", markers)
    np.load(path, allow_pickle=True)
    assert all(m.exists() for m in markers)


def test_feature_readers_refuse_object_arrays(tmp_path, markers):
    from audiossl.cluster.features import FeatureDump
    from audiossl.embed.writers import read_features

    out = tmp_path / "emb"
    (out / "npy").mkdir(parents=True)
    evil = write_object_npy(out / "npy" / "u1.npy", markers)
    (out / "index.scp").write_text("u1 npy/u1.npy\n")
    (out / "extract.json").write_text(json.dumps({"complete": True, "format": "npy"}))
    with pytest.raises(DataError) as caught:
        read_features(out)
    check_message(caught.value, evil, markers)

    dump = tmp_path / "dump"
    dump.mkdir()
    shard = write_object_npy(dump / "shard-00000.npy", markers)
    index = {"dim": 2, "shards": [{"file": shard.name, "frames": 2}]}
    (dump / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError) as caught:
        list(FeatureDump(dump).batches())
    check_message(caught.value, shard, markers)


def test_global_stats_refuse_object_arrays(tmp_path, markers):
    from audiossl.audio.normalize import GlobalStats

    path = tmp_path / "cmvn.npz"
    payload = np.array([TouchPayload(markers[0])], dtype=object)
    np.savez(path, count=np.int64(1), sum=payload, sum_squares=payload, utterances=np.int64(1))
    with pytest.raises(DataError) as caught:
        GlobalStats.load(path)
    check_message(caught.value, path, markers)
