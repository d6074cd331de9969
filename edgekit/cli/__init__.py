"""The ``edgekit`` command line: parses options, calls the library, shows results (through :mod:`edgekit.cli.render`).

Outcomes are decided by the library, which raises :class:`~edgekit.errors.EdgekitError` subclasses that carry their
own exit code (0 success, 1 a failure of the work, 2 a usage error); :class:`_Group` turns them into that exit
code and one line, in one place. Commands import torch only when they need it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from .._version import __version__
from ..errors import EdgekitError, first_line
from .options import emit_json


class _Group(click.Group):
    """Every command runs inside this group's ``invoke``: errors become one line and their exit code here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgekitError as exc:
            if exc.exit_code == 2:
                raise click.UsageError(str(exc)) from None  # no context: click would print the usage lines first
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; nothing was written") from None
        except click.UsageError as exc:  # click's own (an unknown option, a bad choice): one line too, with the hint
            if exc.ctx is None:
                raise
            hint = f"see `{exc.ctx.command_path} --help`"
            raise click.UsageError(f"{exc.format_message()} (hint: {hint})") from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug or an unforeseen failure: still one line, traceback on request
            if os.environ.get("EDGEKIT_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {first_line(exc)} (hint: rerun with "
                "EDGEKIT_DEBUG=1 for the traceback, and please report it)"
            ) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """Package PyTorch models as verified ExecuTorch programs and measure what they cost on a CPU."""


@cli.group()
def targets() -> None:
    """List and show build targets."""


@targets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the targets as JSON.")
def targets_list(as_json: bool) -> None:
    """List the built-in targets."""
    from ..targets import list_targets
    from . import render

    items = list_targets()
    emit_json([t.to_dict() for t in items]) if as_json else render.targets(items)


@targets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the target as JSON.")
def targets_show(name: str, as_json: bool) -> None:
    """Show a target (built-in NAME or a .toml path) as TOML."""
    from ..targets import load_target

    t = load_target(name)
    emit_json(t.to_dict()) if as_json else click.echo(f"# {t.source}\n" + t.to_toml(), nl=False)


@cli.command()
@click.option(
    "--out", "-o", type=click.Path(), default="build/demo", show_default=True, help="Folder for the demo's packages."
)
@click.option("--force", is_flag=True, help="Replace an earlier demo folder.")
@click.option(
    "--epochs", type=click.IntRange(1, 200), default=15, show_default=True, help="Training epochs for the digits CNN."
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def demo(out: str, force: bool, epochs: int, as_json: bool) -> None:
    """Train a small CNN on scikit-learn's digits, build fp32, int8 and pruned int8 programs, compare them."""
    from ..demo import run_demo
    from . import render

    con = render.console()
    result = run_demo(out, force=force, epochs=epochs, log=lambda msg: con.print(msg))
    emit_json(result) if as_json else render.demo(result)


@cli.command("explain")
@click.argument("package", type=click.Path())
@click.option(
    "--runs", type=click.IntRange(5), default=50, show_default=True, help="Traced runs (ETDump) behind the times."
)
@click.option("--threads", type=click.IntRange(1), help="Threads (default: the package's target).")
@click.option(
    "--sort",
    "sort_by",
    type=click.Choice(["order", "time", "sqnr"]),
    default="order",
    show_default=True,
    help="Execution order, slowest first, or least faithful first.",
)
@click.option("--top", type=click.IntRange(1), metavar="N", help="Only the first N rows.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Also write a self-contained HTML page.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def explain_cmd(
    package: str,
    runs: int,
    threads: int | None,
    sort_by: str,
    top: int | None,
    html_out: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Explain PACKAGE in your model's module names: time per module, delegated or not, quantized or not, each
    module's fidelity, and the memory plan.

    \b
    Examples:
      edgekit explain build/net --sort time --top 10
      edgekit explain build/net --sort sqnr --html explain.html
    """
    from ..explain import explain, html_page, sort_rows
    from ..fileops import temp_name
    from . import render

    bar = render.PhaseProgress(quiet, "explain")
    try:
        ex = explain(package, runs=runs, threads=threads, progress=bar)
    finally:
        bar.close()
    ordered = sort_rows(ex, sort_by)[:top] if top else sort_rows(ex, sort_by)
    if html_out:
        out = Path(html_out)
        tmp = out.with_name(temp_name(out.name))
        tmp.write_text(html_page(ex, ordered), encoding="utf-8")
        os.replace(tmp, out)
    if as_json:
        emit_json(ex.to_dict())
        return
    render.explanation(ex, ordered)
    if html_out:
        render.console(stderr=False).print(f"HTML: {html_out}")


from .bench import bench, cache  # noqa: E402
from .build import build  # noqa: E402
from .device import devices, runner  # noqa: E402
from .profile import generate, profile  # noqa: E402
from .tune import tune  # noqa: E402

for _command in (bench, build, cache, devices, generate, profile, runner, tune):
    cli.add_command(_command)


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False))
def clean(folders: tuple) -> None:
    """Remove what killed edgekit processes left behind in FOLDERS (default: the current folder).

    Only temporary files and folders named .NAME.PID.TOKEN.tmp whose process no longer runs are removed.
    """
    from ..fileops import remove_stale_temps

    removed = [p for f in (folders or (".",)) for p in remove_stale_temps(f)]
    for p in removed:
        click.echo(f"removed {p}")
    click.echo(f"{len(removed)} leftover(s) removed")


def main() -> None:
    """Console-script entry point."""
    # Like other tools that take module:attr specs (uvicorn, flask), resolve them from the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cli(prog_name="edgekit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
