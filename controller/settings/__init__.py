"""Settings: frozen, grouped, every field documented, secrets masked.

Sources, highest precedence first: keyword arguments, environment variables
(``RC_<GROUP>__<FIELD>``, e.g. ``RC_INGEST__MAX_BATCH_RECORDS=2000``; the
conventional ``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and ``LLM_BASE_URL``
work too), the YAML
config file given with ``--config``, then the defaults in :mod:`controller.settings.groups`
and in the modules beside it (one module per group of settings may join them there).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from controller.core.common import ConfigError, load_yaml
from controller.core.wire import JsonObject
from controller.settings.groups import (
    EngineSettings,
    IngestSettings,
    KafkaSettings,
    LogSettings,
    RedisSettings,
    TopicSettings,
)
from controller.settings.history import HistorySettings
from controller.settings.http import HttpSettings
from controller.settings.llm import LlmSettings
from controller.settings.otlp import OtlpEncoding, OtlpSettings
from controller.settings.prometheus import PrometheusSettings
from controller.settings.retry import RetrySettings
from controller.settings.signing import SigningSettings
from controller.settings.unleash import UnleashSettings

__all__ = [
    "EngineSettings",
    "HistorySettings",
    "HttpSettings",
    "IngestSettings",
    "KafkaSettings",
    "LlmSettings",
    "LogSettings",
    "OtlpEncoding",
    "OtlpSettings",
    "PrometheusSettings",
    "RedisSettings",
    "RetrySettings",
    "Settings",
    "SigningSettings",
    "TopicSettings",
    "UnleashSettings",
    "load_settings",
    "mask_url",
]


class Settings(BaseSettings):
    """Every setting of the controller."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="RC_",
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    unleash: UnleashSettings = Field(default_factory=UnleashSettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)
    otlp: OtlpSettings = Field(default_factory=OtlpSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    shutdown_grace_seconds: float = Field(
        default=10.0, gt=0, description="SIGTERM drains for at most this long, then cancels."
    )
    _file_data: ClassVar[Mapping[str, object]] = {}
    """The config file's contents: the lowest-precedence source (see load_settings)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file = _FileSource(settings_cls, cls._file_data)
        return (init_settings, _ConventionalEnv(settings_cls), env_settings, file)

    def masked(self) -> JsonObject:
        """The effective settings as plain data, secrets shown as ``'**********'``."""
        data: JsonObject = self.model_dump(mode="json")
        urls = {"redis": self.redis.url, "unleash": self.unleash.url}
        urls["prometheus"] = self.prometheus.url
        for group, url in urls.items():
            shown = data[group]
            if url is not None and isinstance(shown, dict):
                shown["url"] = mask_url(url)
        return data


class _ConventionalEnv(PydanticBaseSettingsSource):
    """``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and ``LLM_BASE_URL``, as their tools read them."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, dict[str, str]]:
        import os  # noqa: PLC0415 - read at call time so tests can set the environment

        out: dict[str, dict[str, str]] = {}
        if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            out["kafka"] = {"bootstrap_servers": bootstrap}
        if url := os.environ.get("REDIS_URL"):
            out["redis"] = {"url": url}
        if llm := os.environ.get("LLM_BASE_URL"):
            out["llm"] = {"base_url": llm}
        return out


def mask_url(url: str) -> str:
    """Hide a password embedded in a URL (``redis://:secret@host`` → ``redis://:***@host``)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user = creds.partition(":")[0]
    return f"{scheme}://{user}:***@{host}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML file (if any), the environment and ``overrides``.

    Raises :class:`ConfigError` naming the file and the offending field.
    """
    file_data: Mapping[str, object] = {}
    if config_file is not None:
        try:
            text = config_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        try:
            loaded = load_yaml(text, source="it")
        except ConfigError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {config_file} must hold a mapping at the top level")
        file_data = loaded or {}
    try:
        return _with_file_defaults(file_data)(**overrides)
    except ValidationError as exc:
        where = f" (config file {config_file})" if config_file else ""
        raise ConfigError(f"invalid settings{where}: {exc}") from exc


def _with_file_defaults(file_data: Mapping[str, object]) -> type[Settings]:
    """A Settings subclass whose lowest-precedence source is the file's contents."""
    return type("Settings", (Settings,), {"_file_data": file_data})


class _FileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, object]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, object]:
        return {**self._data}
