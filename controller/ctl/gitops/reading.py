"""Reading a directory of desired state: its object files and the ids files segments name.

Hidden files and folders are skipped; at most :data:`MAX_FILES` files of at most
``MAX_YAML_BYTES`` each are read; an unreadable file, or an ids file outside the
directory, is a problem of that file, never an exception.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from controller.core.common import MAX_YAML_BYTES, ConfigError, load_document
from controller.ctl.gitops.desired import DesiredState, parse_files
from controller.ctl.operate import SUFFIXES, UsageError, read_ids

MAX_FILES = 1000
"""The most object files a directory may hold: a bound on what one apply reads."""


def read_directory(root: Path) -> DesiredState:
    """Every object file under ``root`` (hidden files and folders skipped), and the ids files
    its segments name; unreadable files are problems, not exceptions."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    paths = sorted(p for p in root.rglob("*") if _object_file(p, root))
    if len(paths) > MAX_FILES:
        raise ConfigError(f"{root}: {len(paths)} files, more than {MAX_FILES}")
    documents: dict[str, object] = {}
    problems: list[str] = []
    for path in paths:
        source = str(path.relative_to(root))
        try:
            documents[source] = load_document(_text(path), source=source, name=path.name)
        except ConfigError as exc:
            problems.append(str(exc))
    state = parse_files(documents, _ids_files(root, documents), datetime.now(UTC))
    state.problems[:0] = problems
    return state


def _object_file(path: Path, root: Path) -> bool:
    """A YAML or JSON file, not hidden, not a link leading out of the directory."""
    parts = path.relative_to(root).parts
    if path.suffix not in SUFFIXES or any(p.startswith(".") for p in parts):
        return False
    return path.is_file() and root.resolve() in path.resolve().parents


def _text(path: Path) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{path.name}: more than {MAX_YAML_BYTES} bytes")
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path.name}: {exc}") from exc


def _ids_files(root: Path, documents: dict[str, object]) -> dict[str, tuple[str, ...] | str]:
    found: dict[str, tuple[str, ...] | str] = {}
    for source, data in documents.items():
        named = data.get("ids_file") if isinstance(data, dict) else None
        if not isinstance(named, str):
            continue
        path = (root / source).parent / named
        if root.resolve() not in path.resolve().parents:
            found[source] = "outside the directory"
            continue
        try:
            found[source] = tuple(read_ids(path))
        except (OSError, UsageError) as exc:
            found[source] = str(exc)
    return found
