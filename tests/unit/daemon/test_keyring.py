"""The keyring: a reload swaps every key or none, and says which ids changed."""

from __future__ import annotations

import pytest

from controller.core.trust import signing
from controller.daemon.registries.keyring import KeyChange, Keyring

A, B, C = (signing.generate_key()[1] for _ in range(3))


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        ({"a": A}, {"a": A}, KeyChange()),
        ({"a": A}, {"a": A, "b": B}, KeyChange(added=("b",))),
        ({"a": A, "b": B}, {"b": B}, KeyChange(removed=("a",))),
        ({"a": A}, {"a": C}, KeyChange(replaced=("a",))),
        ({"a": A, "b": B}, {"c": C, "b": A}, KeyChange(("c",), ("a",), ("b",))),
    ],
)
def test_a_reload_names_what_changed(
    before: dict[str, str], after: dict[str, str], change: KeyChange
) -> None:
    keyring = Keyring(before)
    assert keyring.reload(after) == change
    assert sorted(keyring) == sorted(after)
    assert bool(change) is (before != after)


def test_a_key_that_does_not_load_keeps_every_old_key() -> None:
    keyring = Keyring({"a": A})
    with pytest.raises(ValueError, match="operator key 'eve'"):
        keyring.reload({"a": A, "b": B, "eve": "not-a-key"})
    assert list(keyring) == ["a"]
    assert KeyChange(added=("b",), removed=("a",)).summary() == "added b; removed a"
