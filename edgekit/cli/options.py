"""What the commands share: option types and callbacks, and JSON output."""

from __future__ import annotations

import json
from typing import Any

import click

from .._options import Finite
from ..errors import EdgekitError


def parsed(parser: str):
    """A click callback that runs a library parser (``models.parse_input_spec``, ...) and reports a bad value."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        import importlib

        module, _, name = parser.rpartition(".")
        fn = getattr(importlib.import_module(f"edgekit.{module or 'models'}"), name)
        try:
            return tuple(fn(v) for v in value) if isinstance(value, tuple) else (None if value is None else fn(value))
        except EdgekitError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, allow_nan=False))


RATIO = Finite(0, 1, max_open=True)


def multiple_of_32(value: int | None) -> int | None:
    if value is not None and value % 32:
        raise click.BadParameter(f"{value} is not a multiple of 32 (XNNPACK's int4 kernels); try 32, 64 or 128")
    return value


def fidelity_budgets(scope: str, verb: str):
    """``--max-kld`` and ``--min-top1``, a generation program's budgets in llama.cpp's terms, for every command that
    takes them (``scope``: how the command names the programs they apply to; ``verb``: what a miss does)."""

    def apply(f):
        f = click.option(
            "--min-top1",
            type=Finite(0, 100),
            metavar="PCT",
            help=f"{scope}: {verb} when the program's top token is your model's at fewer than this percent of the "
            "scored positions, e.g. 90.",
        )(f)
        return click.option(
            "--max-kld",
            type=Finite(0, min_open=True),
            metavar="NATS",
            help=f"{scope}: {verb} when the mean KL divergence from your model (llama-perplexity's protocol) is above "
            "this, e.g. 0.05.",
        )(f)

    return apply
