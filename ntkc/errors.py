"""One family of exceptions for everything a user can get wrong.

Every error ntkc raises for a user mistake is an `NtkcError`. Errors about a `.arch` file carry
a `Span` and render as `file:line:col: message`, the source line, a caret and a `hint:`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A place in a `.arch` source: 1-based line and column, and the text of the source."""

    filename: str
    line: int
    column: int
    source: str = field(default="", repr=False, compare=False)
    length: int = 1

    def source_line(self) -> str:
        lines = source_lines(self.source)
        return lines[self.line - 1] if 0 < self.line <= len(lines) else ""

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"


def source_lines(source: str) -> list[str]:
    """The lines of a source as the parser counts them: split at "\n" only (str.splitlines also
    splits at U+2028, U+0085, form feeds and more, which would shift every line after them)."""
    return [line[:-1] if line.endswith("\r") else line for line in source.split("\n")]


class NtkcError(Exception):
    """Base of every error ntkc raises for something a user can fix."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        text = self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ArchError(NtkcError):
    """A mistake in a `.arch` description, located by a `Span`."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        self.span = span
        super().__init__(message, hint)

    def render(self) -> str:
        if self.span is None:
            return super().render()
        line = self.span.source_line()
        caret = " " * (self.span.column - 1) + "^" * max(1, min(self.span.length, len(line) - self.span.column + 1))
        text = f"{self.span}: {self.message}\n    {line}\n    {caret}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ArchSyntaxError(ArchError):
    """The text does not follow the grammar of the `.arch` language."""


class RuleError(NtkcError):
    """A layer rule is ill-formed (raised when it is registered or compiled)."""


class InputError(NtkcError, ValueError):
    """Arrays handed to a compiled kernel do not fit its `input` line, or hold NaN / inf."""


class BackendError(NtkcError):
    """A backend was asked for that cannot run here."""
