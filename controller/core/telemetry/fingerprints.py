"""What broke, as one short name: a failure's fingerprint, from what the app already sends.

Pure. A failure is named by where it comes from, never by its particulars, so that one bug is
one fingerprint and no personal data is kept:

* an exception (a span's ``exception`` event, an ERROR log record): ``exception.type`` and the
  top frame of ``exception.stacktrace`` (the innermost frame of Python's traceback, the first
  of Java's, Node's, .NET's and Go's), else ``code.function`` and ``code.filepath``;
* a failed request: its HTTP status class and ``http.route`` (``5xx GET /cart/{id}``);
* an error the SDK reports: its kind.

Every part is scrubbed (:func:`scrub`): numbers, hex, UUIDs and e-mail addresses become
placeholders, so ``KeyError: 'user-4711'`` and ``KeyError: 'user-981'`` are one fingerprint,
and an address written into a message never reaches the store. One example message is kept
per fingerprint, scrubbed the same way and cut to :data:`MAX_EXAMPLE_CHARS`. Input is bounded
before it is read: a stack trace past :data:`MAX_STACK_CHARS` is read to there, a message
past :data:`MAX_MESSAGE_CHARS` likewise, so a 1 MB message costs what a short one does.

The texts are the app's, and an app's messages are text anyone who can make it fail can
write: a fingerprint is data to quote, never an instruction (docs/architecture.md, *What
broke*).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MAX_STACK_CHARS: Final = 16_384
"""The part of a stack trace read for its top frame (a frame is found in its first lines)."""
MAX_MESSAGE_CHARS: Final = 4_096
"""The part of a message read for its example."""
MAX_EXAMPLE_CHARS: Final = 160
"""An example message is cut to this many characters."""
MAX_PART_CHARS: Final = 120
"""A fingerprint's type, frame or route is cut to this many characters."""

