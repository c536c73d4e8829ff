"""``python -m agent``: the worker's command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("download-files", help="fetch and verify model assets under CACHE_PATH")
    sim = sub.add_parser("simulate", help="one voice turn in-process, WAV in and WAV out")
    sim.add_argument("--input", type=Path, default=None, help="WAV of any rate/channels")
    sim.add_argument("--output", type=Path, default=Path("reply.wav"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = Settings.from_env()
    if args.command == "download-files":
        from .assets import download_all

        for path in download_all(settings.cache_path):
            print(path)
        return 0
    if args.command == "simulate":
        import asyncio
        import json

        from .simulate import SAMPLE_QUESTION, simulate

        result = asyncio.run(simulate(settings, args.input or SAMPLE_QUESTION, args.output))
        print(json.dumps(result))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
