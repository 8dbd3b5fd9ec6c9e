"""Worker pool: sizing against PostgreSQL, the supervised server processes, background work."""

# How the supervisor tells each worker the pool's size (the local limiter fallback divides by it).
WORKER_COUNT_ENV = "GATEKEY_WORKER_COUNT"
