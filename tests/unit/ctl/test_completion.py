"""``rolloutctl completion``: scripts read off the parser, completing in a real bash."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from controller.ctl.app import build_parser, main
from controller.ctl.completion import command_tree

BASH = shutil.which("bash")


def bash_completions(script: str, line: str) -> list[str]:
    """What bash completes for ``line`` (the cursor at its end) with ``script`` loaded."""
    words = line.split(" ")
    probe = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; _rolloutctl; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    assert BASH is not None
    done = subprocess.run([BASH, "--norc", "-c", probe], capture_output=True, text=True, check=True)
    return sorted(filter(None, done.stdout.splitlines()))


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("rolloutctl pa", ["pause"]),
        ("rolloutctl pl", ["plan"]),
        ("rolloutctl plan ", ["--help", "-h", "draft", "validate"]),
        ("rolloutctl pause --key", ["--key", "--key-id"]),
        ("rolloutctl --bogus pause --no", ["--no-wait"]),
        ("rolloutctl segment p", ["put"]),
        ("rolloutctl completion ", ["--help", "-h", "bash", "fish", "zsh"]),
    ],
)
def test_bash_completes_commands_and_options(
    line: str, expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", "bash"]) == 0
    assert bash_completions(capsys.readouterr().out, line) == expected


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_command_and_option_is_in_each_script(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    tree = command_tree(build_parser())
    for path, words in tree.items():
        assert path in script
        for word in words:
            token = word.lstrip("-") if shell == "fish" else word
            assert re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", script), word
    checker = shutil.which(shell)
    if checker is not None:
        subprocess.run([checker, "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize(
    "command", [["--help"], ["plan", "--help"], ["completion", "bash"], ["verify", "--bogus"]]
)
def test_no_colour_codes_with_no_color(command: list[str]) -> None:
    # FORCE_COLOR too: NO_COLOR wins even where something asks for colour
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "1", "TERM": "xterm-256color"}
    done = subprocess.run(
        [sys.executable, "-m", "controller.ctl.app", *command],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.stdout or done.stderr
    assert "\x1b[" not in done.stdout + done.stderr
