# The controller image: `docker build -t rollout-controller .`
# Entry point `rollout-controller`; the default command runs the daemon with the
# defaults and the environment (mount a config file and pass `run --config FILE`).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
# Wheels of the project and every dependency, so the final image needs no build tools.
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-index --find-links /tmp/wheels rollout-controller \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin controller

USER 10001
WORKDIR /
# 8000: the API, console and webhooks; 8001: the health listener (/healthz,
# /readyz, /metrics) for probes only, answered however busy 8000 is.
EXPOSE 8000 8001
# The daemon drains on SIGTERM (flush, save, publish) within shutdown_grace_seconds.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=3)"]
ENTRYPOINT ["rollout-controller"]
CMD ["run"]
