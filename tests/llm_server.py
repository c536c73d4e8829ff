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
    wait_for_port(proc, port, "llama_cpp.server")
    return proc


def wait_for_port(proc: subprocess.Popen[bytes], port: int, name: str, within: float = 60) -> None:
    """Return once ``proc`` accepts connections on ``port``; kill it if it never does."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError as e:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited at start") from e
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"{name} did not start")
