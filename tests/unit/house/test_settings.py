"""Settings: file, environment and conventional variables; secrets masked; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.core.common.errors import ConfigError
from controller.settings import load_settings, mask_url


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    s = load_settings()
    assert s.topics.events == "rollout.events"
    assert s.topics.dlq == "rollout.dlq"
    assert s.kafka.bootstrap_servers == "localhost:9092"


def test_precedence_env_over_file_and_conventional_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "kafka:\n  bootstrap_servers: file:1\n  sasl_password: hunter2\n"
        "ingest:\n  max_batch_records: 77\n  fetch_timeout_ms: 5\n"
    )
    monkeypatch.setenv("RC_INGEST__FETCH_TIMEOUT_MS", "9")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:2")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@cache:6379/1")
    s = load_settings(config)
    assert s.kafka.bootstrap_servers == "env:2"
    assert s.ingest.max_batch_records == 77
    assert s.ingest.fetch_timeout_ms == 9
    masked = s.masked()
    kafka, redis = masked["kafka"], masked["redis"]
    assert isinstance(kafka, dict)
    assert isinstance(redis, dict)
    assert kafka["sasl_password"] == "**********"
    assert redis["url"] == "redis://:***@cache:6379/1"
    assert "hunter2" not in repr(s)
    assert "pw@" not in str(masked)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ingest:\n  max_batch_records: lots\n", "ingest.max_batch_records"),
        ("ingest:\n  unknown_knob: 1\n", "unknown_knob"),
        ("- a list\n", "mapping"),
        ("kafka: [\n", "cannot read"),
        ("http:\n  port: 9000\n  health_port: 9000\n", "health_port"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(config)


def test_cli_reports_bad_config_with_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("redis:\n  key_prefix: 'has space'\n")
    assert main(["config", "show", "--config", str(config)]) == 78
    assert "redis.key_prefix" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://h:1/0", "redis://h:1/0"),
        ("redis://:secret@h:1/0", "redis://:***@h:1/0"),
        ("rediss://user:secret@h:1", "rediss://user:***@h:1"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_unleash_secrets_are_masked() -> None:
    settings = load_settings(
        unleash={"url": "http://admin:pw@unleash:4242", "admin_token": "*:*.secret"}
    )
    shown = settings.masked()["unleash"]
    assert isinstance(shown, dict)
    assert shown["url"] == "http://admin:***@unleash:4242"
    assert shown["admin_token"] == "**********"
    assert settings.unleash.admin_token is not None
    assert settings.unleash.admin_token.get_secret_value() == "*:*.secret"
