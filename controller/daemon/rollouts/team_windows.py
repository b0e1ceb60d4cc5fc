"""The team's release windows, read from ``engine.windows_file`` at start.

The settings name the file, not the windows: ``controller.settings`` ships in
the app SDK's wheel, which must not carry the calendar (python-dateutil, the
recurrence rules), so the windows are read here, by the daemon, and checked
as a plan's are (:func:`controller.core.rollouts.windows.read_team_windows`).
"""

from __future__ import annotations

from pathlib import Path

from controller.core.common import MAX_YAML_BYTES, ConfigError
from controller.core.rollouts import Window, read_team_windows


def read_windows_file(path: Path | None) -> tuple[Window, ...]:
    """The windows in ``path`` (none without one); :class:`ConfigError` names the setting,
    the file and the field."""
    if path is None:
        return ()
    source = f"engine.windows_file {path}"
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_YAML_BYTES + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {source}: {exc}") from exc
    return read_team_windows(text, source=source, name=path.name)
