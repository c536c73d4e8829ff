"""Typed settings, read from the environment once at start and passed down.

Every field carries its environment variable, its meaning and whether it is a secret in the
field metadata; ``.env.example`` and ``docs/configuration.md`` are rendered from it
(``python -m agent config --env-example`` / ``--markdown``) and a test keeps them in sync.
Plugins never read the environment: the worker builds them from this object.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

NoiseFilterName = Literal["off", "auto", "rnnoise", "deepfilternet"]
DeviceName = Literal["auto", "cuda", "cpu"]
LogFormat = Literal["json", "console"]
InferenceMode = Literal["shared", "process"]


class SettingsError(ValueError):
    """An environment variable has a value the worker cannot use; names the variable."""


def _env(name: str, help: str, *, secret: bool = False, group: str = "") -> Any:
    return {"env": name, "help": help, "secret": secret, "group": group}


def setting(default: Any, env: str, help: str, *, secret: bool = False, group: str) -> Any:
    return field(default=default, metadata=_env(env, help, secret=secret, group=group))


@dataclass(frozen=True, slots=True)
class Settings:
    """The worker's whole configuration. Build it with :meth:`from_env`."""

    # --- LiveKit connection and worker ---------------------------------------------------
    livekit_url: str = setting(
        "",
        "LIVEKIT_URL",
        "LiveKit server websocket URL, e.g. ws://127.0.0.1:7880 for `livekit-server --dev`. "
        "Required by `start`.",
        group="LiveKit",
    )
    livekit_api_key: str = setting(
        "",
        "LIVEKIT_API_KEY",
        "LiveKit API key (the worker and the dispatch API use it).",
        group="LiveKit",
    )
    livekit_api_secret: str = setting(
        "", "LIVEKIT_API_SECRET", "LiveKit API secret.", secret=True, group="LiveKit"
    )
    agent_name: str = setting(
        "local-voice-agent",
        "AGENT_NAME",
        "Name the worker registers under. Set: explicit dispatch only (rooms get the agent "
        "through a dispatch naming it). Empty: automatic dispatch into every new room.",
        group="Worker",
    )
    worker_capacity: int = setting(
        4,
        "WORKER_CAPACITY",
        "Jobs (rooms) one worker serves at once. The load reported to LiveKit is the "
        "largest of active jobs / capacity, inference queue delay / budget and GPU memory "
        "/ limit (docs/architecture.md).",
        group="Worker",
    )
    inference_queue_budget_s: float = setting(
        0.25,
        "INFERENCE_QUEUE_BUDGET_S",
        "Longest wait for an engine thread (STT, TTS, LLM, turn detector) a request may "
        "have; the worker reports itself full at 80 % of it.",
        group="Worker",
    )
    inference_mode: InferenceMode = setting(
        "shared",
        "INFERENCE_MODE",
        "shared: `start` runs one inference process holding the models (STT, TTS, turn "
        "detector, embedded LLM), batching every job's requests; job processes load none. "
        "process: every job process loads its own copy.",
        group="Worker",
    )
    job_executor: Literal["process", "thread"] = setting(
        "process",
        "JOB_EXECUTOR",
        "process: each job (room) in its own process (a crash or a leak ends one room). "
        "thread: jobs share the main process, each in a thread of its own (livekit-agents' "
        "thread executor): far less memory per room (docs/benchmarks.md), but a job that "
        "crashes the interpreter or blocks it takes every room of the worker with it. "
        "Needs INFERENCE_MODE=shared.",
        group="Worker",
    )
    inference_address: str = setting(
        "",
        "INFERENCE_ADDRESS",
        "Unix socket path of the shared inference process. Empty: a private one per worker "
        "(in a new 0700 directory). Set it to a server run by `python -m agent inference` "
        "to share it between workers of the same user; `start` then connects instead of "
        "starting one. Its directory must be private to the worker's user.",
        group="Worker",
    )
    inference_start_timeout_s: float = setting(
        180.0,
        "INFERENCE_START_TIMEOUT_S",
        "Time allowed for the shared inference process to load its models.",
        group="Worker",
    )
    gpu_memory_limit: float = setting(
        0.9,
        "GPU_MEMORY_LIMIT",
        "Fraction of GPU memory in use at which the worker reports itself full.",
        group="Worker",
    )
    load_threshold: float = setting(
        0.99,
        "LOAD_THRESHOLD",
        "Load (0-1) at or above which the worker refuses new jobs.",
        group="Worker",
    )
    num_idle_processes: int = setting(
        1,
        "NUM_IDLE_PROCESSES",
        "Job processes kept warm (models loaded) ahead of jobs.",
        group="Worker",
    )
    preload_models: bool = setting(
        True,
        "PRELOAD_MODELS",
        "Load every model when a job process is warmed. false: load on first use, so a "
        "worker that serves only text (audio=false) rooms never loads an audio model.",
        group="Worker",
    )
    drain_timeout_s: int = setting(
        300,
        "DRAIN_TIMEOUT_S",
        "On SIGTERM, seconds to let active sessions finish before exiting. Give the "
        "supervisor a longer stop timeout than this.",
        group="Worker",
    )
    process_init_timeout_s: float = setting(
        120.0,
        "PROCESS_INIT_TIMEOUT_S",
        "Time a job process may take to load the models before it is considered failed.",
        group="Worker",
    )
    max_connect_retries: int = setting(
        16,
        "MAX_CONNECT_RETRIES",
        "Failed connection attempts to LiveKit before the worker gives up and exits with "
        "code 75 (EX_TEMPFAIL) so the supervisor restarts it.",
        group="Worker",
    )
    worker_http_host: str = setting(
        "0.0.0.0",
        "WORKER_HTTP_HOST",
        "Bind address of LiveKit's worker health server.",
        group="Worker",
    )
    worker_http_port: int = setting(
        8081,
        "WORKER_HTTP_PORT",
        "Port of LiveKit's worker health server (0: any free port).",
        group="Worker",
    )
    instructions: str = setting(
        "You are a friendly voice assistant. Answer in one or two short sentences, "
        "in plain words without lists or markup.",
        "AGENT_INSTRUCTIONS",
        'The agent\'s persona; dispatch metadata {"instructions": ...} overrides it per room.',
        group="Worker",
    )
    # --- storage -------------------------------------------------------------------------
    cache_path: Path = setting(
        Path(".cache"),
        "CACHE_PATH",
        "Root of the model asset store and the clip cache; mount a durable volume here.",
        group="Storage",
    )
    cache_max_bytes: int = setting(
        1 << 30,
        "CACHE_MAX_BYTES",
        "Largest total size of the clip cache (CACHE_PATH/clips); least recently used clips "
        "are evicted beyond it. 0 turns the clip cache off.",
        group="Storage",
    )
    cache_prewarm: str = setting(
        "",
        "CACHE_PREWARM",
        "Phrases to synthesize into the clip cache ahead of use, separated by |.",
        group="Storage",
    )
    cache_prewarm_file: str = setting(
        "",
        "CACHE_PREWARM_FILE",
        "A file of phrases to prewarm, one per line (added to CACHE_PREWARM).",
        group="Storage",
    )
    # --- engines -------------------------------------------------------------------------
    stt_base_url: str = setting(
        "",
        "STT_BASE_URL",
        "OpenAI-compatible transcription endpoint (vLLM serving Whisper, a faster-whisper "
        "server), e.g. http://127.0.0.1:8000/v1: utterances are decoded there, the session "
        "logic stays here. Empty: faster-whisper in this worker (or its inference process).",
        group="Speech-to-text",
    )
    stt_remote_model: str = setting(
        "whisper-1",
        "STT_REMOTE_MODEL",
        "Model name sent to STT_BASE_URL (vLLM: its served model name).",
        group="Speech-to-text",
    )
    stt_api_key: str = setting(
        "", "STT_API_KEY", "Bearer key for STT_BASE_URL.", secret=True, group="Speech-to-text"
    )
    stt_model: str = setting(
        "",
        "STT_MODEL",
        "faster-whisper model: a CTranslate2 model directory, base (the packaged multilingual "
        "whisper base, placed by download-files), or a size name found under CACHE_PATH. "
        "Empty: the packaged tiny.en (English only).",
        group="Speech-to-text",
    )
    stt_device: DeviceName = setting(
        "auto", "STT_DEVICE", "auto (CUDA when present), cuda or cpu.", group="Speech-to-text"
    )
    stt_compute_type: str = setting(
        "auto",
        "STT_COMPUTE_TYPE",
        "CTranslate2 compute type; auto is float16 on CUDA, int8 on CPU.",
        group="Speech-to-text",
    )
    stt_language: str = setting(
        "en",
        "STT_LANGUAGE",
        "Language code, or auto (detected on a session's first utterance, then kept; "
        "needs a multilingual model such as STT_MODEL=base). Per session: stt.language.",
        group="Speech-to-text",
    )
    stt_beam_size: int = setting(
        1, "STT_BEAM_SIZE", "Beam size (1 = greedy, fastest).", group="Speech-to-text"
    )
    stt_min_window_s: float = setting(
        0.0,
        "STT_MIN_WINDOW_S",
        "Shortest audio window whisper's encoder sees, 1-30 s (0: 10 on CPU, 30 on CUDA): "
        "an utterance is padded to this or its length + 1 s, not always 30 s. 10 decodes "
        "2.7x faster on CPU for +0.03 WER on test speech (docs/benchmarks.md).",
        group="Speech-to-text",
    )
    tts_base_url: str = setting(
        "",
        "TTS_BASE_URL",
        "OpenAI-compatible speech endpoint (/audio/speech), e.g. http://127.0.0.1:8880/v1. "
        "Its clips go through the same clip cache. Empty: Piper in this worker (or its "
        "inference process).",
        group="Text-to-speech",
    )
    tts_remote_model: str = setting(
        "tts-1", "TTS_REMOTE_MODEL", "Model name sent to TTS_BASE_URL.", group="Text-to-speech"
    )
    tts_remote_voice: str = setting(
        "alloy", "TTS_REMOTE_VOICE", "Voice name sent to TTS_BASE_URL.", group="Text-to-speech"
    )
    tts_api_key: str = setting(
        "", "TTS_API_KEY", "Bearer key for TTS_BASE_URL.", secret=True, group="Text-to-speech"
    )
    tts_voice: str = setting(
        "",
        "TTS_VOICE",
        "Piper voice .onnx file (its .onnx.json beside it). Empty: the packaged voice.",
        group="Text-to-speech",
    )
    tts_speed: float = setting(
        1.0, "TTS_SPEED", "Speaking rate (1.0 = the voice's own).", group="Text-to-speech"
    )
    models_preload: str = setting(
        "",
        "MODELS_PRELOAD",
        "Voice ids (GET /v1/voices) the model manager loads at start, comma-separated; the "
        "default voice and STT model are always loaded.",
        group="Voices and model manager",
    )
    models_resident_cap: int = setting(
        4,
        "MODELS_RESIDENT_CAP",
        "Most optional models (voices other than the default) resident at once; the least "
        "recently used idle one is unloaded beyond it.",
        group="Voices and model manager",
    )
    models_idle_ttl_s: float = setting(
        600.0,
        "MODELS_IDLE_TTL_S",
        "An optional model unused this long is unloaded.",
        group="Voices and model manager",
    )
    models_min_residency_s: float = setting(
        30.0,
        "MODELS_MIN_RESIDENCY_S",
        "A model stays loaded at least this long (no thrashing between two voices).",
        group="Voices and model manager",
    )
    models_memory_budget_mb: int = setting(
        0,
        "MODELS_MEMORY_BUDGET_MB",
        "Memory the manager's resident models may use before the worker reports itself full "
        "(the load function counts it). 0: half of the machine's memory.",
        group="Voices and model manager",
    )
    tts_first_chunk_words: int = setting(
        6,
        "TTS_FIRST_CHUNK_WORDS",
        "The first chunk of a reply goes to TTS at its first clause break or after this many "
        "words, instead of waiting for a full sentence. 0: whole sentences only.",
        group="Text-to-speech",
    )
    tts_device: DeviceName = setting(
        "auto", "TTS_DEVICE", "auto, cuda or cpu (onnxruntime provider).", group="Text-to-speech"
    )
    llm_base_url: str = setting(
        "",
        "LLM_BASE_URL",
        "OpenAI-compatible endpoint (vLLM, llama.cpp server), e.g. http://127.0.0.1:8000/v1. "
        "Empty: the embedded llama.cpp with the packaged SmolLM2-135M.",
        group="LLM",
    )
    llm_model: str = setting("", "LLM_MODEL", "Model name sent to LLM_BASE_URL.", group="LLM")
    llm_api_key: str = setting(
        "", "LLM_API_KEY", "Bearer key for LLM_BASE_URL.", secret=True, group="LLM"
    )
    llm_temperature: float = setting(0.6, "LLM_TEMPERATURE", "Sampling temperature.", group="LLM")
    llm_max_tokens: int = setting(
        60, "LLM_MAX_TOKENS", "Longest reply of the embedded model, in tokens.", group="LLM"
    )
    llm_threads: int = setting(
        0,
        "LLM_THREADS",
        "CPU threads of the embedded model (prompt and reply). 0: half the cores, at most 4 "
        "(more make a small model no faster, and llama.cpp's spinning threads beyond the free "
        "cores stall every other session).",
        group="LLM",
    )
    llm_context_tokens: int = setting(
        0,
        "LLM_CONTEXT_TOKENS",
        "The LLM's context window in tokens; what a session sends is cut to fit it with room "
        "for the reply (older turns folded into a summary). 0: the embedded model's own "
        "window, 8192 for an LLM_BASE_URL endpoint.",
        group="LLM",
    )
    llm_seed: int = setting(
        -1,
        "LLM_SEED",
        "Sampling seed of the embedded model; -1 draws a new one per reply. `simulate` uses "
        "42 when this is -1, so that the same input gives the same reply.",
        group="LLM",
    )
    llm_timeout_s: float = setting(
        10.0,
        "LLM_TIMEOUT_S",
        "Time allowed for the LLM endpoint to start answering.",
        group="LLM",
    )
    llm_breaker_failures: int = setting(
        3,
        "LLM_BREAKER_FAILURES",
        "Consecutive LLM failures (errors or timeouts) that open the circuit breaker.",
        group="LLM",
    )
    llm_breaker_reset_s: float = setting(
        30.0,
        "LLM_BREAKER_RESET_S",
        "While open, the LLM endpoint is not called; after this long one trial request is.",
        group="LLM",
    )
    llm_apology: str = setting(
        "Sorry, I'm having trouble answering right now. Please try again in a moment.",
        "LLM_APOLOGY",
        "What the agent says when the LLM fails or the breaker is open (prewarmed in the "
        "clip cache).",
        group="LLM",
    )
    # --- conversation --------------------------------------------------------------------
    greeting: str = setting(
        "",
        "GREETING",
        "What the agent says when a participant's voice session starts (interruptible, "
        "through the clip cache). Empty: it waits for the caller. Tenant policy, dispatch "
        "metadata and config messages may set their own (`greeting`).",
        group="Conversation",
    )
    user_idle_s: float = setting(
        20.0,
        "USER_IDLE_S",
        "Silence from both sides after which the agent prompts the caller. 0: never.",
        group="Conversation",
    )
    user_idle_prompts: int = setting(
        2,
        "USER_IDLE_PROMPTS",
        "Unanswered idle prompts after which the agent says goodbye and ends the session "
        "(and leaves the room when no session remains).",
        group="Conversation",
    )
    user_idle_prompt: str = setting(
        "Are you still there?", "USER_IDLE_PROMPT", "The idle prompt.", group="Conversation"
    )
    user_idle_goodbye: str = setting(
        "I'll hang up now. Goodbye!",
        "USER_IDLE_GOODBYE",
        "Said before an idle session ends.",
        group="Conversation",
    )
    memory_enabled: bool = setting(
        False,
        "MEMORY_ENABLED",
        "Remember each participant's conversation across sessions (tenant, identity) for "
        "tenants whose policy says nothing (TENANT_LIMITS[tenant].memory decides for the "
        "others).",
        group="Conversation",
    )
    memory_max_messages: int = setting(
        20,
        "MEMORY_MAX_MESSAGES",
        "Messages kept per remembered conversation (older ones live on in its summary).",
        group="Conversation",
    )
    memory_ttl_s: float = setting(
        30 * 86400.0,
        "MEMORY_TTL_S",
        "A remembered conversation is forgotten this long after its last session.",
        group="Conversation",
    )
    memory_redis_url: str = setting(
        "",
        "MEMORY_REDIS_URL",
        "Redis for memory shared by several workers. Empty: RATE_LIMIT_REDIS_URL when set, "
        "else a SQLite file under CACHE_PATH.",
        secret=True,
        group="Conversation",
    )
    # --- recording ---------------------------------------------------------------------------
    recording_allowed: bool = setting(
        False,
        "RECORDING_ALLOWED",
        "Whether sessions of tenants whose TENANT_LIMITS entry says nothing (recording) may be "
        "recorded. A session is recorded only when this policy allows it and its config or "
        'dispatch metadata asks ("recording": true); never by default (docs/recording.md).',
        group="Recording",
    )
    recording_path: str = setting(
        "",
        "RECORDING_PATH",
        "Where recordings and transcripts are written. Empty: CACHE_PATH/recordings.",
        group="Recording",
    )
    recording_min_free_mb: int = setting(
        256,
        "RECORDING_MIN_FREE_MB",
        "A recording's audio stops (the call goes on, the transcript marks the gap) when its "
        "destination has less free space than this.",
        group="Recording",
    )
    recording_mode: Literal["local", "egress"] = setting(
        "local",
        "RECORDING_MODE",
        "How allowed recordings are made for tenants whose policy does not say: local (a "
        "stereo file and transcript per session, here) or egress (LiveKit's egress service "
        "records the room; docs/recording.md).",
        group="Recording",
    )
    recording_egress_filepath: str = setting(
        "{tenant}/{room_name}-{time}.ogg",
        "RECORDING_EGRESS_FILEPATH",
        "File path of an egress recording, in the egress service's storage ({tenant} is "
        "filled in here, {room_name} and {time} by egress).",
        group="Recording",
    )
    recording_s3_bucket: str = setting(
        "",
        "RECORDING_S3_BUCKET",
        "Keep recordings in this S3-compatible bucket: each is uploaded when its call ends "
        "and the local copy deleted (kept when the upload fails). Empty: on disk only.",
        group="Recording",
    )
    recording_s3_endpoint_url: str = setting(
        "",
        "RECORDING_S3_ENDPOINT_URL",
        "The bucket's endpoint for a non-AWS store (MinIO, Ceph, R2). Empty: AWS.",
        group="Recording",
    )
    recording_s3_region: str = setting(
        "", "RECORDING_S3_REGION", "The bucket's region.", group="Recording"
    )
    recording_s3_prefix: str = setting(
        "recordings/",
        "RECORDING_S3_PREFIX",
        "Key prefix: <prefix><tenant>/<id>.ogg|.json.",
        group="Recording",
    )
    recording_s3_access_key_id: str = setting(
        "",
        "RECORDING_S3_ACCESS_KEY_ID",
        "Access key. Empty: boto3's own chain (AWS_* variables, instance role, …).",
        secret=True,
        group="Recording",
    )
    recording_s3_secret_access_key: str = setting(
        "", "RECORDING_S3_SECRET_ACCESS_KEY", "Secret key.", secret=True, group="Recording"
    )
    recording_retention_days: float = setting(
        30.0,
        "RECORDING_RETENTION_DAYS",
        "Recordings older than this are deleted (checked whenever one starts). 0: kept until "
        "deleted through the API.",
        group="Recording",
    )
    # --- tools -------------------------------------------------------------------------------
    tools: str = setting(
        "",
        "TOOLS",
        "HTTP tools every session gets: a JSON list of {name, description, parameters (JSON "
        "Schema), url, method, timeout_s, headers}, or @/path/to/tools.json. Header values "
        "env:NAME are read from the environment at call time (docs/tools.md). Tools need an "
        "LLM_BASE_URL model with tool calling; the embedded model ignores them.",
        group="Tools",
    )
    mcp_servers: str = setting(
        "",
        "MCP_SERVERS",
        "MCP servers (streamable HTTP) whose tools every session gets: a JSON list of URLs or "
        "{url, headers, tools, timeout_s}, or @file.",
        group="Tools",
    )
    tools_allowed_hosts: str = setting(
        "",
        "TOOLS_ALLOWED_HOSTS",
        "Hosts (host or host:port, comma-separated) tools and MCP servers may reach although "
        "they are or resolve to loopback, private or link-local addresses. Every other "
        "non-public address is refused.",
        group="Tools",
    )
    builtin_tools: str = setting(
        "",
        "BUILTIN_TOOLS",
        "The worker's own call tools, comma-separated: end_call (the agent may hang up after "
        "a goodbye). Empty: none (a model served without tool calling refuses requests that "
        "carry tools, so none are sent unless asked for).",
        group="Tools",
    )
    tool_filler: str = setting(
        "One moment, let me check.",
        "TOOL_FILLER",
        "Said (from the clip cache) when a tool runs longer than TOOL_FILLER_AFTER_S.",
        group="Tools",
    )
    tool_filler_after_s: float = setting(
        1.0,
        "TOOL_FILLER_AFTER_S",
        "Seconds a tool may run before the filler. 0: never.",
        group="Tools",
    )
    tool_max_response_bytes: int = setting(
        16384,
        "TOOL_MAX_RESPONSE_BYTES",
        "Longest tool answer passed to the LLM; the rest is cut.",
        group="Tools",
    )
    log_tool_arguments: bool = setting(
        False,
        "LOG_TOOL_ARGUMENTS",
        "Log the arguments of each tool call (the caller's words: off by default).",
        group="Tools",
    )
    # --- turn taking ---------------------------------------------------------------------
    noise_filter: NoiseFilterName = setting(
        "off",
        "NOISE_FILTER",
        "off, auto, rnnoise or deepfilternet. auto runs DeepFilterNet only while a session's "
        "audio is noisy (estimated SNR below 22 dB). Off by default: on this project's test "
        "speech every filter cost whisper accuracy, noisy or clean (docs/benchmarks.md).",
        group="Turn taking",
    )
    turn_threshold: float = setting(
        0.5,
        "TURN_THRESHOLD",
        "Smart Turn probability at which a pause ends the turn.",
        group="Turn taking",
    )
    turn_decision_pause_s: float = setting(
        0.3, "TURN_DECISION_PAUSE_S", "Silence before Smart Turn is asked.", group="Turn taking"
    )
    turn_silence_timeout_s: float = setting(
        2.0,
        "TURN_SILENCE_TIMEOUT_S",
        "Silence after which the turn ends whatever Smart Turn says.",
        group="Turn taking",
    )
    turn_min_speech_s: float = setting(
        0.25, "TURN_MIN_SPEECH_S", "Shortest sound that counts as speech.", group="Turn taking"
    )
    turn_text_weight: float = setting(
        0.5,
        "TURN_TEXT_WEIGHT",
        "Share of the transcript's verdict (is the sentence finished?) next to Smart Turn's "
        "audio verdict at a pause; 0 judges on audio alone (docs/architecture.md).",
        group="Turn taking",
    )
    turn_text_confirm: float = setting(
        0.9,
        "TURN_TEXT_CONFIRM",
        "A transcript verdict at least this sure that the sentence is finished ends the turn "
        "after TURN_TEXT_CONFIRM_PAUSE_S of silence when Smart Turn hears an unfinished voice "
        "(instead of waiting for TURN_SILENCE_TIMEOUT_S); 1 turns this off.",
        group="Turn taking",
    )
    turn_text_confirm_pause_s: float = setting(
        0.8,
        "TURN_TEXT_CONFIRM_PAUSE_S",
        "The silence after which such a turn ends (speech resumed before it keeps the turn).",
        group="Turn taking",
    )
    turn_text_confirm_min_audio: float = setting(
        0.05,
        "TURN_TEXT_CONFIRM_MIN_AUDIO",
        "...unless Smart Turn is this sure the voice goes on (its verdict below this): a "
        "misheard fragment can read finished while the voice plainly continues.",
        group="Turn taking",
    )
    turn_early_pause_s: float = setting(
        0.2,
        "TURN_EARLY_PAUSE_S",
        "Quiet after speech at which the end-of-turn detector starts its verdict on its own, "
        "before the session asks (which its VAD does ~0.15 s later); a verdict of done is "
        "kept, a not-done is judged again when asked. 0: only when asked.",
        group="Turn taking",
    )
    turn_text_model: str = setting(
        "",
        "TURN_TEXT_MODEL",
        "ChatML GGUF that judges whether the user's text is a finished turn; empty: the "
        "packaged SmolLM2-135M.",
        group="Turn taking",
    )
    backchannel_words: str = setting(
        ",".join(
            [
                "yeah",
                "yes",
                "yep",
                "uh-huh",
                "mm-hmm",
                "mhm",
                "hmm",
                "okay",
                "ok",
                "right",
                "sure",
                "got it",
                "i see",
                "alright",
            ]
        ),
        "BACKCHANNEL_WORDS",
        "Comma-separated phrases that, said alone while the agent speaks, do not take the "
        "turn (the agent pauses and resumes). Empty: every utterance interrupts.",
        group="Turn taking",
    )
    false_interruption_timeout_s: float = setting(
        1.0,
        "FALSE_INTERRUPTION_TIMEOUT_S",
        "After user speech pauses the agent, silence without a real user turn for this long "
        "resumes the agent's reply.",
        group="Turn taking",
    )
    aec_warmup_s: float = setting(
        3.0,
        "AEC_WARMUP_S",
        "After the agent starts speaking, seconds during which user audio cannot interrupt "
        "it (lets the client's echo canceller converge). 0 disables; use 0 for telephony.",
        group="Turn taking",
    )
    # --- HTTP API, auth and tenant limits ------------------------------------------------
    http_host: str = setting(
        "0.0.0.0", "HTTP_HOST", "Bind address of the HTTP API.", group="HTTP API and auth"
    )
    http_port: int = setting(
        8080,
        "HTTP_PORT",
        "Port of the HTTP API (`start` and `serve`); 0 turns it off under `start`.",
        group="HTTP API and auth",
    )
    auth_jwt_secret: str = setting(
        "",
        "AUTH_JWT_SECRET",
        "Shared secret of HS256 tokens (empty: HS256 refused).",
        secret=True,
        group="HTTP API and auth",
    )
    auth_jwks_url: str = setting(
        "",
        "AUTH_JWKS_URL",
        "JWKS URL of RS256/ES256 token keys (empty: those refused).",
        group="HTTP API and auth",
    )
    auth_audience: str = setting(
        "",
        "AUTH_AUDIENCE",
        "Required `aud` claim (empty: not checked).",
        group="HTTP API and auth",
    )
    auth_issuer: str = setting(
        "",
        "AUTH_ISSUER",
        "Required `iss` claim (empty: not checked).",
        group="HTTP API and auth",
    )
    auth_leeway_s: float = setting(
        30.0,
        "AUTH_LEEWAY_S",
        "Clock skew allowed on `exp` and `nbf`.",
        group="HTTP API and auth",
    )
    auth_jwks_refresh_cooldown_s: float = setting(
        30.0,
        "AUTH_JWKS_REFRESH_COOLDOWN_S",
        "Least time between two JWKS refetches caused by unknown key ids.",
        group="HTTP API and auth",
    )
    auth_max_token_lifetime_s: float = setting(
        86400.0,
        "AUTH_MAX_TOKEN_LIFETIME_S",
        "Longest lifetime a token may have (`exp - iat` and `exp - now`); longer ones get 401.",
        group="HTTP API and auth",
    )
    dispatch_grant_secret: str = setting(
        "",
        "DISPATCH_GRANT_SECRET",
        "Key that signs the short-lived grant /v1/dispatch puts in job metadata (instead of "
        "the caller's token). Empty: derived from LIVEKIT_API_SECRET. Every worker of a "
        "deployment needs the same one.",
        secret=True,
        group="HTTP API and auth",
    )
    dispatch_grant_ttl_s: float = setting(
        300.0,
        "DISPATCH_GRANT_TTL_S",
        "Lifetime of a dispatch grant: the job must be offered to a worker within it.",
        group="HTTP API and auth",
    )
    metrics_token: str = setting(
        "",
        "METRICS_TOKEN",
        "When set, /metrics needs `Authorization: Bearer <METRICS_TOKEN>`. Keep the HTTP "
        "port off the public network either way (docs/security.md).",
        secret=True,
        group="HTTP API and auth",
    )
    speak_max_audio_s: float = setting(
        60.0,
        "SPEAK_MAX_AUDIO_S",
        "Most audio one /v1/speak request may produce: longer predicted audio gets 413 "
        "before synthesis, and audio that runs longer is stopped there.",
        group="HTTP API and auth",
    )
    tenant_claim: str = setting(
        "tenant",
        "TENANT_CLAIM",
        "Token claim that names the tenant.",
        group="HTTP API and auth",
    )
    tenant_limits: str = setting(
        "",
        "TENANT_LIMITS",
        'JSON: tenant id (or "*") -> {concurrent_sessions, sessions_per_minute, '
        "requests_per_minute, tts_chars_per_minute, ...} and the tenant's policy (greeting, "
        "memory, participant rules, tools, mcp_servers, tool_secrets: docs/tools.md; voice, "
        "language: docs/voices-and-languages.md; recording). A "
        'tenant without an entry (and no "*") is refused. Empty: every tenant, no limits.',
        group="HTTP API and auth",
    )
    rate_limit_redis_url: str = setting(
        "",
        "RATE_LIMIT_REDIS_URL",
        "Redis for limits shared by several workers. Empty: a SQLite file under CACHE_PATH "
        "(shared by the processes of one worker).",
        secret=True,
        group="HTTP API and auth",
    )
    rate_limit_fail_open: bool = setting(
        False,
        "RATE_LIMIT_FAIL_OPEN",
        "When the limit store is unreachable: false refuses (503, dispatch rejected), true "
        "lets requests through. Either way it is logged and counted.",
        group="HTTP API and auth",
    )
    # --- room participants -------------------------------------------------------------
    max_sessions_per_room: int = setting(
        8,
        "MAX_SESSIONS_PER_ROOM",
        "Most voice/text sessions one room (job) may have; TENANT_LIMITS may set it per "
        "tenant (max_sessions_per_room).",
        group="Room participants",
    )
    participant_messages_per_minute: int = setting(
        60,
        "PARTICIPANT_MESSAGES_PER_MINUTE",
        "Config, chat and relay messages one participant may send per minute (a relay "
        "counts once per recipient); per tenant: participant_messages_per_minute.",
        group="Room participants",
    )
    participant_config: str = setting(
        "audio,noise_filter,tts,stt,turn",
        "PARTICIPANT_CONFIG",
        "Config keys room participants may set, comma-separated, from audio, noise_filter, "
        "tts (speed, voice), stt (language), turn, instructions (the persona), "
        "text_room_audio (audio on in a room the backend made text-only), greeting. "
        "Dispatch metadata (the backend) may set everything; per tenant: participant_config.",
        group="Room participants",
    )
    session_end_notice: str = setting(
        "Sorry, this call has to end now. Goodbye.",
        "SESSION_END_NOTICE",
        "Said to every participant when the worker must end a job early (its tenant session "
        "slot was lost).",
        group="Room participants",
    )
    # --- traces --------------------------------------------------------------------------
    otel_exporter_otlp_endpoint: str = setting(
        "",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTLP/HTTP collector for traces (e.g. http://otel-collector:4318): a voice.turn span "
        "per exchange, livekit-agents' own spans with it (docs/operations.md). Empty: off.",
        group="Logs",
    )
    otel_service_name: str = setting(
        "local-voice-agent", "OTEL_SERVICE_NAME", "service.name of the traces.", group="Logs"
    )
    # --- logs ----------------------------------------------------------------------------
    log_level: str = setting("INFO", "LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.", group="Logs")
    log_transcripts: bool = setting(
        False,
        "LOG_TRANSCRIPTS",
        "Keep what users and the agent said in the logs (dropped by default).",
        group="Logs",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every field's variable from ``env`` (default ``os.environ``); unset or empty
        variables keep the default, except strings, where empty is a value."""
        env = os.environ if env is None else env
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None:
                continue
            values[f.name] = _parse(name, raw, hints[f.name])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.worker_capacity < 1:
            raise SettingsError("WORKER_CAPACITY must be at least 1")
        if self.inference_queue_budget_s <= 0:
            raise SettingsError("INFERENCE_QUEUE_BUDGET_S must be positive")
        if self.inference_start_timeout_s <= 0:
            raise SettingsError("INFERENCE_START_TIMEOUT_S must be positive")
        if not 0 < self.gpu_memory_limit <= 1:
            raise SettingsError("GPU_MEMORY_LIMIT must be in (0, 1]")
        if not 0 < self.load_threshold < 1:
            raise SettingsError("LOAD_THRESHOLD must be between 0 and 1 (exclusive)")
        if self.drain_timeout_s < 0:
            raise SettingsError("DRAIN_TIMEOUT_S must not be negative")
        if self.cache_max_bytes < 0:
            raise SettingsError("CACHE_MAX_BYTES must not be negative")
        if not 0 <= self.turn_text_weight <= 1:
            raise SettingsError("TURN_TEXT_WEIGHT must be between 0 and 1")
        if not 0 <= self.turn_text_confirm_min_audio <= 1:
            raise SettingsError("TURN_TEXT_CONFIRM_MIN_AUDIO must be within [0, 1]")
        if not 0 <= self.turn_early_pause_s <= 2:
            raise SettingsError("TURN_EARLY_PAUSE_S must be within [0, 2]")
        if not 0 <= self.turn_text_confirm <= 1:
            raise SettingsError("TURN_TEXT_CONFIRM must be between 0 and 1")
        # the session waits this long for a turn verdict after its pause (prediction_timeout)
        if not 0 <= self.turn_text_confirm_pause_s < self.turn_decision_pause_s + 1.5:
            raise SettingsError(
                "TURN_TEXT_CONFIRM_PAUSE_S must be at least 0 and less than "
                "TURN_DECISION_PAUSE_S + 1.5"
            )
        if self.stt_min_window_s and not 1 <= self.stt_min_window_s <= 30:
            raise SettingsError("STT_MIN_WINDOW_S must be 0 (automatic) or between 1 and 30")
        if self.user_idle_s < 0 or self.user_idle_prompts < 0:
            raise SettingsError("USER_IDLE_S and USER_IDLE_PROMPTS must not be negative")
        if 0 < self.user_idle_s <= self.turn_silence_timeout_s:
            raise SettingsError(
                "USER_IDLE_S must be 0 (off) or longer than TURN_SILENCE_TIMEOUT_S: a caller's "
                "own pause must not count as silence"
            )
        if max(len(self.greeting), len(self.user_idle_prompt), len(self.user_idle_goodbye)) > 500:
            raise SettingsError("GREETING and the idle lines must be at most 500 characters")
        if self.models_resident_cap < 1 or self.models_memory_budget_mb < 0:
            raise SettingsError(
                "MODELS_RESIDENT_CAP must be at least 1, MODELS_MEMORY_BUDGET_MB not negative"
            )
        if self.models_idle_ttl_s <= 0 or self.models_min_residency_s < 0:
            raise SettingsError(
                "MODELS_IDLE_TTL_S must be positive, MODELS_MIN_RESIDENCY_S not negative"
            )
        if self.memory_max_messages < 1 or self.memory_ttl_s <= 0:
            raise SettingsError("MEMORY_MAX_MESSAGES must be at least 1, MEMORY_TTL_S positive")
        for name, url in (
            ("STT_BASE_URL", self.stt_base_url),
            ("TTS_BASE_URL", self.tts_base_url),
            ("LLM_BASE_URL", self.llm_base_url),
            ("RECORDING_S3_ENDPOINT_URL", self.recording_s3_endpoint_url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.otel_exporter_otlp_endpoint),
        ):
            if url and not url.startswith(("http://", "https://")):
                raise SettingsError(f"{name} must be an http:// or https:// URL")
        if not 0 <= self.llm_threads <= 256:
            raise SettingsError("LLM_THREADS must be 0 (automatic) or between 1 and 256")
        if self.llm_context_tokens and self.llm_context_tokens < self.llm_max_tokens + 256:
            raise SettingsError(
                "LLM_CONTEXT_TOKENS must be 0 (the model's own) or at least LLM_MAX_TOKENS + 256"
            )
        from auth.limits import TenantPolicy, parse_participant_config
        from auth.tokens import MIN_HS256_SECRET_BYTES

        try:
            TenantPolicy.parse(self.tenant_limits)
            parse_participant_config(self.participant_config, "PARTICIPANT_CONFIG")
        except ValueError as e:
            raise SettingsError(str(e)) from None
        if self.auth_jwt_secret and len(self.auth_jwt_secret.encode()) < MIN_HS256_SECRET_BYTES:
            raise SettingsError(
                f"AUTH_JWT_SECRET must be at least {MIN_HS256_SECRET_BYTES} bytes (HS256 "
                "secrets shorter than the hash can be brute-forced)"
            )
        if self.dispatch_grant_secret and len(self.dispatch_grant_secret.encode()) < 32:
            raise SettingsError("DISPATCH_GRANT_SECRET must be at least 32 bytes")
        if self.auth_max_token_lifetime_s <= 0:
            raise SettingsError("AUTH_MAX_TOKEN_LIFETIME_S must be positive")
        if self.speak_max_audio_s <= 0:
            raise SettingsError("SPEAK_MAX_AUDIO_S must be positive")
        if self.max_sessions_per_room < 1 or self.participant_messages_per_minute < 1:
            raise SettingsError(
                "MAX_SESSIONS_PER_ROOM and PARTICIPANT_MESSAGES_PER_MINUTE must be at least 1"
            )
        if self.job_executor == "thread" and self.inference_mode != "shared":
            raise SettingsError(
                "JOB_EXECUTOR=thread needs INFERENCE_MODE=shared (each job thread would load "
                "its own copy of every model)"
            )
        if self.inference_address.startswith("@"):
            raise SettingsError(
                "INFERENCE_ADDRESS must be a filesystem path: an abstract socket (@name) has "
                "no permissions, so any local user could use it"
            )
        if self.llm_base_url and not self.llm_model:
            raise SettingsError("LLM_MODEL is required when LLM_BASE_URL is set")
        if self.tool_filler_after_s < 0 or not 256 <= self.tool_max_response_bytes <= 1 << 20:
            raise SettingsError(
                "TOOL_FILLER_AFTER_S must not be negative, TOOL_MAX_RESPONSE_BYTES 256-1048576"
            )
        if self.recording_retention_days < 0 or self.recording_min_free_mb < 0:
            raise SettingsError(
                "RECORDING_RETENTION_DAYS and RECORDING_MIN_FREE_MB must not be negative"
            )
        if len(self.tool_filler) > 500:
            raise SettingsError("TOOL_FILLER must be at most 500 characters")
        from agent.tools.box import check_settings

        try:
            check_settings(self)
        except ValueError as e:  # ToolSpecError too
            raise SettingsError(str(e)) from None

    def prewarm_phrases(self) -> list[str]:
        """The fixed lines (apology, greeting, idle prompt and goodbye, the tool filler),
        CACHE_PREWARM and the lines of CACHE_PREWARM_FILE, blanks dropped."""
        phrases = [self.llm_apology, self.greeting, self.user_idle_prompt, self.user_idle_goodbye]
        if self.tools or self.mcp_servers:  # tenants' tools: cached on first use
            phrases.append(self.tool_filler)
        phrases += [p.strip() for p in self.cache_prewarm.split("|")]
        if self.cache_prewarm_file:
            try:
                text = Path(self.cache_prewarm_file).read_text(encoding="utf-8")
            except OSError as e:
                raise SettingsError(f"CACHE_PREWARM_FILE: {e}") from e
            phrases += [line.strip() for line in text.splitlines()]
        return [p for p in phrases if p]

    def secret_values(self) -> list[str]:
        """The values of the secret settings, for the log redactor."""
        return [
            str(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata["secret"] and getattr(self, f.name)
        ]

    def redacted(self) -> dict[str, Any]:
        """Field values with secrets masked, for the startup log."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.metadata["secret"] and value else str(value)
        return out


def _parse(name: str, raw: str, hint: Any) -> Any:
    raw = raw.strip()
    origin = get_origin(hint)
    try:
        if origin is Literal:
            choices = get_args(hint)
            if raw.lower() not in choices:
                raise SettingsError(f"{name}={raw!r}: choose one of {', '.join(choices)}")
            return raw.lower()
        if hint is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{name}={raw!r}: expected true or false")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is Path:
            return Path(raw).expanduser()
        if hint is str or isinstance(hint, types.UnionType):
            return raw
    except ValueError as e:
        if isinstance(e, SettingsError):
            raise
        raise SettingsError(f"{name}={raw!r}: expected {getattr(hint, '__name__', hint)}") from e
    raise TypeError(f"unsupported settings type {hint!r} for {name}")


def _default_text(f: dataclasses.Field[Any]) -> str:
    return str(f.default)


def render_env_example() -> str:
    """``.env.example``: every variable with its default and meaning."""
    lines = [
        "# Environment of the voice worker (python -m agent ...). The value shown is the",
        "# default; only `start` needs some set (LIVEKIT_*).",
        "# Generated by `python -m agent config --env-example`.",
    ]
    group = None
    for f in dataclasses.fields(Settings):
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            lines += ["", f"# --- {group} ---"]
        lines.append(f"# {f.metadata['help']}")
        lines.append(f"{f.metadata['env']}={_default_text(f)}")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """``docs/configuration.md``: the same reference as a table per group."""
    out = [
        "# Configuration",
        "",
        "Every setting is an environment variable, read once at start into the typed "
        "`agent.settings.Settings`. This page is generated from it "
        "(`python -m agent config --markdown`); `.env.example` lists the same variables.",
    ]
    group = None
    for f in dataclasses.fields(Settings):
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            out += ["", f"## {group}", "", "| Variable | Default | Meaning |", "|---|---|---|"]
        default = _default_text(f) or "(empty)"
        secret = " Secret: never logged." if f.metadata["secret"] else ""
        out.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['help']}{secret} |")
    return "\n".join(out) + "\n"
