"""Talk to the agent through a LiveKit server as a ``livekit.rtc`` client would.

    python -m tests.room.talk --url ws://10.77.0.1:7880 --room demo "What time is it?"

Joins ``--room`` as ``--identity`` (a token from LIVEKIT_API_KEY / LIVEKIT_API_SECRET),
says each sentence (espeak-ng speech through a WebRTC microphone track), and prints what
came back: the transcripts of the caller's words and of the agent's reply, and the
voice-to-voice time measured at this client. ``--save reply.wav`` keeps the audio heard on
the reply track. See docs/development.md for running it against the test server."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import wave

from livekit import api

from tests.audio_fixtures import speak
from tests.room.caller import HEAR_RATE, RoomCaller


async def talk(args: argparse.Namespace) -> int:
    key, secret = os.environ.get("LIVEKIT_API_KEY"), os.environ.get("LIVEKIT_API_SECRET")
    if not key or not secret:
        raise SystemExit("set LIVEKIT_API_KEY and LIVEKIT_API_SECRET")
    token = (
        api.AccessToken(key, secret)
        .with_identity(args.identity)
        .with_grants(api.VideoGrants(room_join=True, room=args.room))
        .to_jwt()
    )
    caller = RoomCaller(args.identity)
    await caller.connect(args.url, token)
    await caller.publish_mic()
    try:
        print(f"joined {args.room} as {args.identity}; waiting for the agent", flush=True)
        await caller.wait_for(caller.reply_track, within=args.wait)
        for sentence in args.sentences:
            turn = await caller.ask(speak(sentence), within=args.wait)
            if turn.error:
                print(f"you: {sentence!r} -> {turn.error}")
                return 1
            print(f"you: {sentence!r}")
            print(f"agent ({turn.voice_to_voice_ms:.0f} ms after you stopped): {turn.reply!r}")
        track = caller.reply_track()
        if args.save and track is not None:
            with wave.open(args.save, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(HEAR_RATE)
                w.writeframes(track.audio().tobytes())
            print(f"reply audio saved to {args.save}")
    finally:
        await caller.leave()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.room.talk")
    parser.add_argument("sentences", nargs="+")
    parser.add_argument("--url", default=os.environ.get("LIVEKIT_URL", "ws://10.77.0.1:7880"))
    parser.add_argument("--room", default="demo")
    parser.add_argument("--identity", default="caller")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for replies")
    parser.add_argument("--save", default="", help="write the heard reply audio to this WAV")
    sys.exit(asyncio.run(talk(parser.parse_args())))


if __name__ == "__main__":
    main()
