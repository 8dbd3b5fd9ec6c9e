"""Usage accounting: per-key per-minute counts, counted in Redis and flushed to PostgreSQL."""
