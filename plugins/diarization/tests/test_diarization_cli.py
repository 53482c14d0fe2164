"""``audiossl diarization`` end to end through the CLI, and its refusals."""

from __future__ import annotations

import json

import pytest
from audiossl_diarization.evaluation import read_rttm

from audiossl.cli.main import main
from audiossl.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

COMMANDS = ("make-corpus", "train-segmentation", "diarize", "tune", "evaluate")


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    assert main(["diarization", command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_corpus_train_diarize_evaluate(source_dir, checkpoint, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    args = ["diarization", "make-corpus", str(source_dir), "-o", str(corpus), "--recordings", "3,1,1"]
    assert main([*args, "--turns", "2,3", "--seed", "5"]) == 0
    assert main([*args, "--turns", "2,3"]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    seg = tmp_path / "seg.pt"
    train = ["diarization", "train-segmentation", str(corpus), "-o", str(seg), "--epochs", "1", "--lstm-hidden", "8"]
    assert main(train) == 0
    summary = json.loads((tmp_path / "seg.pt.json").read_text())
    assert len(summary["epochs"]) == 1 and "DiarizationErrorRate" in summary["epochs"][0]
    assert main(train) == 2  # exists
    hyp = tmp_path / "hyp.rttm"
    diarize = ["diarization", "diarize", str(corpus), "--subset", "test", "--model", str(checkpoint)]
    diarize += ["--segmentation", str(seg), "-o", str(hyp)]
    hyp.write_text("keep me\n")
    assert main(diarize) == 2  # the RTTM exists: refused before any work
    assert hyp.read_text() == "keep me\n"
    assert main([*diarize, "--overwrite", "--min-speakers", "2", "--max-speakers", "2"]) == 0
    uri = (corpus / "test.lst").read_text().split()[0]
    assert list(read_rttm(hyp)) == [uri]
    assert len(read_rttm(hyp)[uri].labels()) == 2
    capsys.readouterr()
    report = tmp_path / "der.json"
    evaluate = ["diarization", "evaluate", "-r", str(corpus / "test.rttm"), "-H", str(hyp), "--uem"]
    assert main([*evaluate, str(corpus / "test.uem"), "-o", str(report)]) == 0
    table = capsys.readouterr().out
    assert "DER%" in table and "conf%" in table
    der = json.loads(report.read_text())
    assert set(der["collars"]) == {"0", "0.25"} and der["recordings"] == 1
    exact = der["collars"]["0"]
    assert 0.0 <= exact["der"] and exact["total"] > 0
    assert f"{100 * exact['der']:6.2f}" in table


def test_bad_inputs(corpus_dir, checkpoint, segmentation, tmp_path, capsys):
    state = load_checkpoint(latest_checkpoint(checkpoint))
    state["encoder"]["family"] = "perceiver"
    save_checkpoint(state, tmp_path / "unknown.pt")
    wav = corpus_dir / "wav" / "test_0000.wav"
    base = ["diarization", "diarize", str(wav), "--segmentation", str(segmentation), "-o", str(tmp_path / "o.rttm")]
    assert main([*base, "--model", str(tmp_path / "unknown.pt")]) == 2
    assert "unknown encoder architecture 'perceiver'" in capsys.readouterr().err
    assert main([*base, "--model", str(checkpoint), "--sv-run", str(tmp_path)]) == 2  # two sources
    assert (
        main(
            [
                "diarization",
                "diarize",
                str(wav),
                "--model",
                str(checkpoint),
                "--segmentation",
                str(tmp_path / "absent.pt"),
                "-o",
                str(tmp_path / "o.rttm"),
            ]
        )
        == 2
    )
    assert "nothing is downloaded" in capsys.readouterr().err
    assert not (tmp_path / "o.rttm").exists()
    assert main(["diarization", "evaluate", "-r", str(tmp_path / "none.rttm"), "-H", str(tmp_path / "none.rttm")]) == 2
