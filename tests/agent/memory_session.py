"""One text turn in a process of its own, as a worker's job process would run it.

    python -m tests.agent.memory_session CACHE_PATH LLM_URL TENANT IDENTITY TEXT [REDIS_URL]

The session remembers through the same code as the worker (``Engines.session_memory``),
and its LLM is the test's recording server; prints the reply.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.models.engines import Engines
from agent.models.resilience import ResilientLLM
from agent.session.voice_manager import VoiceManager
from agent.settings import Settings
from plugins.llama import openai_compatible


async def main(cache: str, url: str, tenant: str, identity: str, text: str, redis: str) -> None:
    settings = Settings(cache_path=Path(cache), memory_redis_url=redis, memory_max_messages=4)
    model = ResilientLLM(openai_compatible(base_url=url, model="m", timeout_s=5.0))
    engines = Engines(settings, llm=model, clip_store=None)
    manager = VoiceManager(
        engines, instructions="Be brief.", tenant=tenant, memory=engines.session_memory(tenant)
    )
    try:
        print(await manager.reply_to_text(identity, text))
    finally:
        await manager.aclose()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(*args[:5], args[5] if len(args) > 5 else ""))
