"""JWT verification and per-tenant limits for the HTTP API and dispatch admission."""
