"""The LiveKit worker: VoiceManager, settings, CLI."""

__version__ = "0.1.0"
