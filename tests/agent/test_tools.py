"""Tools end to end against real servers on loopback: an OpenAI-compatible LLM that calls the
tool and then answers from its result (tests/chat_server.py), a recording HTTP tool service
(tests/tool_server.py) and an MCP server of the ``mcp`` package (tests/mcp_server.py).

Voice turns run on the fake STT/TTS/VAD (tests/fakes.py): what is under test is the tool
path between the transcript and the spoken reply, which those engines do not touch."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit.agents.llm import ToolError

from agent.models.engines import Engines
from agent.models.resilience import ResilientLLM
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.settings import Settings
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from agent.tools.box import RoomTools
from agent.tools.guard import AddressGuard
from agent.tools.spec import OPERATOR, ToolSpecError
from plugins.llama import openai_compatible
from tests.chat_server import RecordingChatServer
from tests.fakes import Caller, FakeEngines, FakeSessions
from tests.llm_server import free_port, wait_for_port
from tests.tool_server import ToolServer

REPO = Path(__file__).resolve().parents[2]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 1}},
    "required": ["city"],
    "additionalProperties": False,
}


def weather_tool(base: str, path: str = "/weather", **extra: Any) -> dict[str, Any]:
    return {
        "name": extra.pop("name", "get_weather"),
        "description": "The current weather in a city",
        "parameters": WEATHER_SCHEMA,
        "url": base + path,
        **extra,
    }


@pytest.fixture
async def chat() -> AsyncIterator[RecordingChatServer]:
    server = await RecordingChatServer("Happy to help.").start()
    yield server
    await server.close()


@pytest.fixture
async def service() -> AsyncIterator[ToolServer]:
    server = await ToolServer().start()
    yield server
    await server.close()


def settings_for(
    chat: RecordingChatServer, service: ToolServer, tools: list, **kw: Any
) -> Settings:
    values: dict[str, Any] = {
        "llm_base_url": chat.url,
        "llm_model": "m",
        "tools": json.dumps(tools),
        "tools_allowed_hosts": f"127.0.0.1:{service.port}",
        "tool_filler_after_s": 0.0,
        "builtin_tools": "end_call",
        **kw,
    }
    return Settings.from_env(
        {Settings.__dataclass_fields__[k].metadata["env"]: str(v) for k, v in values.items()}
    )


def text_manager(settings: Settings, chat: RecordingChatServer, **kw: Any) -> VoiceManager:
    model = ResilientLLM(openai_compatible(base_url=chat.url, model="m", timeout_s=10.0))
    engines = Engines(settings, llm=model, clip_store=None)
    return VoiceManager(engines, instructions="Be brief.", tools=RoomTools.for_room(settings), **kw)


def voice_manager(
    settings: Settings, chat: RecordingChatServer
) -> tuple[FakeEngines, Caller, VoiceManager]:
    """A voice session's manager on the fake STT/TTS/VAD with the real LLM endpoint."""
    engines, caller = FakeEngines(settings), Caller()
    engines.fake_llm = ResilientLLM(  # type: ignore[assignment]
        openai_compatible(base_url=chat.url, model="m", timeout_s=10.0)
    )
    tools = RoomTools.for_room(settings)
    manager = VoiceManager(
        engines, instructions="Be brief.", sessions=FakeSessions(caller), tools=tools
    )
    return engines, caller, manager


async def spoken_after(engines: FakeEngines, speaker: RecordingAudioOutput, replies: int) -> str:
    async with asyncio.timeout(20):
        await speaker.wait_for_segments(replies)
        await speaker.wait_for_playout()
    return " ".join(" ".join(v.spoken) for v in engines.fake_voices)


