"""The text form of audience rules: a hand-written parser with positions, and its printer.

The grammar (``docs/clients.md``, "Audience rules")::

    rule      = or
    or        = and { "or" and }
    and       = unary { "and" unary }
    unary     = "not" unary | "(" or ")" | condition
    condition = NAME op value
              | NAME ["not"] "in" ( list | "segment" "(" STRING ")" )
    op        = "==" | "!=" | "<" | "<=" | ">" | ">=" | "starts_with" | "ends_with" | "contains"
    value     = STRING | NUMBER | "true" | "false"
              | "semver" "(" STRING ")" | "date" "(" STRING ")"
    list      = "[" value { "," value } "]"    (strings only or numbers only)

Strings and numbers are written as in JSON (double quotes, JSON escapes). A
chain of one operator is one node (``a and b and c``); parentheses keep the
nesting they show. :func:`parse` refuses anything else, and every bound of
:mod:`controller.core.rules.audience`, with a :class:`RuleSyntaxError` that names
the line and column (from 1, counting code points) and says what was
expected. :func:`to_text` prints a rule so that ``parse(to_text(r)) == r``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from pydantic import ValidationError

from controller.core.common import ControllerError
from controller.core.rules.audience import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_LIST_ITEMS,
    MAX_LIST_TOTAL,
    MAX_SAFE_INTEGER,
    MAX_STRING_CHARS,
    MAX_TEXT_CHARS,
    NAME_CHARS,
    AllOf,
    AnyOf,
    AudienceRule,
    Condition,
    Instant,
    Node,
    NotRule,
    Segment,
    Semver,
    attribute_problem,
    depth,
    operand_problem,
    value_kind,
)
from controller.core.rules.values import instant_ns, semver_key

_PUNCTUATION = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", "=", "!")
_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "starts_with", "ends_with", "contains")
_WHITESPACE = frozenset(" \t\r\n")
_NUMBER_CHARS = frozenset("0123456789+-.eE")
_EXPECTED_OPERATOR = (
    "an operator (==, !=, <, <=, >, >=, in, not in, starts_with, ends_with, contains)"
)


class RuleSyntaxError(ControllerError, ValueError):
    """A rule text that is refused, with where and why."""

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {reason}")
        self.reason, self.line, self.column = reason, line, column


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "name", "string", "number", "punct" or "end"
    text: str
    offset: int


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    while True:
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        if i == len(text):
            out.append(Token("end", "", i))
            return out
        start, char = i, text[i]
        if char == '"':
            i = _string_end(text, i)
            out.append(Token("string", text[start:i], start))
        elif char.isascii() and (char.isdigit() or char == "-"):
            while i < len(text) and text[i] in _NUMBER_CHARS:
                i += 1
            out.append(Token("number", text[start:i], start))
        elif char in NAME_CHARS:
            while i < len(text) and text[i] in NAME_CHARS:
                i += 1
            out.append(Token("name", text[start:i], start))
        else:
            punct = next((p for p in _PUNCTUATION if text.startswith(p, i)), None)
            if punct is None:
                raise _error(text, start, f"unexpected character {char!r}")
            i += len(punct)
            out.append(Token("punct", punct, start))


def _string_end(text: str, start: int) -> int:
    """The offset just after the string that opens at ``start``."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        elif text[i] == "\n":
            break
        else:
            i += 1
    raise _error(text, start, "a string that is not closed on its line")


