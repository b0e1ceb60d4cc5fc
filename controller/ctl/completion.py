"""``rolloutctl completion bash|zsh|fish``: a shell completion script, read off the parser.

The script is generated from the argparse parser itself (its subcommands at
every depth and the options of each), so a new command or option completes
without anyone listing it here. Each script finds the command path typed so
far (``rolloutctl/plan/draft``), then offers that path's subcommands and
options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

SHELLS = ("bash", "zsh", "fish")
ROOT = "rolloutctl"


def command_tree(parser: argparse.ArgumentParser, path: str = ROOT) -> dict[str, list[str]]:
    """Every command path of ``parser``, each with the words that may follow it:
    its subcommands or a positional's choices, and its long and short options."""
    words: list[str] = []
    tree: dict[str, list[str]] = {path: words}
    for action in parser._actions:  # argparse keeps no public list of them
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.append(name)
                tree |= command_tree(sub, f"{path}/{name}")
        elif not action.option_strings and action.choices:
            words.extend(str(choice) for choice in action.choices)
        words.extend(action.option_strings)
    return tree


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    writers: dict[str, Callable[[dict[str, list[str]]], str]] = {
        "bash": _bash,
        "zsh": _zsh,
        "fish": _fish,
    }
    return writers[shell](command_tree(parser))


def _bash(tree: dict[str, list[str]]) -> str:
    paths = "|".join(path for path in tree if path != ROOT)
    cases = "\n".join(
        f'        {path}) words="{" ".join(words)}" ;;' for path, words in tree.items()
    )
    return f"""# rolloutctl completion for bash: eval "$(rolloutctl completion bash)"
_rolloutctl() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path={ROOT} words="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "$path/${{COMP_WORDS[i]}}" in
            {paths}) path="$path/${{COMP_WORDS[i]}}" ;;
        esac
    done
    case "$path" in
{cases}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _rolloutctl rolloutctl
"""


def _zsh(tree: dict[str, list[str]]) -> str:
    # zsh runs bash completion functions through bashcompinit, which ships with zsh.
    head = '# rolloutctl completion for zsh: eval "$(rolloutctl completion zsh)"\n'
    body = _bash(tree).split("\n", 1)[1]
    return f"{head}autoload -U +X bashcompinit && bashcompinit\n{body}"


def _fish(tree: dict[str, list[str]]) -> str:
    paths = " ".join(path for path in tree if path != ROOT)
    lines = [
        "# rolloutctl completion for fish: rolloutctl completion fish | source",
        f"set -g __rolloutctl_paths {paths}",
        "function __rolloutctl_at",
        f"    set -l path {ROOT}",
        "    for word in (commandline -opc)[2..-1]",
        '        if contains -- "$path/$word" $__rolloutctl_paths',
        '            set path "$path/$word"',
        "        end",
        "    end",
        '    test "$path" = "$argv[1]"',
        "end",
    ]
    for path, words in tree.items():
        at = f"'__rolloutctl_at {path}'"
        for word in words:
            if word.startswith("--"):
                lines.append(f"complete -c rolloutctl -n {at} -l {word[2:]}")
            elif word.startswith("-"):
                lines.append(f"complete -c rolloutctl -n {at} -s {word[1:]}")
            else:
                lines.append(f"complete -c rolloutctl -f -n {at} -a {word}")
    return "\n".join(lines) + "\n"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description='Print a completion script for SHELL. bash: eval "$(rolloutctl '
        'completion bash)" in ~/.bashrc; zsh: eval "$(rolloutctl completion zsh)" in '
        "~/.zshrc; fish: rolloutctl completion fish > ~/.config/fish/completions/rolloutctl.fish",
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
