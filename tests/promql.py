"""Split a PromQL expression at its top-level comparison and set operators.

An alert's expression returns nothing while all is well, so "returns at least one series" is
asked of its operands: ``a / b > 0.01 and on () c == 1`` -> ``a / b``, ``c`` (numbers dropped).
"""

from __future__ import annotations

import re

_COMPARISON = ("==", "!=", ">=", "<=", ">", "<")
_SET = ("and", "or", "unless")
_MODIFIER = re.compile(r"^\s*(bool\b|(on|ignoring)\s*\([^)]*\)|(group_left|group_right)(\s*\([^)]*\))?)\s*")
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def _top_level_split(expr: str, operators: tuple[str, ...]) -> list[str]:
    parts, depth, start, i, quote = [], 0, 0, 0, ""
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            op = _operator_at(expr, i, operators)
            if op:
                parts.append(expr[start:i])
                i += len(op)
                start = i
                continue
        i += 1
    parts.append(expr[start:])
    return parts


def _operator_at(expr: str, i: int, operators: tuple[str, ...]) -> str:
    for op in operators:
        if not expr.startswith(op, i):
            continue
        if op.isalpha():  # a word: not part of a longer name (e.g. "order", "android")
            before = expr[i - 1] if i else " "
            after = expr[i + len(op)] if i + len(op) < len(expr) else " "
            if before.isalnum() or before in "_:" or after.isalnum() or after in "_:":
                continue
        return op
    return ""


def _strip_modifiers(part: str) -> str:
    while True:
        stripped = _MODIFIER.sub("", part, count=1)
        if stripped == part:
            return part.strip()
        part = stripped


def operands(expr: str) -> list[str]:
    """The top-level operands of set and comparison operators; number literals left out."""
    out = []
    for side in _top_level_split(expr, _SET):
        for operand in _top_level_split(_strip_modifiers(side), _COMPARISON):
            operand = _strip_modifiers(operand)
            if operand and not _NUMBER.match(operand):
                out.append(operand)
    return out
