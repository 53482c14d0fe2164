"""``audiossl encoders list`` prints every registered family and preset with its parameter count."""

from __future__ import annotations

from audiossl.cli.encoders import format_count
from audiossl.cli.main import main
from audiossl.encoders import list_encoders


def test_encoders_list_prints_every_preset(capsys):
    assert main(["encoders", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["family", "preset", "parameters"]
    printed = [line.split() for line in lines[1:]]
    expected = [[family, preset, *format_count(count).split()] for family, preset, count in list_encoders()]
    assert printed == expected
    assert ["ast", "tiny", "5.4", "M"] in printed


def test_format_count():
    assert format_count(5_390_208) == "5.4 M"
    assert format_count(85_261_824) == "85.3 M"
