"""The audit export's chain on the command line: its lines as written, and ``audit check``.

:func:`chained` turns the export's events into its lines, each naming the
digest of the one before, and ends them with the seal, signed when the export
was given an operator key (``--key-id``, ``--key``).
``rolloutctl audit check FILE`` reads a file back a line at a time
(:class:`~controller.ctl.report.audit_lines.ExportFile`) and names the first line
that fails (:func:`~controller.core.trust.audit_check.check`); the public keys
are the operator keys of ``--config``, and any ``--public-key ID=BASE64`` given:
given any, the seal must be signed by one. Given the controller's keys
(``--config``'s signing key, any ``--controller-key ID=BASE64``), each decision
must also be signed by one.

Exit codes of the check: 0 the export holds (its seal signed, or unsigned where
no operator key is given and without ``--require-signature``), 1 a line fails or
the file cannot be read, 2 usage, 78 bad configuration.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controller.core.common import ConfigError
from controller.core.release import read_key_record
from controller.core.trust import (
    AuditEvent,
    StateVerifier,
    audit_chain,
    audit_check,
    audit_line,
    signing,
)
from controller.ctl.arguments import MAX_LINE_BYTES
from controller.ctl.report.audit_lines import ExportFile
from controller.ctl.terminal import run_guarded, warn
from controller.ctl.usage import UsageError

if TYPE_CHECKING:
    from controller.settings import Settings

EXIT_FAILED = 1


def chained(
    events: Iterable[AuditEvent],
    *,
    since: datetime,
    until: datetime,
    types: Sequence[str],
    signer: audit_chain.Signer | None,
    read: Sequence[audit_chain.ReadOffsets] | None = None,
) -> Iterator[tuple[str | None, str]]:
    """Each event's (subject, line), chained from the start, then the seal's (None, line),
    which names the offsets ``read`` over where they are given."""
    start = audit_chain.start_digest(since, until, types)
    head, count = start, 0
    for event in events:
        line = audit_line(event.model_copy(update={"prevdigest": head}))
        head, count = audit_chain.line_digest(line.encode()), count + 1
        yield event.subject, line
    opened = audit_chain.SealData(
        since=since,
        until=until,
        types=list(types),
        events=0,
        start=start,
        head=start,
        read=None if read is None else list(read),
    )
    sealed = audit_chain.seal(opened, events=count, head=head, at=datetime.now(UTC), signer=signer)
    yield None, audit_chain.seal_line(sealed)


def signer_of(key_id: str | None, key: Path | None) -> audit_chain.Signer | None:
    """The operator key the seal is signed with, or None; both or neither must be given."""
    if key_id is None and key is None:
        return None
    if key_id is None or key is None:
        raise UsageError("--key-id and --key go together: the key that signs the seal")
    try:
        return audit_chain.Signer(key_id, signing.load_private_key(key.read_text(encoding="ascii")))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"--key {key}: not a readable Ed25519 private key ({error})") from error


def public_keys(settings: Settings | None, given: Sequence[str]) -> dict[str, Ed25519PublicKey]:
    """The operator public keys by id: ``--config``'s (``settings``), then each
    ``--public-key``."""
    texts: dict[str, str] = {}
    if settings is not None:
        for key_id, value in settings.engine.operator_keys.items():
            texts[key_id] = read_key_record(key_id, value).public_key
    texts.update(given_keys("--public-key", given))
    try:
        return {key_id: signing.load_public_key(text) for key_id, text in texts.items()}
    except ValueError as error:
        raise ConfigError(f"a public key is not a base64 Ed25519 key: {error}") from error


def given_keys(option: str, given: Sequence[str]) -> dict[str, str]:
    """Each ``ID=BASE64`` of ``option``, by id; a usage error names one without both."""
    texts: dict[str, str] = {}
    for item in given:
        key_id, _, text = item.partition("=")
        if not key_id or not text:
            raise UsageError(f"{option} {item!r}: give ID=BASE64")
        texts[key_id] = text
    return texts


def controller_keys(settings: Settings | None, given: Sequence[str]) -> StateVerifier | None:
    """The controller's public keys by id: its signing key's (``--config``'s ``settings``),
    then each ``--controller-key``; None when neither names one."""
    texts: dict[str, str] = {}
    try:
        text = None if settings is None else settings.signing.key_text()
        if settings is not None and text is not None:
            key = signing.load_private_key(text)
            texts[settings.signing.key_id] = signing.public_key_text(key.public_key())
        texts.update(given_keys("--controller-key", given))
        return StateVerifier(texts) if texts else None
    except ValueError as error:
        raise ConfigError(f"a controller key is not a base64 Ed25519 key: {error}") from error


def run_check(args: argparse.Namespace) -> int:
    """Check the file; print the verdict; return the exit code."""

    def checked() -> int:
        settings = None
        if args.config is not None:  # read once, for both kinds of key
            from controller.settings import load_settings  # noqa: PLC0415 - keep `--help` fast

            settings = load_settings(args.config)
        keys = public_keys(settings, args.public_key)
        controller = controller_keys(settings, args.controller_key)
        if args.max_line_bytes < 1:
            raise UsageError("--max-line-bytes must be at least 1")
        return check(
            args.file,
            keys,
            require_signature=args.require_signature,
            controller=controller,
            max_line_bytes=args.max_line_bytes,
        )

    return run_guarded(checked)


def check(
    file: Path,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    require_signature: bool,
    controller: StateVerifier | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> int:
    """The verdict on ``file``, printed; the exit code. Given operator ``keys``, the seal must
    be signed; given ``controller``, every decision must be signed by one of its keys."""
    trust = audit_check.Trust(keys, controller, require_signature)
    verdict = audit_check.check(ExportFile(file, max_line_bytes=max_line_bytes), trust)
    if isinstance(verdict, audit_check.Failed):
        print(f"{file}: line {verdict.line}: {verdict.reason}")
        return EXIT_FAILED
    said = f"{file}: {verdict.events:,} events, chained and counted"
    if verdict.signed_by is not None:
        said = (
            f"{file}: {verdict.events:,} events, chained, counted and signed by {verdict.signed_by}"
        )
    if controller is not None:
        by = ", ".join(verdict.decision_keys) or "no key (none in the span)"
        said += f"; {verdict.decisions:,} decisions, each signed by the controller ({by})"
    if verdict.signed_by is None:
        print(f"{said}; the seal is unsigned")
        if require_signature:
            warn("--require-signature: an unsigned seal vouches for nothing beyond the file")
            return EXIT_FAILED
        return 0
    print(said)
    return 0
