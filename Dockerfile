FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin controller

USER controller
WORKDIR /
ENTRYPOINT ["rollout-controller"]
CMD ["run"]
