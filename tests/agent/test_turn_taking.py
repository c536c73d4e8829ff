"""A pause in the middle of a sentence is not the end of the turn; the words say so even when
the voice sounds finished (the corpus figures: benchmarks/turns.py)."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from agent.models.engines import Engines
from agent.session.voice_agent import warmable
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from agent.sim.probe import TurnProbe
from plugins.llama import LlamaLLM
from plugins.smart_turn.detector import combine
from plugins.smart_turn.text import open_ending
from tests.audio_fixtures import silence, speak, trim_silence, wer

FIRST, REST = "Tell me more about", "the weather in Paris this weekend"


async def say_with_a_pause(engines: Engines, pause_s: float) -> tuple[list[str], int]:
    """Say FIRST, pause, say REST; the user turns the session committed (its history) and
    the number of replies the agent started."""
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    # replies are heard 4x faster: when the turn ends is what is tested
    mic, speaker, probe = PacedAudioInput(), RecordingAudioOutput(playout_speed=4), TurnProbe()
    try:
        attached = await manager.attach("caller", SessionIO(mic, speaker))
        probe.watch(attached.session)
        await mic.play_silence(0.3)
        first = trim_silence(speak(FIRST, rate=16000))
        rest = trim_silence(speak(REST, rate=16000))
        await mic.play(np.concatenate([first, silence(pause_s, 16000), rest]), 16000)
        tail = asyncio.create_task(mic.play_silence(30))
        try:
            async with asyncio.timeout(30):
                await speaker.wait_for_segments(1)
                await speaker.wait_for_playout()
        finally:
            tail.cancel()
        turns = [
            item.text_content or ""
            for item in attached.session.history.items
            if item.type == "message" and item.role == "user"
        ]
    finally:
        await manager.aclose()
    return turns, len(speaker.segments)


@pytest.mark.slow
async def test_the_words_keep_the_turn_open_through_a_mid_sentence_pause(
    engines, llama_instance
) -> None:
    # a model that served no other conversation (a job process's own): warm-ups never push
    # out the history of another session sharing the model
    fresh = Engines(
        engines.settings,
        stt=engines.stt,
        piper=engines.piper,
        llm=LlamaLLM(model_instance=llama_instance, max_tokens=30),
        turn_model=engines.turn_model,
        clip_store=None,
    )
    model = warmable(fresh.llm)
    assert model is not None
    turns, replies = await say_with_a_pause(fresh, 1.0)
    assert len(turns) == 1 and replies == 1, turns
    # the interim transcripts warmed the model's prompt cache while the caller spoke
    assert model.warmups > 0
    # both halves in the one turn (tiny.en hears espeak's "the weather in Paris" loosely)
    assert wer(FIRST, " ".join(turns[0].split()[:4])) <= 0.25, turns
    assert len(turns[0].split()) >= 7, turns  # FIRST alone is 4 words


@pytest.mark.slow
async def test_on_audio_alone_the_same_pause_cuts_the_caller_off(engines) -> None:
    """The control: Smart Turn hears a finished sentence at that pause (0.98 on this voice)
    and ends the turn there, before the rest was said."""
    settings = dataclasses.replace(engines.settings, turn_text_weight=0.0)
    audio_only = Engines(
        settings,
        stt=engines.stt,
        piper=engines.piper,
        llm=engines.llm,
        turn_model=engines.turn_model,
        clip_store=None,
    )
    turns, replies = await say_with_a_pause(audio_only, 1.0)
    assert turns and wer(FIRST, turns[0]) <= 0.25, turns
    assert len(turns[0].split()) <= 5 and replies >= 1, turns  # answered the fragment


def test_text_that_cannot_end_a_sentence_is_named() -> None:
    assert open_ending("The best way to get there is...") == "ellipsis"
    assert open_ending("I would like to") == "open word 'to'"
    assert open_ending("I was wondering if um") == "open word 'um'"
    assert open_ending("My order number is 4279.") is None  # ends on the number
    assert open_ending("Can you book a table for two people?") is None


def test_both_verdicts_must_agree_for_the_turn_to_end() -> None:
    assert combine(0.97, 0.18, 0.5) < 0.5  # a falling voice over words that go on
    assert combine(0.9, 0.9, 0.5) > 0.85
    assert combine(0.8, 0.0, 0.5) < 0.01  # an open ending vetoes
    assert combine(0.7, 0.1, 0.0) == pytest.approx(0.7)  # weight 0: audio alone
    assert combine(0.34, 0.91, 0.5) == pytest.approx(0.34)  # words never close the turn


async def test_the_text_scorer_ranks_finished_questions_above_fragments(engines) -> None:
    scorer = engines.turn_text
    finished = await scorer.verdict("What is the weather like in Paris today?")
    fragment = await scorer.verdict("Could you please")
    assert finished.p_complete > 0.8 > 0.1 > fragment.p_complete, (finished, fragment)
