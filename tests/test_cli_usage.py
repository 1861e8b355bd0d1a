"""The CLI package's contract: usage errors are click's usage message (exit 2, never a traceback),
user errors one line (exit 1), and every verb keeps the options it had before the CLI became a package
(``tests/data/cli_options.json``, captured from the single-module CLI before the move)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from foleykit.cli import app, main

CAPTURED = json.loads((Path(__file__).parent / "data" / "cli_options.json").read_text())


def _commands(command, path=()):
    """(path, click command) of every leaf command of the typer app."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def _params(command) -> list[str]:
    out = []
    for p in command.params:
        if type(p).__name__.endswith("Option"):
            out.append("|".join(sorted(p.opts + p.secondary_opts)))
        else:
            out.append("ARG:" + p.name)
    return sorted(out)


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_verb_keeps_its_options():
    """No verb, option (with its short and negative forms) or argument of the single-module CLI was lost
    in the move; verbs and options added since are welcome."""
    now = {path: _params(cmd) for path, cmd in _commands(typer.main.get_command(app))}
    assert not set(CAPTURED) - set(now), "verbs lost"
    for verb, options in CAPTURED.items():
        assert not set(options) - set(now[verb]), f"foleykit {verb}: options lost or changed"


@pytest.mark.parametrize("verb", sorted(CAPTURED))
def test_help_lists_every_option(verb, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_main(capsys, *verb.split(), "--help")
    assert code == 0
    for option in CAPTURED[verb]:
        if not option.startswith("ARG:"):
            longest = max(option.split("|"), key=len)
            assert longest in out, f"foleykit {verb} --help does not list {longest}"


@pytest.mark.parametrize(("argv", "message"), [
    (["generat", "x.jpg"], "No such command 'generat'. Did you mean 'generate'"),
    (["generate", "--bogus", "x.jpg"], "No such option: --bogus"),
    (["generate"], "Missing argument"),
    (["train", "mapper", "--epochs", "abc"], "Invalid value for '--epochs'"),
    (["models", "nosuchverb"], "No such command 'nosuchverb'"),
])
def test_usage_errors_print_usage_and_exit_2(argv, message, capsys):
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.startswith("Usage: foleykit") and "Try 'foleykit" in err
    assert "Traceback" not in err + out


def test_console_usage_error_is_not_a_traceback(tmp_path):
    """The real process (``python -m foleykit.cli``): click's usage lines, exit 2, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "foleykit.cli", "generat", str(tmp_path / "x.jpg")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Did you mean 'generate'" in proc.stderr and "Traceback" not in proc.stderr


def test_user_error_is_one_line_exit_1(tmp_path, capsys):
    code, _, err = run_main(capsys, "generate", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "o.wav"))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("foleykit: error:") and "nope.jpg" in lines[0]
    assert not (tmp_path / "o.wav").exists()
