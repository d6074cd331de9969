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
