"""Generated input for every parser that takes outside input: a structured error or a
success, never an unhandled exception, and nothing changed on error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.session.config import ConfigError, parse_config
from agent.worker.dispatch import DispatchMetadata, MetadataError
from auth.errors import InvalidTokenError
from auth.tokens import TokenConfig, TokenVerifier
from plugins.smart_turn import HybridTurnOptions
from tests.auth.tokens import HS_SECRET, hs256

pytestmark = pytest.mark.fuzz
CASES = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BASE_TURN = HybridTurnOptions()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
config_keys = st.sampled_from(
    [
        "audio",
        "noise_filter",
        "llm",
        "tts",
        "turn",
        "voice",
        "speed",
        "instructions",
        "threshold",
        "decision_pause",
        "silence_timeout",
        "min_speech",
    ]
)
# objects shaped like the real messages, with wrong and right values mixed in
config_like = st.recursive(
    json_values,
    lambda children: st.dictionaries(config_keys, children, max_size=5),
    max_leaves=15,
)
raw_inputs = st.one_of(
    json_values.map(json.dumps),
    config_like.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
)


@CASES
@given(raw_inputs)
def test_config_messages(raw: Any) -> None:
    try:
        config = parse_config(raw, BASE_TURN)
    except ConfigError as e:
        assert e.code in {
            "invalid_json",
            "invalid_type",
            "invalid_value",
            "unknown_field",
            "too_large",
        }
        assert set(e.as_dict()) == {"code", "message", "field"}
        return
    assert config.turn is None or 0 <= config.turn.threshold <= 1


@CASES
@given(raw_inputs)
def test_dispatch_metadata(raw: Any) -> None:
    try:
        meta = DispatchMetadata.parse(raw)
    except MetadataError:
        return
    assert meta.instructions is None or isinstance(meta.instructions, str)


_VERIFIER = TokenVerifier(TokenConfig(hs256_secret=HS_SECRET))
_VALID = hs256(aud=None, iss=None)


@st.composite
def token_like(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.text(max_size=300))
    parts = _VALID.split(".")
    if kind == 1:  # one part replaced by noise
        i = draw(st.integers(0, 2))
        parts[i] = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_=", max_size=80))
        return ".".join(parts)
    if kind == 2:  # a byte flipped somewhere
        i = draw(st.integers(0, len(_VALID) - 1))
        c = draw(st.sampled_from("AbZz09-_."))
        return _VALID[:i] + c + _VALID[i + 1 :]
    return ".".join(draw(st.lists(st.text(max_size=30), min_size=1, max_size=5)))


@CASES
@given(token_like())
def test_tokens(token: str) -> None:
    try:
        identity = _VERIFIER.verify(token)
    except InvalidTokenError:
        return
    assert token == _VALID or identity.tenant == "acme"


class _Transport:
    def __init__(self) -> None:
        self.data: list[tuple[str, Any, list[str]]] = []

    async def send_text(self, text: str, *, topic: str, to: list[str]) -> None:
        self.data.append((topic, text, to))

    async def send_data(self, payload: dict[str, Any], *, topic: str, to: list[str]) -> None:
        self.data.append((topic, payload, to))


relay_inputs = st.one_of(
    raw_inputs,
    st.fixed_dictionaries(
        {
            "to": st.one_of(json_values, st.lists(st.text(max_size=10), max_size=40)),
            "data": json_values,
        }
    ).map(json.dumps),
)


@CASES
@given(relay_inputs)
def test_relay_messages(raw: Any) -> None:
    from agent.session.control import ControlChannel

    transport = _Transport()
    control = ControlChannel(None, transport, BASE_TURN)  # type: ignore[arg-type]
    event = asyncio.run(control.on_relay("bob", raw))
    topics = [t for t, _, _ in transport.data]
    if event is None:  # forwarded once, to the addressed participants only
        assert topics == ["agent.relay"]
        _, payload, to = transport.data[0]
        assert payload["from"] == "bob" and to and all(isinstance(t, str) for t in to)
    else:
        assert event["type"] == "error" and topics == ["agent.events"]


class _HttpHarness:
    """One in-process API server for all examples (a real aiohttp app on loopback)."""

    def __init__(self) -> None:
        import tempfile
        from pathlib import Path

        from aiohttp.test_utils import TestClient, TestServer

        from agent.http.api import build_app
        from agent.http.runtime import build_context
        from agent.settings import Settings

        self.loop = asyncio.new_event_loop()
        ctx = build_context(
            Settings(cache_path=Path(tempfile.mkdtemp()), auth_jwt_secret=HS_SECRET)
        )

        async def speaker(text: str, speed: float | None) -> tuple[bytes, int, int]:
            return b"\x00\x00" * 160, 16000, 1

        async def dispatcher(room: str, metadata: str) -> str:
            json.loads(metadata)  # what the worker will parse must be JSON
            return "AD_fuzz"

        ctx.speaker, ctx.dispatcher = speaker, dispatcher
        self.client = TestClient(TestServer(build_app(ctx)), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())
        self.headers = {"Authorization": f"Bearer {hs256(aud=None, iss=None)}"}

    def post(self, path: str, body: bytes) -> int:
        async def go() -> int:
            resp = await self.client.post(path, data=body, headers=self.headers)
            await resp.read()
            return resp.status

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def http() -> Iterator[_HttpHarness]:
    harness = _HttpHarness()
    yield harness
    harness.close()


body_inputs = st.one_of(
    raw_inputs.map(lambda r: r if isinstance(r, bytes) else r.encode("utf-8", "surrogatepass")),
    st.fixed_dictionaries(
        {},
        optional={
            "text": json_values,
            "tts": json_values,
            "room": json_values,
            "instructions": json_values,
            "participant": json_values,
        },
    ).map(lambda d: json.dumps(d).encode()),
)


@CASES
@given(st.sampled_from(["/v1/speak", "/v1/dispatch"]), body_inputs)
def test_http_bodies(http: _HttpHarness, path: str, body: bytes) -> None:
    status = http.post(path, body)
    assert status in (200, 400, 413), (path, body[:80], status)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_inputs)
def test_a_bad_config_message_changes_no_session(raw: Any) -> None:
    """Applied to a live text session: an error leaves its config exactly as it was."""
    import tempfile
    from pathlib import Path

    from livekit.agents import llm

    from agent.models.engines import Engines
    from agent.session.control import ControlChannel
    from agent.session.voice_manager import VoiceManager
    from agent.settings import Settings

    try:
        update = parse_config(raw, BASE_TURN)
        if update.audio is True:
            return  # a valid switch to audio is the mode-switch test's business
    except ConfigError:
        pass

    class NeverCalledLLM(llm.LLM):
        def chat(self, **kwargs: Any) -> Any:
            raise AssertionError("config handling must not call the LLM")

    async def run() -> None:
        engines = Engines(
            Settings(cache_path=Path(tempfile.mkdtemp())), llm=NeverCalledLLM(), clip_store=None
        )
        manager = VoiceManager(engines, instructions="x")
        transport = _Transport()
        control = ControlChannel(manager, transport, BASE_TURN)
        await control.on_config("bob", '{"audio": false}')
        before = manager.sessions["bob"].config
        event = await control.on_config("bob", raw)
        after = manager.sessions["bob"].config
        await manager.aclose()
        if event["type"] == "error":
            assert after == before
        assert engines.loaded() <= {"llm"}  # no audio engine, whatever the message

    asyncio.run(run())
