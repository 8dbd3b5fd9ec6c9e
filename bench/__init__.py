"""`make bench`: gatekey under wrk at many key counts, beside bare FastAPI, ASGI and slowapi."""
