"""The likely fix each failing check names: the checklist's "Common Issues & Quick Fixes"."""

from __future__ import annotations

POOL_SIZE = (
    "connection pool exhausted: raise DATABASE_POOL_SIZE / DATABASE_POOL_MAX_OVERFLOW "
    "(defaults 30 / 10) so each worker's pool covers its concurrent requests"
)
SESSION_CONTEXT = (
    "connections are not returned: open sessions only inside `async with get_session() as "
    "session:` and never keep a session beyond that block"
)
REDIS_BACKEND = (
    "rate limit not exact across processes: set RATE_LIMIT_BACKEND=redis with one REDIS_URL "
    "shared by every worker and host"
)
WORKER_BUDGET = (
    "lower the worker count or DATABASE_POOL_SIZE + DATABASE_POOL_MAX_OVERFLOW so that "
    "workers × (pool + overflow) fits max_connections − reserved connections"
)
KEY_CACHE = (
    "revocation is not seen by every worker in time: keep KEY_CACHE_TTL under 1 s so each "
    "worker's verification cache expires"
)
MEMORY_LEAK = (
    "a worker's memory grows with every request: look for per-request objects kept in module "
    "globals, unbounded caches or sessions held beyond their request"
)
METRICS_MULTIPROCESS = (
    "metrics are not exact across workers: run through `gatekey serve` (Prometheus multiprocess "
    "mode) and do not count /metrics scrapes"
)
MIGRATIONS = (
    "run `gatekey db upgrade`; a failing chain needs its migration's upgrade/downgrade fixed"
)
SETTINGS = "fix the named environment variable (or .env entry)"
PIP_CHECK = "pip install -r requirements.txt to restore consistent package versions"
POSTGRES = "start PostgreSQL or correct DATABASE_URL"
REDIS = "start Redis or correct REDIS_URL"
TESTS = "run from a checkout with the checklist's set installed: pip install -r requirements.txt"
ERRORS = "read the server log for the failing requests; the error rate must stay under 0.1 %"
SLOW_STEP = (
    "the deployment is too slow for this load: compare workers' CPU % with their count (add "
    "workers or hosts), read gatekey_db_pool_wait_seconds (raise DATABASE_POOL_SIZE) and Redis "
    "latency (REDIS_TIMEOUT trips the breaker)"
)
LATENCY = "profile the slowest endpoint and compare the deployment's settings with the baseline's"
KEY_VALIDATION = (
    "a CLI-created key must verify on the HTTP API: check that the CLI and the server share "
    "DATABASE_URL and KEY_PEPPER"
)
LIMIT_RESPONSES = "every limited response needs RateLimit-* headers and a 429 with Retry-After"
HEALTH = "readiness names the dependency that failed: start it or correct its URL"
WORKERS = "run the server through `gatekey serve --workers N`, which reports each worker's pid"
WORKER_RESOURCES = (
    "a worker reports no resources or none that move under load: run through `gatekey serve` "
    "(every worker samples its memory and CPU each second) and look for a worker that serves "
    "nothing (stuck event loop, failed start)"
)
NO_SERVICE_CONNECTIONS = (
    "no connection named `gatekey` in pg_stat_activity: give the self-test the deployment's "
    "DATABASE_URL"
)
UNEXPECTED = "the deployment answered something the contract does not allow: see the error"
METRICS_MISSING = "expose every metric gatekey documents from the service's registry"
UNHANDLED_EXCEPTION = (
    "an exception escaped its handler (the client may still have seen 200): read the server log "
    "at its first traceback and handle or fix the error where it is raised"
)
ERROR_RECORDS = "the server logged ERROR records: read them in the server log"
SERVER_LOG_MISSING = (
    "give the deployment's log with --server-log FILE (repeatable), or let the self-test start "
    "the server, so unhandled exceptions are judged"
)
USAGE_ACCOUNTING = (
    "usage accounting is broken: admitted requests do not reach PostgreSQL's api_key_usage; read "
    "the server log for `usage_flush_failed` (the flusher's database role needs INSERT and "
    "UPDATE on api_key_usage) and check USAGE_FLUSH_INTERVAL"
)
KEY_FEED = (
    "a key changed in the database is not refused in time: the workers' key-change feed "
    "(one query every 0.5 s) is not running or cannot read api_keys; read the server log"
)
BREAKER = (
    "the Redis circuit breaker is open or decisions fall back: check that every worker reaches "
    "REDIS_URL within REDIS_TIMEOUT; a breaker that never closes means its probe stopped"
)
SUITE_FAILED = (
    "integration tests fail: run `pytest` on each failing test id from the checkout and fix "
    "what it reports"
)
SUITE_DID_NOT_RUN = (
    "the integration suite did not run: read its output (`pytest tests/integration`), usually "
    "PostgreSQL or Redis not answering at DATABASE_URL / REDIS_URL, or missing dev requirements"
)
SOAK_FIXES = {
    "rss_mb": MEMORY_LEAK,
    "open_fds": (
        "a worker's open file descriptors keep growing: look for files, sockets or clients "
        "opened per request or per background cycle and never closed"
    ),
    "pg_connections": SESSION_CONTEXT,
    "redis_clients": (
        "Redis connections keep growing: open Redis clients only through create_redis() at "
        "start-up and close them at shutdown, never per request"
    ),
}
SOAK_UNMEASURED = (
    "the soak could not read the workers' memory from /metrics: serve through `gatekey serve`"
)
