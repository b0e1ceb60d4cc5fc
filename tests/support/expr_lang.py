"""The subset of expr-lang (the language of Argo Rollouts' ``successCondition`` and
``failureCondition``) that deploy-gate templates use, to evaluate them as Argo would.

Booleans and field access on ``result`` (``result.done``), ``!``/``not``, ``&&``/``and``,
``||``/``or``, ``==``/``!=`` and parentheses, with expr-lang's precedence (``!`` over ``==``
over ``&&`` over ``||``). Anything else is refused, so a template using more than this
fails its test instead of being read wrongly. Field access on a missing field is nil, as in
expr-lang, and nil is not true.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"\s*(&&|\|\||==|!=|!|\(|\)|[A-Za-z_][A-Za-z0-9_.]*)")
_WORDS = {"and": "&&", "or": "||", "not": "!"}


def evaluate(expression: str, env: Mapping[str, Any]) -> bool:
    """The truth of ``expression`` with ``env``'s variables (``result``)."""
    tokens = _tokens(expression)
    value, rest = _or(tokens, env)
    if rest:
        raise ValueError(f"unexpected {rest[0]!r} in {expression!r}")
    return value is True


def _tokens(expression: str) -> list[str]:
    found, at = [], 0
    while at < len(expression.rstrip()):
        match = _TOKEN.match(expression, at)
        if match is None:
            raise ValueError(f"not in the subset: {expression[at:]!r}")
        found.append(_WORDS.get(match.group(1), match.group(1)))
        at = match.end()
    return found


def _or(tokens: list[str], env: Mapping[str, Any]) -> tuple[Any, list[str]]:
    left, tokens = _and(tokens, env)
    while tokens[:1] == ["||"]:
        right, tokens = _and(tokens[1:], env)
        left = left is True or right is True
    return left, tokens


def _and(tokens: list[str], env: Mapping[str, Any]) -> tuple[Any, list[str]]:
    left, tokens = _equality(tokens, env)
    while tokens[:1] == ["&&"]:
        right, tokens = _equality(tokens[1:], env)
        left = left is True and right is True
    return left, tokens


def _equality(tokens: list[str], env: Mapping[str, Any]) -> tuple[Any, list[str]]:
    left, tokens = _unary(tokens, env)
    while tokens[:1] in (["=="], ["!="]):
        op = tokens[0]
        right, tokens = _unary(tokens[1:], env)
        left = (left == right) if op == "==" else (left != right)
    return left, tokens


def _unary(tokens: list[str], env: Mapping[str, Any]) -> tuple[Any, list[str]]:
    if not tokens:
        raise ValueError("the expression ends too soon")
    if tokens[0] == "!":
        value, rest = _unary(tokens[1:], env)
        if not isinstance(value, bool):
            raise TypeError(f"! of a non-boolean {value!r}")
        return not value, rest
    if tokens[0] == "(":
        value, rest = _or(tokens[1:], env)
        if rest[:1] != [")"]:
            raise ValueError("a parenthesis is not closed")
        return value, rest[1:]
    return _name(tokens[0], env), tokens[1:]


def _name(token: str, env: Mapping[str, Any]) -> Any:
    if token in ("true", "false"):
        return token == "true"
    head, *fields = token.split(".")
    if head not in env:
        raise NameError(f"unknown name {head!r}")
    value = env[head]
    for field in fields:
        value = value.get(field) if isinstance(value, Mapping) else None
    return value


def outcome(success: str, failure: str, result: Mapping[str, Any]) -> str:
    """What Argo Rollouts makes of one measurement with both conditions set: ``Failed`` when
    the failure condition holds, ``Successful`` when the success condition does, otherwise
    ``Inconclusive``."""
    env = {"result": result}
    if evaluate(failure, env):
        return "Failed"
    return "Successful" if evaluate(success, env) else "Inconclusive"
