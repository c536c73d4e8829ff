"""Per-participant recordings (stereo OGG/Opus) and transcripts, opt-in by policy and request."""
