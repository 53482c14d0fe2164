"""`audiossl interop list` and `audiossl interop inspect`."""

from __future__ import annotations

from test_torchaudio import save_peer

from audiossl.cli.main import main


def test_list_names_every_format(capsys):
    assert main(["interop", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["fairseq2", "torchaudio", "transformers"]


def test_inspect_prints_what_was_imported(tmp_path, capsys):
    save_peer("wav2vec2-base", tmp_path / "model.pt")
    assert main(["interop", "inspect", str(tmp_path / "model.pt")]) == 0
    out = capsys.readouterr().out
    assert "format=torchaudio" in out and "dim=32 num_layers=2 frame_rate=800" in out


def test_inspect_unknown_file_is_a_user_error(tmp_path, capsys):
    (tmp_path / "x.bin").write_bytes(b"not a checkpoint")
    assert main(["interop", "inspect", str(tmp_path / "x.bin")]) == 2
    assert "not a checkpoint format" in capsys.readouterr().err
