"""All engine plugins together inside a real livekit-agents ``AgentSession`` (no room)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from livekit.agents import Agent, AgentSession
from livekit.plugins import silero

from agent.session.audio_input import NormalizedAudioInput
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from agent.sim.simulate import voice_to_voice_ms
from tests.audio_fixtures import speak, trim_silence, wer

QUESTION = "What is the weather like in Paris today?"


async def _run_turn(whisper_stt, piper_tts, llama_instance, smart_turn_model, *, options, speech):
    from plugins.llama import LlamaLLM
    from plugins.noise import RNNoiseFilter
    from plugins.smart_turn import SmartTurnDetector

    detector = SmartTurnDetector(smart_turn_model, options=options)
    session = AgentSession(
        vad=silero.VAD.load(**options.vad_options()),
        stt=whisper_stt,
        llm=LlamaLLM(model_instance=llama_instance, max_tokens=30, seed=42),
        tts=piper_tts,
        turn_handling={
            "turn_detection": detector,
            "endpointing": options.endpointing(),
            "interruption": {"mode": "vad"},
            "preemptive_generation": {"enabled": False},
        },
        session_close_transcript_timeout=0,
    )
    mic = PacedAudioInput()
    speaker = RecordingAudioOutput(playout_speed=4)  # the reply is heard 4x faster
    session.input.audio = NormalizedAudioInput(mic, RNNoiseFilter())
    session.output.audio = speaker
    transcripts: list[str] = []
    committed_at: list[float] = []
    session.on(
        "user_input_transcribed", lambda ev: ev.is_final and transcripts.append(ev.transcript)
    )
    session.on(
        "agent_state_changed",
        lambda ev: ev.new_state == "thinking" and committed_at.append(time.time()),
    )
    await session.start(
        Agent(instructions="You are a friendly voice assistant. Answer in one short sentence.")
    )
    try:
        await mic.play_silence(0.5)
        await mic.play(speech, 16000)
        silence = asyncio.create_task(mic.play_silence(12.0))
        await asyncio.wait_for(speaker.first_frame.wait(), timeout=40)
        silence.cancel()
        await asyncio.wait_for(speaker.wait_for_playout(), timeout=40)
    finally:
        await session.aclose()
    return mic, speaker, transcripts, committed_at


@pytest.mark.slow
async def test_full_turn_with_every_engine(
    whisper_stt, piper_tts, llama_instance, smart_turn_model
) -> None:
    from plugins.smart_turn import HybridTurnOptions

    mic, speaker, transcripts, committed = await _run_turn(
        whisper_stt,
        piper_tts,
        llama_instance,
        smart_turn_model,
        options=HybridTurnOptions(silence_timeout=3.0),
        speech=trim_silence(speak(QUESTION, rate=16000)),
    )
    assert transcripts and wer(QUESTION, transcripts[-1]) <= 0.2, transcripts
    pcm, rate = speaker.pcm()
    assert rate == piper_tts.sample_rate
    assert pcm.size > rate * 0.3 and np.abs(pcm).max() > 1000  # the agent spoke
    voice_to_voice = voice_to_voice_ms(speaker.segments[0], mic.speech_ended_at[0]) / 1000
    assert 0 < voice_to_voice < 20


@pytest.mark.slow
async def test_silence_timeout_ends_turn_the_model_calls_unfinished(
    whisper_stt, piper_tts, llama_instance, smart_turn_model
) -> None:
    """threshold=1.0: every verdict is "not done", so only the silence timeout can end the turn."""
    from plugins.smart_turn import HybridTurnOptions

    timeout = 2.5
    mic, speaker, _, committed = await _run_turn(
        whisper_stt,
        piper_tts,
        llama_instance,
        smart_turn_model,
        options=HybridTurnOptions(threshold=1.0, silence_timeout=timeout),
        speech=trim_silence(
            speak("I would like to change the delivery address for my", rate=16000)
        ),
    )
    waited = committed[0] - mic.speech_ended_at[0]
    assert waited >= timeout - 0.1, waited  # the model's "not done" held the turn open…
    assert waited < timeout + 3.0, waited  # …and the timeout then ended it
    assert speaker.segments  # and the agent answered
