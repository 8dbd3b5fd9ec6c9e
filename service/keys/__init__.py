"""API key repository: generate, hash, store, look up, revoke, rotate and expire keys."""
