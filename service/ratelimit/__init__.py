"""Redis rate limiter: exact per-key limits shared by every process and host.

Import from the modules (`limiter`, `decision`, `policy`): `service.config` imports `policy`, so
this package's `__init__` must not import anything that imports the settings.
"""
