"""Local speech engines packaged as LiveKit Agents plugins.

One package per engine; each subclasses the livekit-agents base class for its capability
and can be used in any ``AgentSession``:

- ``plugins.whisper``: speech-to-text on faster-whisper (``stt.STT``)
- ``plugins.piper``: text-to-speech on Piper / onnxruntime (``tts.TTS``)
- ``plugins.smart_turn``: audio end-of-turn detection on Smart Turn v3 (streaming turn detector)
- ``plugins.noise``: RNNoise and DeepFilterNet noise filters (``rtc.FrameProcessor``)
- ``plugins.llama``: an embedded llama.cpp LLM (``llm.LLM``)

Model files come from installed packages or from the asset store under the cache directory
(``plugins._common.assets``), filled by ``download-files``; nothing is fetched at run time.
"""
