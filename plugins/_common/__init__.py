"""Helpers shared by the engine plugins: asset store, audio conversion, error types."""
