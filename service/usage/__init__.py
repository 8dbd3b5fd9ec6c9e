"""Usage accounting: per-key per-minute counts, counted in Redis, flushed to PostgreSQL, rolled up
per minute, hour or day for admins, and deleted once older than the retention."""
