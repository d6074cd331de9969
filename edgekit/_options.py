"""Click parameter types and helpers shared by the command groups."""

from __future__ import annotations

import math

import click


class Finite(click.FloatRange):
    """A float range that also refuses nan and inf (click's own range lets nan through: nan compares false)."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        v = super().convert(value, param, ctx)
        if v is not None and not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()


def defaulted(param: str) -> bool:
    """Whether the running command's ``param`` came from its default, not the command line."""
    return click.get_current_context().get_parameter_source(param) is click.core.ParameterSource.DEFAULT


def flag(param: str) -> str:
    """The running command's spelling of its parameter ``param`` (``eval_data`` → ``--eval``; itself when unknown)."""
    for p in click.get_current_context().command.params:
        if p.name == param:
            return p.opts[0]
    return param


def given_flags(params: tuple[str, ...]) -> list[str]:
    """The spellings of those of ``params`` given on the command line (not left at their default)."""
    return [flag(p) for p in params if not defaulted(p)]
