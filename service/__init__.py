"""gatekey: API keys, exact distributed rate limiting, usage accounting and a built-in self-test."""
