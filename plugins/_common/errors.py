"""Errors raised by the engine plugins before a livekit-agents stream exists.

    PluginError
    ├── AssetError            a model file is missing or fails its checksum
    │   ├── AssetMissingError     not downloaded yet: run ``download-files``
    │   └── AssetCorruptError     on disk, but its SHA-256 differs from the pinned one
    └── ModelLoadError        the engine refused to load a model that is present

Errors during inference are translated at the plugin boundary into livekit-agents'
``APIConnectionError`` / ``APIStatusError`` so that the framework's retry and fallback
machinery sees them; these classes cover what happens at construction and download time.
"""

from __future__ import annotations


class PluginError(Exception):
    """Base class for the plugins' own errors."""


class AssetError(PluginError):
    """A model asset cannot be used."""


class AssetMissingError(AssetError):
    """The asset is not in the store; ``python -m agent download-files`` fetches it."""


class AssetCorruptError(AssetError):
    """The asset's content does not match its pinned checksum."""


class ModelLoadError(PluginError):
    """An engine failed to load its model. Never swallowed: a filter without its model
    must not pass audio through as if it were filtering."""
