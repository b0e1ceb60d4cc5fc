"""llama.cpp's own OpenAI-compatible server, from the ``xllamacpp`` wheel, as a process.

``xllamacpp`` embeds llama.cpp's C++ server (prebuilt, nothing compiles on install) but has
no command line: this module is one, so the dev stack and the tests can run the server as
a child process that a signal stops, like the broker and Redis::

    python -m controller.dev.llama_server --model PATH --port N --threads T
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import xllamacpp

from controller.dev.model_server import LLAMA_SERVER_MODULE


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The server's options: the few a small local model needs."""
    parser = argparse.ArgumentParser(prog=f"python -m {LLAMA_SERVER_MODULE}")
    parser.add_argument("--model", required=True, help="Path of the GGUF file.")
    parser.add_argument("--alias", default="", help="Model name the server answers to.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for inference.")
    parser.add_argument("--ctx-size", type=int, default=2048, help="Context window (tokens).")
    parser.add_argument("--parallel", type=int, default=1, help="Requests decoded at once.")
    return parser.parse_args(argv)


def server_params(options: argparse.Namespace) -> Any:
    """xllamacpp's ``CommonParams`` for the options (``Any``: the wheel ships no types)."""
    params = xllamacpp.CommonParams()
    params.model.path = options.model
    if options.alias:
        params.model_alias = {options.alias}
    params.hostnames = [options.host]
    params.port = options.port
    params.n_ctx = options.ctx_size
    params.n_parallel = options.parallel
    # Prompt processing gets the same count: on a shared CPU one more thread than there are
    # idle cores costs far more in waiting than it gains in parallel work.
    params.cpuparams.n_threads = options.threads
    params.cpuparams_batch.n_threads = options.threads
    params.ui = False
    return params


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; the server stops with its object."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = xllamacpp.Server(server_params(options))
    print(f"serving {options.model} at {server.listening_address}/v1", flush=True)
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