_UUID = re.compile(r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_HEX = re.compile(
    r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_LOOSE_NUMBER = re.compile(r"(?<![A-Za-z_\d])\d+(?:[.,]\d+)*(?![A-Za-z_\d])")
"""A number that is not part of a name (``Http2Error`` keeps its 2, ``5xx`` its 5, ``line 42``
nothing)."""
_ANSI = re.compile(r"\x1b[]PX^_][^\x00-\x1f]*(?:\x07|\x1b\\)?|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
"""A terminal's escape sequence, dropped whole: a string (a title or a link set, OSC, and
DCS, SOS, PM, APC) to its BEL or ST, else to the next control character; a control
sequence (colours, cursor moves); any other escape."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")


def scrub(text: str, *, limit: int = MAX_EXAMPLE_CHARS, names: bool = False) -> str:
    """``text`` with what identifies a person or an instance replaced (UUIDs, e-mail
    addresses, hex, numbers), control and bidirectional characters dropped, white space
    folded, and cut to ``limit`` characters (an ellipsis marks the cut). ``names``: the text
    is a type, a frame or a route, whose names keep their digits (``Http2Error``)."""
    text = _CONTROL.sub("", _ANSI.sub("", text[:MAX_MESSAGE_CHARS]))
    text = _UUID.sub("<uuid>", text)
    text = _EMAIL.sub("<email>", text)
    text = _HEX.sub("<hex>", text)
    text = (_LOOSE_NUMBER if names else _NUMBER).sub("<n>", text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """One kind of failure: what it is, where, and an example of its message."""

    kind: str
    """``exception``, ``http`` or ``sdk``."""
    name: str
    """The exception's type, the status class and method, or the SDK error's kind."""
    where: str
    """The top frame (``checkout/cart.py:price``), the route, or "" where none is known."""
    example: str = ""
    """One message of this failure, scrubbed and cut; "" where it had none."""

    @property
    def key(self) -> str:
        """A stable short id of the fingerprint (its example aside): 16 hex characters."""
        said = f"{self.kind}\x1f{self.name}\x1f{self.where}".encode()
        return hashlib.blake2b(said, digest_size=8).hexdigest()

    @property
    def title(self) -> str:
        """As people read it: ``KeyError in checkout/cart.py:price``, ``5xx GET /cart/{id}``."""
        if self.kind == "http":
            return f"{self.name} {self.where}".strip()
        return f"{self.name} in {self.where}" if self.where else self.name


def exception_fingerprint(attributes: Mapping[str, object]) -> Fingerprint | None:
    """An exception's fingerprint from its semantic-convention attributes; None where it
    names neither a type nor a message nor a place."""
    kind = _text(attributes.get("exception.type"))
    message = _text(attributes.get("exception.message"))
    where = top_frame(_text(attributes.get("exception.stacktrace"))) or _code_place(attributes)
    if not (kind or message or where):
        return None
    name = scrub(kind, limit=MAX_PART_CHARS, names=True) if kind else "exception"
    example = scrub(f"{kind}: {message}" if kind and message else message or kind)
    return Fingerprint("exception", name, where, example)


def http_fingerprint(status: int, route: str, method: str = "") -> Fingerprint | None:
    """A failed request's fingerprint: its status class (5xx; 4xx) and its route; None for a
    status that is not a failure (below 400 or not an HTTP status)."""
    if not 400 <= status <= 599:
        return None
    verb = method.upper() if method.isalpha() and len(method) <= 10 else ""
    name = f"{status // 100}xx" + (f" {verb}" if verb else "")
    return Fingerprint("http", name, scrub(route, limit=MAX_PART_CHARS, names=True))


def sdk_fingerprint(kind: str, message: str = "") -> Fingerprint:
    """An error the SDK reported, by its kind (``TIMEOUT``, ``PARSE_ERROR``...)."""
    name = scrub(kind, limit=MAX_PART_CHARS, names=True) or "error"
    return Fingerprint("sdk", name, "", scrub(message) if message else "")


# --- top frames --------------------------------------------------------------------------

_PYTHON_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+, in (?P<fn>\S+)', re.M)
_JAVA_FRAME = re.compile(
    r"^\s*at (?P<fn>[\w$.<>/]+)"
    r"\((?P<file>[\w$-]+\.(?:java|kt|scala|groovy|clj)|Unknown Source|Native Method)(?::\d+)?\)",
    re.M,
)
_DOTNET_FRAME = re.compile(
    r"^\s*at (?P<fn>[\w.`<>]+)\([^)]*\)(?: in (?P<file>.+?):line \d+)?\s*$", re.M
)
_NODE_FRAME = re.compile(
    r"^\s*at (?:(?:async )?(?P<fn>[^\s(]+) )?\(?(?P<file>[^()\s]+?):\d+(?::\d+)?\)?\s*$", re.M
)
_GO_FRAME = re.compile(r"^(?P<fn>\S+?)\([^)\n]*\)\n\t(?P<file>\S+?):\d+", re.M)
_GO_MACHINERY = ("runtime.", "runtime/", "go.opentelemetry.io/")
"""Go frames of the runtime and of OpenTelemetry's own recording, above the app's."""
_GO_CLOSURE = re.compile(r"(?:func|gowrap|deferwrap)?\d*")
"""The part of a Go closure's name the compiler makes: ``func1`` of ``main.handler.func1``,
``2`` of a closure within it, ``gowrap1`` of a ``go`` statement's."""


def top_frame(stacktrace: str) -> str:
    """The frame a failure was raised in, as ``file:function`` with the path cut to its last
    two parts (``checkout/cart.py:price``); "" where no frame is recognised. Python's
    traceback lists the innermost frame last; Java's, .NET's and Node's first; Go's first
    below the runtime's and OpenTelemetry's own."""
    text = stacktrace[:MAX_STACK_CHARS]
    if not text:
        return ""
    python = _PYTHON_FRAME.findall(text)
    if python:
        file, fn = python[-1]
        return _place(file, _last_name(fn))
    java = _JAVA_FRAME.search(text)
    if java:  # the file has no folder: its package's last part stands for one
        package = java["fn"].rsplit(".", 2)[0] if java["fn"].count(".") >= 2 else ""
        return _place(f"{package.rsplit('.', 1)[-1]}/{java['file']}", _last_name(java["fn"]))
    for pattern in (_DOTNET_FRAME, _NODE_FRAME):
        found = pattern.search(text)
        if found:
            return _place(found["file"] or "", _last_name(found["fn"] or ""))
    for found in _GO_FRAME.finditer(text):
        if not found["fn"].startswith(_GO_MACHINERY):
            return _place(found["file"], _go_function(found["fn"]))
    return ""


def _last_name(fn: str) -> str:
    """A function's own name, its module, package or class cut (``price`` of
    ``com.shop.Cart.price``)."""
    return fn.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


def _go_function(fn: str) -> str:
    """A Go function's own name (``Price`` of ``main.(*Cart).Price``); a closure's keeps the
    function it is written in (``handler.func1`` of ``main.handler.func1``), since each
    function's first closure is ``func1``."""
    parts = fn.rsplit("/", 1)[-1].split(".")
    kept = 1
    while kept < len(parts) - 1 and _GO_CLOSURE.fullmatch(parts[-kept]):
        kept += 1
    return ".".join(parts[-kept:])


def _code_place(attributes: Mapping[str, object]) -> str:
    """``code.filepath`` and ``code.function`` (or their newer names) as a place."""
    file = _text(attributes.get("code.file.path") or attributes.get("code.filepath"))
    fn = _text(attributes.get("code.function.name") or attributes.get("code.function"))
    return _place(file, _last_name(fn)) if file or fn else ""


def _place(file: str, fn: str) -> str:
    """``file`` cut to its last two parts, and the function ``fn`` as it is said."""
    parts = [p for p in re.split(r"[\\/]", file) if p]
    short = "/".join(parts[-2:])
    said = f"{short}:{fn}" if short and fn else short or fn
    return scrub(said, limit=MAX_PART_CHARS, names=True)


def _text(value: object) -> str:
    return value[:MAX_STACK_CHARS] if isinstance(value, str) else ""
