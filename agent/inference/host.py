"""Starting and supervising the shared inference process from the worker's main process.

The worker does not register with LiveKit before the models are loaded (a job accepted
earlier would wait for them). If the inference process dies, jobs see retryable errors
(their turns fail over to the fallback voice or the apology) and it is started again with
a growing pause; it exits by itself when the worker is gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading

from agent.log import logger
from agent.models.shared.client import wait_ready
from agent.models.shared.protocol import Header
from agent.settings import Settings

RESTART_PAUSE_MAX_S = 30.0


def private_address() -> str:
    """A socket in a new directory only this user can open (``mkdtemp`` makes it 0700),
    unique per worker on the machine."""
    return os.path.join(tempfile.mkdtemp(prefix="voice-agent-inference-"), "inference.sock")


class InferenceHost:
    def __init__(self, settings: Settings, address: str, *, owns_directory: bool = False) -> None:
        self.settings = settings
        self.address = address
        self.owns_directory = owns_directory
        self.hello: Header = {}
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "agent", "inference", "--address", self.address]
        cmd += ["--parent", str(os.getpid())]
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    def start(self) -> Header:
        """Start the process and wait until its models answer; raises ``RuntimeError`` or
        ``TimeoutError`` when it cannot load them."""
        proc = self._proc = self._spawn()
        try:
            self.hello = wait_ready(
                self.address,
                self.settings.inference_start_timeout_s,
                alive=lambda: proc.poll() is None,
            )
        except BaseException:
            self.stop()
            raise
        logger.info("inference process ready", extra={"pid": proc.pid, "address": self.address})
        self._supervisor = threading.Thread(
            target=self._supervise, name="inference-supervisor", daemon=True
        )
        self._supervisor.start()
        return self.hello

    def _supervise(self) -> None:
        pause = 1.0
        while not self._stopping.is_set():
            assert self._proc is not None
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            logger.error(
                "inference process exited; restarting",
                extra={"exit_code": code, "restart_in_s": pause},
            )
            if self._stopping.wait(pause):
                return
            proc = self._proc = self._spawn()
            self.restarts += 1
            try:
                wait_ready(
                    self.address,
                    self.settings.inference_start_timeout_s,
                    alive=lambda p=proc: p.poll() is None,
                )
                logger.info("inference process back", extra={"pid": proc.pid})
                pause = 1.0
            except (RuntimeError, TimeoutError) as e:
                logger.error("inference process failed to start", extra={"error": str(e)})
                pause = min(pause * 2, RESTART_PAUSE_MAX_S)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.owns_directory:
            shutil.rmtree(os.path.dirname(self.address), ignore_errors=True)
