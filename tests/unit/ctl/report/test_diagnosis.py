"""Where rolloutctl asks for the controller's readiness reason."""

from __future__ import annotations

import pytest

from controller.ctl.looking.diagnosis import ENV_HEALTH_URL, health_url


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8001"),
        ("https://controller.example:443", "https://controller.example:444"),
        ("http://[::1]:8000", "http://[::1]:8001"),
        ("http://controller.example", None),  # no port: nothing to guess from
        ("http://127.0.0.1:65535", None),
        ("http://127.0.0.1:notaport", None),
    ],
)
def test_the_health_port_is_the_next_one_by_default(
    base: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_HEALTH_URL, raising=False)
    assert health_url(base) == expected


def test_the_environment_names_the_health_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_HEALTH_URL, "http://probes.internal:9000/")
    assert health_url("http://127.0.0.1:8000") == "http://probes.internal:9000"
