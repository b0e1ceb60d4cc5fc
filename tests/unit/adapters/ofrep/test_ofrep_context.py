"""An OFREP body read as OFREP says: not JSON is PARSE_ERROR, JSON no evaluation can use is
INVALID_CONTEXT."""

from __future__ import annotations

import pytest

from controller.adapters.ofrep.context import OfrepFailure, context_of, decoded
from controller.core.wire.evaluation import ErrorCode

PARSE, INVALID = ErrorCode.PARSE_ERROR, ErrorCode.INVALID_CONTEXT
KEYED = b'{"context": {"targetingKey": "u", '


@pytest.mark.parametrize(
    ("raw", "code", "reason"),
    [
        (b"{not json", PARSE, "not JSON"),
        (KEYED + b'"n": NaN}}', PARSE, "not JSON"),
        (KEYED + b'"n": -Infinity}}', PARSE, "not JSON"),
        (b'{"x": NaN, "context": {"targetingKey": "u"}}', PARSE, "not JSON"),
        (b'{"context": {"targetingKey": "\\ud800"}}', INVALID, "not valid Unicode"),
        (KEYED + b'"a": "x\\udc00"}}', INVALID, "not valid Unicode"),
        (KEYED + b'"\\ud800": 1}}', INVALID, "not valid Unicode"),
        (KEYED + b'"a": [{"b": "\\ud800"}]}}', INVALID, "not valid Unicode"),
        (KEYED + b'"n": 1e400}}', INVALID, "beyond the range of a double"),
        (KEYED + b'"n": -1e309}}', INVALID, "beyond the range of a double"),
        (KEYED + b'"n": 1' + b"0" * 400 + b"}}", INVALID, "beyond the range of a double"),
        (KEYED + b'"n": ' + b"9" * 5000 + b"}}", INVALID, "beyond the range of a double"),
    ],
)
def test_a_body_is_refused_with_the_code_ofrep_names(
    raw: bytes, code: ErrorCode, reason: str
) -> None:
    with pytest.raises(OfrepFailure) as refused:
        context_of(decoded(raw))
    assert (refused.value.status, refused.value.code) == (400, code)
    assert reason in refused.value.details


SURROGATE_ASIDE = b'{"x": "\\ud800", "context": {"targetingKey": "u", '


@pytest.mark.parametrize(
    ("raw", "attributes"),
    [
        (KEYED + b'"n": 1e308}}', {"n": 1e308}),
        (SURROGATE_ASIDE + b'"n": 2}}', {"n": 2}),
        (SURROGATE_ASIDE + b'"n": 123456789012345678901234567890}}', {"n": 1.2345678901234568e29}),
        (SURROGATE_ASIDE + b'"n": 18446744073709551615}}', {"n": 2**64 - 1}),
        (SURROGATE_ASIDE + b'"n": -9223372036854775808}}', {"n": -(2**63)}),
    ],
)
def test_what_lies_outside_the_context_or_fits_a_double_is_read_as_orjson_reads_it(
    raw: bytes, attributes: dict[str, object]
) -> None:
    assert context_of(decoded(raw)) == ("u", attributes)