def _error(text: str, offset: int, reason: str) -> RuleSyntaxError:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return RuleSyntaxError(reason, line, column)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0
        self.conditions = 0
        self.listed = 0
        self.nesting = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def fail(self, reason: str, token: Token | None = None) -> RuleSyntaxError:
        return _error(self.text, (token or self.token).offset, reason)

    def expected(self, what: str) -> RuleSyntaxError:
        found = "the end of the rule" if self.token.kind == "end" else repr(self.token.text)
        return self.fail(f"expected {what}, found {found}")

    def take(self, text: str, what: str | None = None) -> Token:
        token = self.token
        if token.text != text or token.kind not in ("name", "punct"):
            raise self.expected(what or repr(text))
        self.at += 1
        return token

    def accept(self, text: str) -> bool:
        if self.token.kind in ("name", "punct") and self.token.text == text:
            self.at += 1
            return True
        return False

    def rule(self) -> Node:
        node = self.chain("or")
        if self.token.kind != "end":
            raise self.expected("and, or, or the end of the rule")
        return node

    def chain(self, word: str) -> Node:
        """``or`` (of ``and`` chains) or ``and`` (of unaries): one node per chain."""
        start = self.token
        parts = [self.chain("and") if word == "or" else self.unary()]
        while self.accept(word):
            parts.append(self.chain("and") if word == "or" else self.unary())
        if len(parts) == 1:
            return parts[0]
        node: Node = (AnyOf if word == "or" else AllOf).model_validate({word: parts})
        return self.bounded(node, start)

    def bounded(self, node: Node, start: Token) -> Node:
        if depth(node) > MAX_DEPTH:
            raise self.fail(f"the rule nests deeper than {MAX_DEPTH} levels", start)
        return node

    def unary(self) -> Node:
        start = self.token
        if start.kind == "name" and start.text == "not":
            self.at += 1
            negated = self.nested(self.unary)
            return self.bounded(NotRule.model_validate({"not": negated}), start)
        if self.accept("("):
            node = self.nested(lambda: self.chain("or"))
            self.take(")", "')' or a continuation with and / or")
            return node
        return self.condition()

    def nested(self, parse: object) -> Node:
        """Guard the recursion, so a wall of '(' is refused rather than overflowing the stack."""
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.fail(
                f"the rule nests deeper than {MAX_DEPTH} levels", self.tokens[self.at - 1]
            )
        node: Node = parse()  # type: ignore[operator]
        self.nesting -= 1
        return node

    def condition(self) -> Condition:
        start = self.token
        if start.kind != "name":
            raise self.expected("an attribute name, not or (")
        problem = attribute_problem(start.text)
        if problem:
            raise self.fail(problem)
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.fail(f"more than {MAX_CONDITIONS} conditions")
        self.at += 1
        op_token = self.token
        if self.accept("not"):
            self.take("in", "in (after not)")
            op = "not in"
        elif self.accept("in"):
            op = "in"
        elif op_token.kind in ("name", "punct") and op_token.text in _OPERATORS:
            self.at += 1
            op = op_token.text
        else:
            raise self.expected(_EXPECTED_OPERATOR)
        value_token = self.token
        value = self.members() if op in ("in", "not in") else self.value()
        problem = operand_problem(op, value)
        if problem:
            raise self.fail(problem, value_token)
        try:
            return Condition(attribute=start.text, op=op, value=value)  # type: ignore[arg-type]
        except ValidationError as error:  # a bound the checks above missed: still a position
            raise self.fail(error.errors()[0]["msg"], start) from None

    def members(self) -> object:
        if self.token.text == "segment" and self.token.kind == "name":
            return self.call("segment")
        self.take("[", "a list [ … ] or segment(…)")
        first = self.token
        items = [self.value()]
        while self.accept(","):
            if len(items) == MAX_LIST_ITEMS:
                raise self.fail(f"more than {MAX_LIST_ITEMS} values in a list: use a segment")
            items.append(self.value())
        self.take("]", "',' or ']'")
        self.listed += len(items)
        if self.listed > MAX_LIST_TOTAL:
            raise self.fail(
                f"more than {MAX_LIST_TOTAL} listed values in the rule: use a segment", first
            )
        kinds = {value_kind(item) for item in items}
        if kinds not in ({"string"}, {"number"}):
            raise self.fail("a list holds only strings or only numbers", first)
        return items

    def value(self) -> object:
        token = self.token
        if token.kind == "string":
            self.at += 1
            return self.string(token)
        if token.kind == "number":
            self.at += 1
            return self.number(token)
        if token.kind == "name" and token.text in ("true", "false"):
            self.at += 1
            return token.text == "true"
        if token.kind == "name" and token.text in ("semver", "date"):
            return self.call(token.text)
        raise self.expected('a value: "text", a number, true, false, semver("…") or date("…")')

    def call(self, function: str) -> Semver | Instant | Segment:
        self.take(function)
        self.take("(", f"'(' after {function}")
        token = self.token
        if token.kind != "string":
            raise self.expected(f'a string in {function}("…")')
        self.at += 1
        text = self.string(token)
        self.take(")", f"')' to close {function}(")
        if function == "semver" and semver_key(text) is None:
            raise self.fail(
                f"{text!r} is not a semantic version such as 2.3.0 or 2.3.0-rc.1", token
            )
        if function == "date" and instant_ns(text) is None:
            raise self.fail(
                f"{text!r} is not a date (2024-01-01) or date-time (2024-01-01T12:00:00Z)", token
            )
        try:
            if function == "semver":
                return Semver(semver=text)
            return Instant(date=text) if function == "date" else Segment(segment=text)
        except ValidationError:
            raise self.fail(f"{text!r} is not a {function} name", token) from None

    def string(self, token: Token) -> str:
        try:
            text = json.loads(token.text)
        except ValueError:
            raise self.fail("a string with a bad escape (use JSON escapes)", token) from None
        if len(text) > MAX_STRING_CHARS:
            raise self.fail(
                f"a string of {len(text)} characters, at most {MAX_STRING_CHARS}", token
            )
        try:
            text.encode()
        except UnicodeEncodeError:
            raise self.fail("a string that is not Unicode (a lone surrogate)", token) from None
        return str(text)

    def number(self, token: Token) -> int | float:
        try:
            number = json.loads(token.text)
        except ValueError:
            raise self.fail(
                f"{token.text!r} is not a number (write it as in JSON)", token
            ) from None
        # An integer is range-checked as is: past a float's range isfinite would overflow.
        if not isinstance(number, int | float) or (
            isinstance(number, float) and not math.isfinite(number)
        ):
            raise self.fail(f"{token.text!r} is not a finite number", token)
        if isinstance(number, int) and abs(number) > MAX_SAFE_INTEGER:
            raise self.fail(
                f"an integer beyond ±{MAX_SAFE_INTEGER}: not exact in every client", token
            )
        return number


