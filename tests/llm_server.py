"""A real OpenAI-compatible server (llama.cpp's) on loopback, serving the packaged GGUF."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama_server(model: Path, port: int, alias: str = "m") -> subprocess.Popen[bytes]:
    """Start ``llama_cpp.server`` and return once it accepts connections."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError as e:
            if proc.poll() is not None:
                raise RuntimeError("llama_cpp.server exited at start") from e
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("llama_cpp.server did not start")
