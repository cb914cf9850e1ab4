"""The serving code a team writes for a runtime, counted when a run is made (the report only reads it).

Lines holding code: comments, docstrings and blank lines left out, so a runtime that is configured
rather than programmed counts 0.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

from bench.config import RuntimeSpec
from bench.results.schema import ServingCode

NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
            tokenize.ENDMARKER}


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def _python_code_lines(text: str) -> int:
    """Lines holding code: a token other than a comment, and not part of a docstring."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - _docstring_lines(ast.parse(text)))


def count_code_lines(path: Path) -> int:
    """Non-blank, non-comment lines (Python docstrings count as comments)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".py":
        try:
            return _python_code_lines(text)
        except (SyntaxError, tokenize.TokenError):
            pass  # not parseable: fall back to the line-based count
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith(("#", "//")))


def serving_code(runtime: RuntimeSpec) -> ServingCode:
    """The files runtime.yaml lists under serving_code and their lines (None if one cannot be read)."""
    files = tuple(runtime.serving_code)
    try:
        lines: int | None = sum(count_code_lines(path) for path in runtime.serving_code_paths())
    except OSError:
        lines = None
    return ServingCode(files=files, lines=lines)
