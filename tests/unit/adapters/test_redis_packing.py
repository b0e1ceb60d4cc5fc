"""Commands packed by hiredis are the very bytes redis-py's own packer makes, or its error."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from controller.adapters.redis.client import (
    _PYTHON_PACKING,
    _packed_by_hiredis,
    pack_with_hiredis,
)

CONNECTION = Connection()
BIG = b"x" * 20_000  # past redis-py's buffer cutoff: it sends such values in pieces


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("GET", "k"), id="plain"),
        pytest.param(("SCRIPT LOAD", "return 1"), id="a name of two words"),
        pytest.param((b"CLIENT SETNAME", b"me"), id="a name of two words, as bytes"),
        pytest.param(("SET", "k", 7, 1.5, -0.25, 10**30, float("inf")), id="numbers"),
        pytest.param(("SET", "ké", "välue ✓", b"\x00\xff"), id="text and bytes"),
        pytest.param(("SET", "k", memoryview(b"view")), id="a memoryview"),
        pytest.param(("SET", "k", bytearray(b"ab")), id="a bytearray"),
        pytest.param(("SET", "k", BIG, "after"), id="a value past the cutoff"),
        pytest.param(
            ("EVALSHA", "a" * 40, 256, *[f"p:{i}" for i in range(256)], 60, *range(256)),
            id="a script naming hundreds of keys",
        ),
        pytest.param(("SET", "k", ""), id="empty"),
    ],
)
def test_the_same_bytes_as_redis_pys_packer(args: tuple[Any, ...]) -> None:
    ours = b"".join(_packed_by_hiredis(CONNECTION, *args))
    theirs = b"".join(bytes(part) for part in _PYTHON_PACKING(CONNECTION, *args))
    assert ours == theirs


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, DataError), (None, DataError), ("\ud800", UnicodeEncodeError)],
)
def test_what_redis_py_refuses_is_refused_the_same(value: Any, error: type) -> None:
    with pytest.raises(error):
        _PYTHON_PACKING(CONNECTION, "SET", "k", value)
    with pytest.raises(error):
        _packed_by_hiredis(CONNECTION, "SET", "k", value)


def test_every_asyncio_connection_packs_with_hiredis_once_installed() -> None:
    pack_with_hiredis()
    pack_with_hiredis()  # twice is once
    assert Connection.pack_command is _packed_by_hiredis
    assert b"".join(Connection().pack_command("PING")) == b"*1\r\n$4\r\nPING\r\n"
