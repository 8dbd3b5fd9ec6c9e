"""Rate limiting: exact per-key limits shared by every process and host (Redis), and the
in-process limiter it falls back on. Its script and key names live in `service.redis`.

Import from the modules (`limiter`, `decision`, `policy`): `service.config` imports `policy`, so
this package's `__init__` must not import anything that imports the settings.
"""