async def test_a_text_turn_calls_the_http_tool_with_validated_arguments(
    chat: RecordingChatServer, service: ToolServer
) -> None:
    book = {
        "name": "book_table",
        "description": "Book a table",
        "parameters": {
            "type": "object",
            "properties": {"people": {"type": "integer", "minimum": 1, "maximum": 12}},
            "required": ["people"],
        },
        "url": service.base + "/book",
        "method": "POST",
        "headers": {"Authorization": "env:TEST_TOOL_TOKEN", "X-Source": "voice"},
    }
    settings = settings_for(chat, service, [weather_tool(service.base), book])
    manager = text_manager(settings, chat)
    chat.tool_calls = [("get_weather", {"city": "Paris"}), ("book_table", {"people": 4})]
    import os

    os.environ["TEST_TOOL_TOKEN"] = "Bearer sekret"
    try:
        reply = await manager.reply_to_text("alice", "What's the weather in Paris?")
        assert "sunny" in reply and "Paris" in reply
        got = service.received[0]
        assert (got.method, got.path, got.query) == ("GET", "/weather", {"city": "Paris"})
        # the LLM saw the tools' schemas, and the tool's answer as its result
        names = [t["function"]["name"] for t in chat.tools[0]]
        assert names == ["get_weather", "book_table", "end_call"]
        assert chat.tools[0][0]["function"]["parameters"]["required"] == ["city"]
        assert chat.requests[1][-1]["role"] == "tool" and "sunny" in chat.requests[1][-1]["content"]

        reply = await manager.reply_to_text("alice", "A table for four, please.")
        assert "booked" in reply
        got = service.received[1]
        assert (got.method, got.path, got.body) == ("POST", "/book", {"people": 4})
        assert got.headers["Authorization"] == "Bearer sekret"  # read from the environment
        assert got.headers["X-Source"] == "voice"
    finally:
        os.environ.pop("TEST_TOOL_TOKEN", None)
        await manager.aclose()


async def test_a_voice_turn_calls_the_tool_and_speaks_the_result(
    chat: RecordingChatServer, service: ToolServer
) -> None:
    settings = settings_for(chat, service, [weather_tool(service.base)])
    engines, caller, manager = voice_manager(settings, chat)
    chat.tool_calls = [("get_weather", {"city": "Oslo"})]
    try:
        speaker = RecordingAudioOutput()
        await manager.attach("alice", SessionIO(PacedAudioInput(), speaker))
        await caller.say("what is the weather in oslo")
        spoken = await spoken_after(engines, speaker, 1)
        assert "sunny" in spoken and "Oslo" in spoken
        assert [r.query for r in service.received] == [{"city": "Oslo"}]
    finally:
        await manager.aclose()


async def test_invalid_arguments_a_timeout_and_a_500_are_explained_and_the_session_goes_on(
    chat: RecordingChatServer, service: ToolServer
) -> None:
    tools = [
        weather_tool(service.base),
        weather_tool(service.base, "/slow", name="slow_weather", timeout_s=0.5),
        weather_tool(service.base, "/fail", name="broken_weather"),
    ]
    settings = settings_for(chat, service, tools)
    engines, caller, manager = voice_manager(settings, chat)
    chat.tool_calls = [
        ("get_weather", {"town": 3}),  # not the schema: never requested
        ("slow_weather", {"city": "Rome"}),
        ("broken_weather", {"city": "Lima"}),
        ("get_weather", {"city": "Kyiv"}),
    ]
    try:
        speaker = RecordingAudioOutput()
        attached = await manager.attach("alice", SessionIO(PacedAudioInput(), speaker))
        explanations = ["invalid arguments", "did not answer within 0.5 s", "HTTP 500"]
        for turn, expected in enumerate(explanations, start=1):
            await caller.say(f"question number {turn}")
            spoken = await spoken_after(engines, speaker, turn)
            assert expected in spoken, spoken
        assert [r.path for r in service.received] == ["/slow", "/fail"]
        # the session is still there and the next tool call works
        await caller.say("and the weather in kyiv")
        spoken = await spoken_after(engines, speaker, 4)
        assert "sunny" in spoken and "Kyiv" in spoken
        assert manager.sessions["alice"] is attached
    finally:
        await manager.aclose()


