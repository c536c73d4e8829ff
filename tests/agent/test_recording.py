"""Session recordings: what the file holds (real models), when one is written at all, where,
for how long, and what a full destination does (fake engines: the recorder is real)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from agent.obs.metrics import RECORDINGS
from agent.recording.recorder import RecordingPolicy, recording_policy
from agent.recording.store import RecordingStore
from agent.session.config import SessionConfig
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.settings import Settings
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from plugins._common.audio import resample
from tests.audio_fixtures import speak, trim_silence, wer
from tests.fakes import Caller, FakeEngines, FakeSessions

RECORD = SessionConfig(recording=True)


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The recording as float samples, shape (channels, samples)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray() for f in container.decode(stream)]
        rate = stream.rate
    return np.concatenate(chunks, axis=1), rate


async def fake_call(
    policy: RecordingPolicy | None, config: SessionConfig | None, turns: list[str]
) -> tuple[VoiceManager, Any]:
    engines, caller = FakeEngines(), Caller()
    manager = VoiceManager(
        engines, instructions="Be brief.", sessions=FakeSessions(caller), recording=policy
    )
    speaker, mic = RecordingAudioOutput(), PacedAudioInput()
    entry = await manager.attach("alice", SessionIO(mic, speaker), config=config)
    entry.test_caller, entry.test_speaker, entry.test_mic = caller, speaker, mic  # for later
    for i, text in enumerate(turns, start=1):
        await caller.say(text)
        async with asyncio.timeout(20):
            await speaker.wait_for_segments(i)
            await speaker.wait_for_playout()
    return manager, entry


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_nothing_is_recorded_without_both_the_policy_and_the_request(
    tmp_path: Path,
) -> None:
    store = RecordingStore(tmp_path / "rec")
    cases = [
        (RecordingPolicy(store, "acme", allowed=True), None),  # allowed, not asked
        (RecordingPolicy(store, "acme", allowed=False), RECORD),  # asked, not allowed
        (None, RECORD),  # no recording at all in this room
    ]
    for policy, config in cases:
        manager, entry = await fake_call(policy, config, ["hello there"])
        assert entry.recording is None
        await manager.aclose()
        assert files_under(tmp_path / "rec") == []
    manager, entry = await fake_call(RecordingPolicy(store, "acme", allowed=True), RECORD, ["hi"])
    recording = entry.recording  # the manager lets go of it when the session ends
    await manager.aclose()
    audio, transcript = recording.files.audio, recording.files.transcript
    assert files_under(tmp_path / "rec") == sorted([audio, transcript])
    assert (
        audio.stat().st_mode & 0o777 == 0o600 and (tmp_path / "rec").stat().st_mode & 0o777 == 0o700
    )
    doc = json.loads(transcript.read_text())
    assert [t["speaker"] for t in doc["turns"]] == ["user", "agent"] and doc["complete"]


def test_the_tenants_policy_decides_before_the_workers_default(tmp_path: Path) -> None:
    settings = Settings(
        cache_path=tmp_path,
        recording_allowed=False,
        tenant_limits=json.dumps({"acme": {"recording": True}, "*": {}}),
    )
    assert recording_policy(settings, "acme").allowed
    assert not recording_policy(settings, "globex").allowed
    settings = Settings(cache_path=tmp_path, recording_allowed=True)
    policy = recording_policy(settings, "globex")
    assert policy.allowed and policy.store.root == tmp_path / "recordings"


def test_a_tenant_sees_its_own_recordings_only_and_retention_deletes_old_ones(
    tmp_path: Path,
) -> None:
    store = RecordingStore(tmp_path, retention_s=3600)
    acme, globex = store.create("acme"), store.create("globex")
    assert [f.id for f in store.list("acme")] == [acme.id]
    assert store.find("globex", acme.id) is None  # another tenant's id is simply absent
    assert store.find("acme", "../globex/" + globex.id) is None  # ids are not paths
    with pytest.raises(ValueError):
        store.list("..")
    old = store.create("acme")
    past = time.time() - 7200
    for path in (old.audio, old.transcript):
        os.utime(path, (past, past))
    assert store.sweep("acme") == 1
    assert [f.id for f in store.list("acme")] == [acme.id]  # the fresh one stays
    assert store.delete("acme", acme.id) and store.list("acme") == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a destination that fills up during a call."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_destination_stops_the_recording_and_never_the_call(
    small_disk: Path,
) -> None:
    failed_before = RECORDINGS.labels("failed")._value.get()
    # the audio stops once it has taken 12 KiB of the little space there is
    free = shutil.disk_usage(small_disk).free
    policy = RecordingPolicy(
        RecordingStore(small_disk), "acme", allowed=True, min_free_bytes=free - 12 * 1024
    )
    turns = [f"this is sentence number {n} of a longer call" for n in range(1, 4)]
    manager, entry = await fake_call(policy, RECORD, turns)
    try:
        recording = entry.recording
        # a noisy line (noise costs Opus many more bits than silence); the encoder writes in
        # 32 KiB blocks, so a few seconds of it fill one
        noise = (np.random.default_rng(1).normal(0, 3000, 16000 * 30)).astype(np.int16)
        line = asyncio.create_task(entry.test_mic.play(noise, 16000))
        async with asyncio.timeout(20):
            await recording.stopped.wait()
        caller, speaker = entry.test_caller, entry.test_speaker
        for n in range(4, 6):  # the call goes on after the gap
            await caller.say(f"this is sentence number {n} of a longer call")
            async with asyncio.timeout(20):
                await speaker.wait_for_segments(n)
                await speaker.wait_for_playout()
        assert RECORDINGS.labels("failed")._value.get() == failed_before + 1
        assert "alice" in manager.sessions  # the call went on
        doc = json.loads(recording.files.transcript.read_text())
        assert len(doc["gaps"]) == 1 and "free" in doc["gaps"][0]["reason"]
        gap_at = doc["gaps"][0]["at_s"]
        # turns after the gap are still in the transcript
        assert any(t["start_s"] > gap_at for t in doc["turns"]), doc
        audio, rate = decode(recording.files.audio)  # a valid file, ended at the gap
        assert 0.5 < audio.shape[1] / rate <= gap_at + 0.5
    finally:
        line.cancel()
        await manager.aclose()


@pytest.fixture
def nearly_full_disk(small_disk: Path) -> Path:
    (small_disk / "filler").write_bytes(bytes(480 * 1024))
    return small_disk


async def test_a_write_that_fails_ends_the_recording_and_never_the_call(
    nearly_full_disk: Path,
) -> None:
    # no space watch: the disk fills up under the encoder (ENOSPC on a page write)
    small_disk = nearly_full_disk
    failed_before = RECORDINGS.labels("failed")._value.get()
    policy = RecordingPolicy(RecordingStore(small_disk), "acme", allowed=True)
    manager, entry = await fake_call(policy, RECORD, ["hello there"])
    noise = (np.random.default_rng(2).normal(0, 3000, 16000 * 30)).astype(np.int16)
    line = asyncio.create_task(entry.test_mic.play(noise, 16000))
    try:
        recording = entry.recording
        async with asyncio.timeout(20):
            await recording.stopped.wait()  # the encoder's failed write is reported
        assert recording.failed
        assert RECORDINGS.labels("failed")._value.get() == failed_before + 1
        await entry.test_caller.say("are you still there")
        async with asyncio.timeout(20):
            await entry.test_speaker.wait_for_segments(2)  # and the call goes on
        assert "alice" in manager.sessions
    finally:
        line.cancel()
        await manager.aclose()


@pytest.mark.slow
async def test_a_two_turn_call_is_recorded_in_stereo_with_its_transcript(
    engines, whisper_stt, tmp_path: Path
) -> None:
    policy = RecordingPolicy(RecordingStore(tmp_path), "acme", allowed=True)
    manager = VoiceManager(engines, instructions="Answer in one short sentence.", recording=policy)
    mic, speaker = PacedAudioInput(), RecordingAudioOutput()
    questions = ["What is the capital of France?", "How many legs does a spider have?"]
    try:
        entry = await manager.attach("alice", SessionIO(mic, speaker), config=RECORD)
        recording = entry.recording
        silence = asyncio.create_task(mic.play_silence(0.5))
        await silence
        for i, question in enumerate(questions, start=1):
            await mic.play(trim_silence(speak(question, rate=16000)), 16000)
            pause = asyncio.create_task(mic.play_silence(60.0))
            async with asyncio.timeout(60):
                await speaker.wait_for_segments(i)
                await speaker.wait_for_playout()
            pause.cancel()
            await mic.play_silence(0.5)
    finally:
        await manager.aclose()
    files = recording.files
    doc = json.loads(files.transcript.read_text())
    turns = doc["turns"]
    assert [t["speaker"] for t in turns] == ["user", "agent", "user", "agent"], turns
    assert all(t["end_s"] is not None and t["start_s"] < t["end_s"] for t in turns), turns
    assert turns[0]["end_s"] <= turns[1]["start_s"] <= turns[2]["start_s"]

    audio, rate = decode(files.audio)
    assert audio.shape[0] == 2  # stereo: the caller left, the agent right
    assert abs(audio.shape[1] / rate - doc["duration_s"]) <= 0.5, (audio.shape, doc["duration_s"])

    def words(channel: int) -> str:
        return whisper_stt.transcribe_array(
            resample(audio[channel].astype(np.float32), rate, 16000)
        )

    said_by_user = " ".join(t["text"] for t in turns if t["speaker"] == "user")
    said_by_agent = " ".join(t["text"] for t in turns if t["speaker"] == "agent")
    assert wer(" ".join(questions), words(0)) <= 0.2, words(0)
    assert wer(said_by_agent, words(1)) <= 0.2, (said_by_agent, words(1))
    assert wer(said_by_user, " ".join(questions)) <= 0.2  # the transcript heard the caller too
    # each turn sits where it was said: the agent's first reply is on the right channel there
    first = turns[1]
    loud = np.abs(audio[1, int(first["start_s"] * rate) : int(first["end_s"] * rate)]).mean()
    quiet = np.abs(audio[1, : int(turns[0]["end_s"] * rate)]).mean()
    assert loud > 10 * quiet


async def test_the_api_lists_fetches_and_deletes_a_tenants_own_recordings(
    tmp_path: Path,
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from agent.http.api import build_app
    from agent.http.runtime import build_context
    from tests.auth.tokens import AUDIENCE, HS_SECRET, ISSUER, hs256

    settings = Settings(
        cache_path=tmp_path,
        auth_jwt_secret=HS_SECRET,
        auth_audience=AUDIENCE,
        auth_issuer=ISSUER,
    )
    store = RecordingStore(tmp_path / "recordings")
    mine, theirs = store.create("acme"), store.create("globex")
    mine.transcript.write_text(
        json.dumps({"participant": "alice", "turns": [{}], "complete": True})
    )
    mine.audio.write_bytes(b"OggS" + bytes(100))
    acme = {"Authorization": f"Bearer {hs256(tenant='acme')}"}
    async with TestClient(TestServer(build_app(build_context(settings)))) as client:
        listing = await (await client.get("/v1/recordings", headers=acme)).json()
        assert [r["id"] for r in listing["recordings"]] == [mine.id]
        assert listing["recordings"][0]["participant"] == "alice"
        doc = await (await client.get(f"/v1/recordings/{mine.id}", headers=acme)).json()
        assert doc["participant"] == "alice"
        audio = await client.get(f"/v1/recordings/{mine.id}/audio", headers=acme)
        assert audio.status == 200 and audio.headers["Content-Type"] == "audio/ogg"
        assert (await audio.read()).startswith(b"OggS")
        # another tenant's recording does not exist for acme; nor does a path
        for path in (
            f"/v1/recordings/{theirs.id}",
            f"/v1/recordings/{theirs.id}/audio",
            "/v1/recordings/..%2Fglobex%2F" + theirs.id,
        ):
            got = await client.get(path, headers=acme)
            assert got.status == 404, path
        assert (await client.delete(f"/v1/recordings/{theirs.id}", headers=acme)).status == 404
        assert (await client.get("/v1/recordings")).status == 401
        gone = await (await client.delete(f"/v1/recordings/{mine.id}", headers=acme)).json()
        assert gone == {"id": mine.id, "deleted": True}
        assert not mine.audio.exists() and theirs.audio.exists()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """moto's S3 server on loopback: a real S3 API, in memory."""
    from tests.llm_server import free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(proc, port, "the S3 server", within=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def s3_archive(endpoint: str, bucket: str) -> Any:
    from agent.recording.archive import S3Archive, S3Options

    archive = S3Archive(
        S3Options(
            bucket, endpoint, "us-east-1", "calls/", access_key_id="test", secret_access_key="test"
        )
    )
    return archive


async def test_recordings_are_kept_in_an_s3_bucket_and_served_from_it(
    s3_server: str, tmp_path: Path
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from agent.http.api import build_app
    from agent.http.runtime import build_context
    from tests.auth.tokens import AUDIENCE, HS_SECRET, ISSUER, hs256

    archive = s3_archive(s3_server, "voice-calls")
    await asyncio.to_thread(archive._client.create_bucket, Bucket="voice-calls")
    policy = RecordingPolicy(RecordingStore(tmp_path), "acme", allowed=True, archive=archive)
    manager, entry = await fake_call(policy, RECORD, ["hello there"])
    recording = entry.recording
    await manager.aclose()
    # uploaded, then the local copy went
    assert not recording.files.audio.exists() and not recording.files.transcript.exists()
    listed = await asyncio.to_thread(
        archive._client.list_objects_v2, Bucket="voice-calls", Prefix="calls/acme/"
    )
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == [f"calls/acme/{recording.files.id}.json", f"calls/acme/{recording.files.id}.ogg"]

    settings = Settings(
        cache_path=tmp_path,
        auth_jwt_secret=HS_SECRET,
        auth_audience=AUDIENCE,
        auth_issuer=ISSUER,
        recording_s3_bucket="voice-calls",
        recording_s3_endpoint_url=s3_server,
        recording_s3_region="us-east-1",
        recording_s3_prefix="calls/",
        recording_s3_access_key_id="test",
        recording_s3_secret_access_key="test",
    )
    acme = {"Authorization": f"Bearer {hs256(tenant='acme')}"}
    globex = {"Authorization": f"Bearer {hs256(tenant='globex')}"}
    rid = recording.files.id
    async with TestClient(TestServer(build_app(build_context(settings)))) as client:
        listing = await (await client.get("/v1/recordings", headers=acme)).json()
        assert listing == {"recordings": [{"id": rid}]}
        assert (await (await client.get("/v1/recordings", headers=globex)).json()) == {
            "recordings": []
        }
        doc = await (await client.get(f"/v1/recordings/{rid}", headers=acme)).json()
        assert [t["speaker"] for t in doc["turns"]] == ["user", "agent"]
        audio = await client.get(f"/v1/recordings/{rid}/audio", headers=acme)
        ogg = await audio.read()
        assert audio.status == 200 and ogg.startswith(b"OggS")
        assert (await client.get(f"/v1/recordings/{rid}/audio", headers=globex)).status == 404
        assert (await client.delete(f"/v1/recordings/{rid}", headers=globex)).status == 404
        assert (await client.delete(f"/v1/recordings/{rid}", headers=acme)).status == 200
        assert (await client.get(f"/v1/recordings/{rid}", headers=acme)).status == 404


async def test_an_unreachable_bucket_keeps_the_recording_on_disk(tmp_path: Path) -> None:
    from tests.llm_server import free_port

    archive = s3_archive(f"http://127.0.0.1:{free_port()}", "nowhere")  # nothing listens
    policy = RecordingPolicy(RecordingStore(tmp_path), "acme", allowed=True, archive=archive)
    manager, entry = await fake_call(policy, RECORD, ["hello there"])
    recording = entry.recording
    await manager.aclose()
    assert recording.files.audio.stat().st_size > 0 and recording.files.transcript.exists()
