from __future__ import annotations

import subprocess
import sys

from audiossl import __version__
from audiossl.cli.main import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"audiossl {__version__}"


def test_usage_error_exits_2_without_traceback(capsys):
    assert main(["data", "no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "No such command" in err and "Traceback" not in err


def test_user_error_exits_2_with_file_name(tmp_path):
    missing = tmp_path / "nowhere"
    # A real process: the console script's exit status and stderr, as a user sees them.
    result = subprocess.run(
        [sys.executable, "-c", "from audiossl.cli.main import run; run()", "data", "fix", str(missing)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_has_help(capsys):
    import typer

    from audiossl.cli.main import app

    command = typer.main.get_command(app)

    def walk(group, path):
        for name, sub in group.commands.items():
            yield path + [name], sub
            if hasattr(sub, "commands"):
                yield from walk(sub, path + [name])

    seen = 0
    for path, sub in walk(command, []):
        assert main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "Usage" in out and (sub.help or "").split("\n")[0].strip()[:20] in out
        seen += 1
    assert seen >= 4