async def test_tools_never_reach_link_local_or_unlisted_loopback_addresses(
    chat: RecordingChatServer, service: ToolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a tripwire under the guard: record every connection the process tries to open
    targets: list[tuple[str, int]] = []
    loop = asyncio.get_running_loop()
    real_connect = loop.sock_connect  # where aiohttp's connections are opened

    async def connect(sock: Any, address: Any) -> Any:
        targets.append((str(address[0]), int(address[1])))
        if address[0] not in ("127.0.0.1", "::1"):
            raise OSError("the test allows loopback only")
        return await real_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", connect)
    tools = [
        weather_tool("http://169.254.169.254", "/latest/meta-data", name="metadata"),
        weather_tool(f"http://127.0.0.1:{service.port}", "/weather", name="unlisted"),
        weather_tool(service.base, "/redirect", name="redirected"),
    ]
    # only the redirecting tool's host:port is allowed, and only with another port
    settings = settings_for(chat, service, tools, tools_allowed_hosts="127.0.0.1:1")
    manager = text_manager(settings, chat)
    try:
        chat.tool_calls = [("metadata", {"city": "x"}), ("unlisted", {"city": "x"})]
        for _ in range(2):
            reply = await manager.reply_to_text("alice", "look it up")
            assert "not reachable from here" in reply
        # both refused before any connection was opened (the LLM's own aside)
        assert [t for t in targets if t[1] != chat.port] == []
        assert service.received == []  # the unlisted loopback service was never asked
    finally:
        await manager.aclose()
    # allowed host: its redirect to the metadata address is refused at the hop
    settings = settings_for(chat, service, tools)
    manager = text_manager(settings, chat)
    try:
        chat.tool_calls = [("redirected", {"city": "x"})]
        reply = await manager.reply_to_text("alice", "look it up")
        assert "not reachable from here" in reply
        assert [r.path for r in service.received] == ["/redirect"]
        hops = [t for t in targets if t[1] != chat.port]
        assert hops == [("127.0.0.1", service.port)]  # the first hop only
    finally:
        await manager.aclose()
    assert all(host == "127.0.0.1" for host, _ in targets)


@pytest.fixture
def mcp_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port, log = free_port(), tmp_path / "mcp-calls.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_server", "--port", str(port), "--log", str(log)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(proc, port, "the MCP server", within=30)
        yield f"http://127.0.0.1:{port}/mcp", log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_an_mcp_tool_is_listed_and_called(
    chat: RecordingChatServer, service: ToolServer, mcp_server: tuple[str, Path]
) -> None:
    url, log = mcp_server
    port = url.split(":")[2].split("/")[0]
    settings = settings_for(
        chat, service, [], mcp_servers=json.dumps([url]), tools_allowed_hosts=f"127.0.0.1:{port}"
    )
    manager = text_manager(settings, chat)
    chat.tool_calls = [("order_status", {"order_id": "A-17"})]
    try:
        reply = await manager.reply_to_text("alice", "Where is my order A-17?")
        assert "Order A-17 ships tomorrow" in reply
        names = [t["function"]["name"] for t in chat.tools[0]]
        assert "order_status" in names
        assert [json.loads(line) for line in log.read_text().splitlines()] == [
            {"tool": "order_status", "order_id": "A-17"}
        ]
    finally:
        await manager.aclose()
    # not allowed: the server is never asked, the session starts without its tools
    log.unlink()
    settings = settings_for(chat, service, [], mcp_servers=json.dumps([url]))
    manager = text_manager(settings, chat)
    try:
        reply = await manager.reply_to_text("bob", "hello")
        assert reply.strip() == "Happy to help."
        assert "order_status" not in [t["function"]["name"] for t in chat.tools[-1]]
        assert not log.exists()
    finally:
        await manager.aclose()


async def test_end_call_says_goodbye_then_ends_the_session(
    chat: RecordingChatServer, service: ToolServer
) -> None:
    settings = settings_for(chat, service, [])
    engines, caller, manager = voice_manager(settings, chat)
    chat.tool_calls = [("end_call", {})]
    chat.tool_reply_prefix = "Goodbye, and thanks for calling. "
    ended: list[str | None] = []
    manager.on("session_detached", lambda entry: ended.append(entry.close_reason))
    try:
        speaker = RecordingAudioOutput()
        attached = await manager.attach("alice", SessionIO(PacedAudioInput(), speaker))
        await caller.say("that is all thank you bye")
        async with asyncio.timeout(20):
            await attached.closed.wait()
        assert ended == ["end_call"]
        assert "Goodbye" in " ".join(engines.fake_voices[-1].spoken)
        assert "alice" not in manager.sessions
    finally:
        await manager.aclose()


def test_declarations_are_checked_and_participants_cannot_add_tools() -> None:
    settings = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="m")
    bad = [
        ([{"name": "x"}], "description"),
        ([weather_tool("file:///etc/passwd")], "http"),
        ([weather_tool("http://a.example", parameters={"type": "string"})], "type object"),
        (
            [weather_tool("http://a.example", headers={"Authorization": "env:LIVEKIT_API_SECRET"})],
            "tool_secrets",
        ),
        ([weather_tool("http://a.example", name="end_call")], "built-in"),
        ([weather_tool("http://a.example")] * 2, "declared twice"),
    ]
    for tools, words in bad:
        with pytest.raises(ToolSpecError, match=words):
            RoomTools.for_room(settings, metadata_tools=tools)
    # a participant's config message has no tools key at all
    from agent.session.config import ConfigError, parse_config
    from plugins.smart_turn import HybridTurnOptions

    with pytest.raises(ConfigError) as e:
        parse_config({"tools": [weather_tool("http://a.example")]}, HybridTurnOptions())
    assert e.value.code == "unknown_field"