def parse(text: str) -> AudienceRule:
    """The rule a text says, or :class:`RuleSyntaxError` with its line and column."""
    if len(text) > MAX_TEXT_CHARS:
        raise _error(
            text, MAX_TEXT_CHARS, f"the rule is {len(text)} characters, at most {MAX_TEXT_CHARS}"
        )
    parser = _Parser(text)
    node = parser.rule()
    try:
        return AudienceRule(node)
    except ValidationError as error:
        raise _error(text, 0, error.errors()[0]["msg"]) from None


def to_text(rule: AudienceRule | Node) -> str:
    """The text form; ``parse(to_text(rule)) == rule``."""
    node = rule.root if isinstance(rule, AudienceRule) else rule
    if isinstance(node, AllOf | AnyOf):
        word = " and " if isinstance(node, AllOf) else " or "
        parts = node.all_of if isinstance(node, AllOf) else node.any_of
        return word.join(_grouped(part) for part in parts)
    if isinstance(node, NotRule):
        return "not " + _grouped(node.negated)
    return f"{node.attribute} {node.op} {_value_text(node.value)}"


def _grouped(node: Node) -> str:
    """A part of a chain or of ``not``: an inner chain keeps its parentheses."""
    text = to_text(node)
    return f"({text})" if isinstance(node, AllOf | AnyOf) else text


def _value_text(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value_text(item) for item in value) + "]"
    if isinstance(value, Semver | Instant | Segment):
        function, text = next(iter(value.model_dump().items()))
        return f"{'date' if function == 'date' else function}({_quoted(text)})"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quoted(value)
    return repr(value)  # int, or the shortest text that reads back as the same float


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
