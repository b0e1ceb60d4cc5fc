"""The one translation of aiokafka's errors into the controller's error tree.

Everything that calls aiokafka does so inside :func:`translated`, so the
rooms above the adapters handle :class:`~controller.core.errors.BrokerError`
only and never import aiokafka.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from controller.core.errors import BrokerError, BrokerUnavailable, MessageTooLarge

BROKER_FAILURES = (KafkaError, OSError)
"""What aiokafka raises when the broker fails or cannot be reached (timeouts are OSErrors)."""


def translate(exc: BaseException, context: str = "") -> BrokerError:
    """``exc`` as the controller's broker error, its message prefixed with ``context``."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | OSError):
        return BrokerUnavailable(f"{prefix}broker unreachable: {str(exc) or repr(exc)}")
    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError):
        return MessageTooLarge(f"{prefix}message too large for the broker: {exc}")
    return BrokerError(f"{prefix}broker error: {exc!r}", retriable=getattr(exc, "retriable", False))


@contextmanager
def translated(context: str = "") -> Iterator[None]:
    """Raise what fails inside as a :class:`BrokerError` (``context`` says what was tried)."""
    try:
        yield
    except BROKER_FAILURES as exc:
        raise translate(exc, context) from exc