def counted(kind: str, outcome: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("voice_tool_calls_total", {"kind": kind, "outcome": outcome})
    return value or 0.0


async def test_a_slow_tool_gets_a_filler_and_calls_are_counted_and_logged_without_arguments(
    chat: RecordingChatServer, service: ToolServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    service.slow_s = 1.0
    tool = weather_tool(service.base, "/slow", name="slow_weather", timeout_s=5)
    settings = settings_for(chat, service, [tool], tool_filler_after_s=0.3)
    engines, caller, manager = voice_manager(settings, chat)
    chat.tool_calls = [("slow_weather", {"city": "Quito"})]
    before = counted("http", "ok")
    caplog.set_level(logging.INFO, logger="agent")
    try:
        speaker = RecordingAudioOutput()
        await manager.attach("alice", SessionIO(PacedAudioInput(), speaker))
        await caller.say("the weather in quito please")
        spoken = await spoken_after(engines, speaker, 2)  # the filler, then the answer
        assert spoken.index("One moment, let me check.") < spoken.index("late")
        assert counted("http", "ok") == before + 1
        # the filler is not part of the conversation the LLM sees
        assert not any("One moment" in json.dumps(m) for m in chat.requests[-1])
    finally:
        await manager.aclose()
    records = [r for r in caplog.records if r.getMessage() == "tool called"]
    assert [r.__dict__.get("tool") for r in records] == ["slow_weather"]
    assert "Quito" not in repr(records[0].__dict__)  # the caller's words stay out of logs


def test_simulate_runs_a_tool_call_end_to_end(tmp_path: Path) -> None:
    async def run() -> tuple[int, str, list[Any]]:
        chat, service = await RecordingChatServer().start(), await ToolServer().start()
        chat.tool_calls = [("get_weather", {"city": "Paris"})]
        env = {
            **__import__("os").environ,
            "LLM_BASE_URL": chat.url,
            "LLM_MODEL": "m",
            "TOOLS": json.dumps([weather_tool(service.base)]),
            "TOOLS_ALLOWED_HOSTS": f"127.0.0.1:{service.port}",
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agent",
                "simulate",
                "--config",
                '{"audio": false}',
                "--text",
                "What is the weather in Paris?",
                env=env,
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
            return proc.returncode or 0, out.decode(), [r.query for r in service.received]
        finally:
            await chat.close()
            await service.close()

    code, out, queries = asyncio.run(run())
    assert code == 0
    assert "sunny" in json.loads(out.strip().splitlines()[-1])["reply"]
    assert queries == [{"city": "Paris"}]


def test_dispatch_metadata_tools_follow_the_tenants_policy() -> None:
    from agent.worker.dispatch import DispatchMetadata, MetadataError

    policy = {
        "acme": {
            "tools": [weather_tool("https://weather.example.com", name="acme_weather")],
            "tool_secrets": ["ACME_CRM_TOKEN"],
        },
        "*": {},
    }
    settings = Settings(
        llm_base_url="http://127.0.0.1:9/v1",
        llm_model="m",
        tenant_limits=json.dumps(policy),
        tools=json.dumps([weather_tool("https://weather.example.com")]),
    )
    settings.validate()
    crm = weather_tool(
        "https://crm.example.com", name="crm", headers={"Authorization": "env:ACME_CRM_TOKEN"}
    )
    meta = DispatchMetadata.parse(json.dumps({"tools": [crm]}))
    # operator's, then the tenant policy's, then the dispatch's
    names = [t.name for t in meta.room_tools(settings, "acme").http]
    assert names == ["get_weather", "acme_weather", "crm"]
    with pytest.raises(MetadataError, match="tool_secrets"):
        meta.room_tools(settings, "globex")  # another tenant may not read acme's secret
    shadow = DispatchMetadata.parse(json.dumps({"tools": [weather_tool("https://x.example")]}))
    with pytest.raises(MetadataError, match="declared twice"):
        shadow.room_tools(settings, "acme")  # no replacing the operator's get_weather
    with pytest.raises(MetadataError, match="must be a list"):
        DispatchMetadata.parse(json.dumps({"tools": {"name": "x"}}))


async def test_the_guard_judges_resolved_addresses_not_names() -> None:
    from agent.tools.guard import AddressGuard, BlockedAddressError, GuardedResolver, is_public

    assert is_public("93.184.216.34") and is_public("2606:4700::1111")  # judged, never dialled
    for private in (
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "0.0.0.0",
    ):
        assert not is_public(private), private
    # a name that resolves to loopback is refused at lookup time, unless its host is listed
    with pytest.raises(BlockedAddressError):
        await GuardedResolver(AddressGuard()).resolve("localhost", 8080)
    found = await GuardedResolver(AddressGuard(["localhost:8080"])).resolve("localhost", 8080)
    assert {r["host"] for r in found} <= {"127.0.0.1", "::1"}
    with pytest.raises(BlockedAddressError):
        await GuardedResolver(AddressGuard(["localhost:8080"])).resolve("localhost", 9090)
    with pytest.raises(BlockedAddressError):
        await AddressGuard().check_resolved("http://localhost:8080/mcp")
    with pytest.raises(ValueError):
        AddressGuard(["http://x/"])


async def test_arguments_are_logged_only_when_the_operator_asks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    from types import SimpleNamespace

    from agent.tools.http_tool import HttpTool
    from agent.tools.runner import CallPolicy, instrumented
    from agent.tools.spec import parse_tools

    (spec,) = parse_tools([weather_tool("https://weather.example.com")], "TOOLS", OPERATOR)
    check = HttpTool(spec, AddressGuard())  # invalid arguments: refused before any request
    context = SimpleNamespace(session=SimpleNamespace(tts=None))
    caplog.set_level(logging.INFO, logger="agent")
    for log_arguments in (False, True):
        tool = instrumented(
            spec.function_schema(),
            "http",
            lambda a, _c: check.call(a),
            CallPolicy(log_arguments=log_arguments),
        )
        with pytest.raises(ToolError):
            await tool({"city": 12345678}, context)
    quiet, loud = [r.__dict__ for r in caplog.records if r.getMessage() == "tool called"]
    assert quiet["outcome"] == loud["outcome"] == "invalid_arguments"
    assert "12345678" not in repr(quiet)
    assert loud["arguments"] == {"city": 12345678} and "12345678" in loud["error"]


async def test_answers_are_capped_and_tools_can_come_from_a_file(
    chat: RecordingChatServer, service: ToolServer, tmp_path: Path
) -> None:
    from agent.tools.http_tool import HttpTool
    from agent.tools.spec import HttpToolSpec

    spec = HttpToolSpec("big", "A big answer", {"type": "object"}, service.base + "/big")
    allowed = AddressGuard([f"127.0.0.1:{service.port}"])
    text = await HttpTool(spec, allowed, max_response_bytes=1000).call({})
    assert text.endswith("[truncated]") and len(text) < 1100  # 100 000 bytes were sent

    declared = tmp_path / "tools.json"
    declared.write_text(json.dumps([weather_tool(service.base)]))
    settings = Settings.from_env(
        {"LLM_BASE_URL": chat.url, "LLM_MODEL": "m", "TOOLS": f"@{declared}"}
    )
    assert [t.name for t in RoomTools.for_room(settings).http] == ["get_weather"]
    with pytest.raises(Exception, match="cannot read"):
        Settings.from_env({"TOOLS": f"@{tmp_path / 'missing.json'}"})
