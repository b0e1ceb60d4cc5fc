"""The model server's command line and thread count (no server is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.dev.llama_server import parse_args
from controller.dev.model_server import LLAMA_SERVER_MODULE, llm_server_command, llm_threads
from controller.dev.processes import ServiceUnavailable


@pytest.mark.parametrize(
    ("environ", "cpus", "threads"),
    [
        ({}, 1, 1),
        ({}, 2, 1),
        ({}, 4, 2),
        ({}, 64, 4),
        ({"LLM_THREADS": "3"}, 2, 3),
        ({"LLM_THREADS": " 1 "}, 16, 1),
        ({"LLM_THREADS": ""}, 8, 4),
    ],
)
def test_threads_default_to_half_the_cpus_unless_set(
    environ: dict[str, str], cpus: int, threads: int
) -> None:
    assert llm_threads(environ, cpus=cpus) == threads


@pytest.mark.parametrize("given", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_is_refused_naming_the_variable(given: str) -> None:
    with pytest.raises(ServiceUnavailable, match="LLM_THREADS"):
        llm_threads({"LLM_THREADS": given}, cpus=2)


def test_the_command_runs_the_launcher_with_the_thread_count() -> None:
    command = llm_server_command(Path("/m/model.gguf"), 8123, 3)
    assert command[1:3] == ["-m", LLAMA_SERVER_MODULE]
    options = parse_args(command[3:])
    assert (options.model, options.port, options.threads) == ("/m/model.gguf", 8123, 3)
    assert options.alias == "smollm2-135m-instruct"
