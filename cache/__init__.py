"""Content-addressed clip cache and asset store under CACHE_PATH (see issue: the clip cache)."""
