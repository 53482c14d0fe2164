"""Numbers in scientific notation are numbers on the command line too: every float and integer option."""

from __future__ import annotations

import typing

import typer.main

from audiossl.cli.main import _integers_in_scientific_notation, app, main


def _params(command, path=()):
    for param in getattr(command, "params", ()):
        yield (*path, param.name), param
    for name, sub in getattr(command, "commands", {}).items():
        yield from _params(sub, (*path, name))


def _is(annotation, kind) -> bool:
    return annotation is kind or kind in typing.get_args(annotation)


def test_every_number_option_reads_scientific_notation():
    command = typer.main.get_command(app)
    _integers_in_scientific_notation(command)
    checked = {int: 0, float: 0}
    for where, param in _params(command):
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        for kind, text, number in ((int, "2e1", 20), (float, "1e-3", 1e-3)):
            if _is(annotation, kind) and not _is(annotation, bool):
                if param.nargs > 1:  # a fixed-size tuple option, e.g. --words-per-utt MIN MAX
                    value, expected = (text,) * param.nargs, [(number,) * param.nargs, [number] * param.nargs]
                else:
                    value = (text,) if param.multiple or param.nargs == -1 else text
                    expected = [number, (number,), [number]]
                got = param.get_runtime_param().coerce(value, param, None)
                assert got in expected, (where, got)
                checked[kind] += 1
    assert checked[int] > 20 and checked[float] > 10, checked  # the walk reached the commands and plugins


def test_an_integer_option_in_scientific_notation_end_to_end(tmp_path, capsys):
    from audiossl.testing.downstream import tiny_corpus

    data = tiny_corpus(tmp_path / "data", speakers=2, utts_per_speaker=3)
    out = tmp_path / "trials"
    assert main(["sv", "make-trials", str(data), "-o", str(out), "--num-trials", "1e1"]) == 0
    assert len(out.read_text().splitlines()) == 10
    assert main(["sv", "make-trials", str(data), "-o", str(tmp_path / "t2"), "--num-trials", "1.5e0"]) == 2
    assert "--num-trials" in capsys.readouterr().err
