# gatekey images, one build context, two targets (docs/install.md):
#   runtime (the default, last stage): the production image. The pinned runtime set and the
#            gatekey wheel, nothing else; runs `gatekey serve` as an unprivileged user.
#   staging: runtime plus the self-test's load tool, the test tools and tests/, so that
#            `docker compose exec app pytest tests/integration/ -v` runs against the installed wheel.
#
# The base is pinned by tag and digest, so a rebuild cannot pick up a different Python or Debian.
ARG PYTHON_IMAGE=python:3.12.7-slim-bookworm@sha256:60d9996b6a8a3689d36db740b49f4327be3be09a21122bd02fb8895abb38b50d

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 gatekey \
    && useradd --system --uid 10001 --gid gatekey --home-dir /app --shell /usr/sbin/nologin gatekey
WORKDIR /app

# Builds the wheel from the sources only: its migrations ship inside it as `service.migrations`.
FROM base AS builder
COPY pyproject.toml setup.py README.md LICENSE ./
COPY service ./service
COPY cli ./cli
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

# What both targets share: runtime dependencies at their pinned versions, then the wheel alone.
FROM base AS app
COPY requirements-runtime.txt ./
RUN pip install -r requirements-runtime.txt
# COPY, not a BuildKit bind mount: the classic builder (docker-compose v1) builds this file too.
COPY --from=builder /wheels /wheels
RUN pip install --no-deps /wheels/gatekey-*.whl && rm -r /wheels
ENV LOG_FORMAT=json
USER gatekey
EXPOSE 8000
# slim has no curl: Python's own urllib asks /healthz (the process answers, no dependency checks).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["gatekey", "serve", "--host", "0.0.0.0", "--port", "8000"]

# Staging: the production image plus what the checklist runs inside it. The tests import the
# installed wheel, never a copy of the sources; pyproject.toml carries pytest's configuration.
FROM app AS staging
USER root
COPY requirements-runtime.txt requirements-test.txt ./
# /app is the test user's working directory: pytest writes its cache there.
RUN pip install -r requirements-test.txt && chown gatekey:gatekey /app
COPY --chown=gatekey:gatekey pyproject.toml ./
COPY --chown=gatekey:gatekey tests ./tests
USER gatekey

# Production: `app` unchanged. Last, so a plain `docker build .` gives this image.
FROM app AS runtime
