"""``rolloutctl segment``'s commands: refused on the operator's machine with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.rules import segments
from controller.ctl.operate.segments import commands_for, read_ids
from controller.ctl.usage import UsageError


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ('plan in ["pro"] and\n  country ~ "TH"', "line 2, column 11"),
        ("plan ==", "line 1, column 8"),
        ('plan like "pro"', "expected an operator"),
        ("(" * 11 + "a == 1" + ")" * 11, "deeper than 10"),
        ("a == 1 and " * 64 + "a == 1", "line 1, column 705: more than 64 conditions"),
        ("x" * 4097, "4096"),
        ("a in [" + ", ".join(f'"{i}"' for i in range(300)) + "]", "256 values in a list"),
        ('u in segment("beta")', "cannot name a segment"),
    ],
)
def test_bad_rules_are_refused_with_their_position_and_reason(rule: str, problem: str) -> None:
    with pytest.raises(UsageError, match="invalid") as caught:
        commands_for("pros", action="put", actor="ana", key_id="ops", rule=rule)
    assert problem in str(caught.value)


def test_an_id_list_too_big_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(segments, "MAX_IDS", 10)
    ids = [f"u{i}" for i in range(11)]
    with pytest.raises(UsageError, match="11 ids, at most 10"):
        commands_for("beta", action="put", actor="ana", key_id="ops", ids=ids)


def test_an_ids_file_without_ids_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("\n  \n\n")
    with pytest.raises(UsageError, match="holds no ids; to empty a segment, delete it"):
        commands_for("beta", action="put", actor="ana", key_id="ops", ids=read_ids(path))


def test_an_ids_file_becomes_signed_parts_of_one_upload(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(f"  unit-{i:06d}-{'w' * 60}  " for i in range(20_000)) + "\n\n")
    ids = read_ids(path)
    made = commands_for("beta", action="put", actor="ana", key_id="ops", ids=ids)
    parts = [c.ids for c in made]
    first = parts[0]
    assert first is not None
    assert len(parts) > 1
    assert {(p.upload, p.parts, p.count) for p in parts if p} == {(first.upload, len(made), 20_000)}
    assert [p.part for p in parts if p] == list(range(len(made)))


def test_an_ids_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ids.bin"
    path.write_bytes(b"unit-1\n\xff\xfe\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_ids(path)
