"""Rooms as threads of one process (JOB_EXECUTOR=thread): a worker started so answers a
caller in a room like the process executor does."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.audio_fixtures import cer, speak
from tests.livekit_server import LiveKitTestServer
from tests.room.worker import agent_joined, dispatch, join, start_worker, stop_worker

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]


async def test_a_worker_running_jobs_as_threads_answers_in_a_room(
    lk_server: LiveKitTestServer, cache_dir, whisper_stt
) -> None:
    worker = await start_worker(lk_server, cache_dir, JOB_EXECUTOR="thread", AGENT_NAME="threads")
    tenant = f"threads{os.getpid()}"
    room = f"{tenant}-call"
    alice = await join(lk_server, "alice", room)
    try:
        await dispatch(worker, tenant, room)
        await agent_joined(lk_server, room)
        track = await alice.wait_for(alice.reply_track, within=60)
        _, ended = await alice.say(speak("What is the capital of France?"))
        texts = await alice.wait_for(lambda: alice.agent_transcripts(ended), within=90)
        await alice.wait_for(lambda: track.quiet_since(ended, 1.0), within=90)
        heard = whisper_stt.transcribe_array(track.audio(ended).astype(np.float32) / 32768.0)
        # a short reply: one misheard word is a third of it ("France is" / "Francis")
        # a six-word reply: one misheard name is a third of its words ("Francis Peritz"
        # for "France is Paris" once), so what was heard is compared by characters
        assert cer(texts[0].body, heard) <= 0.3, (texts[0].body, heard)
    finally:
        await alice.leave()
        await stop_worker(worker)
