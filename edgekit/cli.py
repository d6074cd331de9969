"""The ``edgekit`` command line. The only place that turns errors into exit codes and prints.

Exit codes: 0 success, 1 an error in the work (bad model, data, program, budget), 2 a usage error.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from . import __version__
from .errors import EdgekitError


def _console(stderr: bool = True):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def handle_errors(fn: Callable) -> Callable:
    """Turn EdgekitError into click's exit codes, with a one-line message and no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgekitError as exc:
            if exc.usage:
                raise click.UsageError(str(exc)) from None
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; nothing was written") from None

    return wrapper


def _parse_inputs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
    from .errors import InputSpecError
    from .models import parse_input_spec

    try:
        return tuple(parse_input_spec(v) for v in values)
    except InputSpecError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_dynamic_batch(ctx: click.Context, param: click.Parameter, value: str | None):
    from .errors import InputSpecError
    from .models import parse_dynamic_batch

    if value is None:
        return None
    try:
        return parse_dynamic_batch(value)
    except InputSpecError as exc:
        raise click.BadParameter(str(exc)) from None


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """Package PyTorch models as verified ExecuTorch programs and measure what they cost on a CPU."""


# --------------------------------------------------------------------------------------------- build
class _Progress:
    """Stage progress on stderr: a line per stage with its time (stdout stays clean for --json)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.console = _console()
        self._status = None

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        if event.state == "start":
            self._status = self.console.status(f"[bold]{event.stage}[/] {event.detail}".rstrip())
            self._status.start()
            return
        if self._status is not None:
            self._status.stop()
            self._status = None
        if event.state == "done":
            self.console.print(f"  [green]✓[/] {event.stage:<9} {event.seconds:7.2f} s  [dim]{event.detail}[/]")
        else:
            self.console.print(f"  [dim]–[/] {event.stage:<9}    skip    [dim]{event.detail}[/]")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()


def _fmt_db(v: Any) -> str:
    return "exact" if v is None else f"{v:.1f} dB"


def print_build_summary(result: Any) -> None:
    from rich.table import Table

    m = result.manifest
    con = _console(stderr=False)
    v = m["verify"]
    d = m["program"]["delegation"]
    t = Table(title=f"edgekit build → {result.out_dir}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("model", m["model"]["spec"])
    t.add_row("target", f"{m['target']['name']} ({m['target']['backend']}, quantize={m['quantize']['scheme']})")
    if m["quantize"].get("applied"):
        t.add_row("calibration", f"{m['quantize']['calibration']} ({m['quantize']['calibration_samples']} samples)")
    if m["prune"].get("applied"):
        t.add_row("pruning", m["prune"].get("summary", ""))
    t.add_row("program", f"{m['program']['size_bytes'] / 1024:.1f} KiB, sha256 {m['program']['sha256'][:12]}…")
    t.add_row("planned memory", f"{m['program']['planned_memory']['planned_bytes'] / 1024:.1f} KiB")
    t.add_row("delegation", f"{d['delegated_partitions']} partition(s), {d['delegated_nodes']} nodes delegated, "
                            f"{d['portable_nodes']} on portable kernels")
    t.add_row("verify", f"{v['samples']} samples from {v['data']}: SQNR {_fmt_db(v['sqnr_db'])}, "
                        f"cosine {v['cosine_similarity']:.5f}, max |err| {v['max_abs_error']:.3g}"
              + (f", top-1 agreement {v['top1_agreement']:.1%}" if "top1_agreement" in v else ""))
    if "accuracy" in v:
        a = v["accuracy"]
        t.add_row("accuracy", f"eager {a['eager']:.2%} → program {a['program']:.2%} (drop {a['drop'] * 100:+.2f} pts)")
    t.add_row("time", f"{m['timings_s']['total']:.1f} s")
    con.print(t)
    for w in m["warnings"]:
        _console().print(f"[yellow]warning:[/] {w}")


@cli.command()
@click.argument("model")
@click.option("--target", "-t", default="xnnpack-fp32", show_default=True, help="Built-in target name or a .toml path.")
@click.option("--input", "-i", "inputs", multiple=True, callback=_parse_inputs, metavar="SHAPE[:DTYPE]",
              help="Example input, e.g. 1x3x224x224 or 1x128:int64; repeat for several inputs.")
@click.option("--dynamic-batch", callback=_parse_dynamic_batch, metavar="MIN:MAX", help="Export the batch dimension as dynamic.")
@click.option("--calibration", "-c", type=click.Path(), help="Calibration data: .npz/.npy/.pt or a folder of them.")
@click.option("--eval", "eval_data", type=click.Path(), help="Held-out data (inputs, optional labels) for verification and accuracy.")
@click.option("--out", "-o", type=click.Path(), required=True, help="Package folder to write (model.pte + manifest.json).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def build(model: str, target: str, inputs: tuple, dynamic_batch: Any, calibration: str | None, eval_data: str | None,
          out: str, force: bool, as_json: bool, quiet: bool) -> None:
    """Build MODEL into a verified ExecuTorch package.

    MODEL is package.module:factory, path/to/file.py:factory, or a .pt2 saved with torch.export.save.

    \b
    Example:
      edgekit build mypkg.nets:make_net -i 1x3x224x224 -t xnnpack-int8 -c calib.npz -o build/net
    """
    from .pipeline.build import build as run_build
    from .targets import load_target

    tgt = load_target(target)  # fail on a bad target before the slow imports
    progress = _Progress(quiet)
    if not quiet:
        _console().print(f"[bold]edgekit build[/] {model} → {out} [dim](target {tgt.name})[/]")
    try:
        result = run_build(model, tgt, out=out, inputs=inputs, calibration=calibration, eval=eval_data,
                           dynamic_batch=dynamic_batch, force=force, progress=progress)
    finally:
        progress.close()
    if as_json:
        _emit_json(result.manifest)
    else:
        print_build_summary(result)


# ------------------------------------------------------------------------------------------- targets
@cli.group()
def targets() -> None:
    """List and show build targets."""


@targets.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def targets_list(as_json: bool) -> None:
    """List the built-in targets."""
    from rich.table import Table

    from .targets import list_targets

    items = list_targets()
    if as_json:
        _emit_json([t.to_dict() for t in items])
        return
    table = Table()
    for col in ("name", "backend", "quantization", "pruning"):
        table.add_column(col, no_wrap=True)
    table.add_column("description", ratio=1)
    for t in items:
        prune = "none" if not t.prune.active else f"channels {t.prune.structured_ratio:.0%}, sparsity {t.prune.sparsity:.0%}"
        table.add_row(t.name, t.backend.value, t.quantize.scheme.value, prune, t.description)
    _console(stderr=False).print(table)


@targets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def targets_show(name: str, as_json: bool) -> None:
    """Show a target (built-in NAME or a .toml path) as TOML."""
    from .targets import load_target

    t = load_target(name)
    if as_json:
        _emit_json(t.to_dict())
    else:
        click.echo(f"# {t.source}\n" + t.to_toml(), nl=False)


# ---------------------------------------------------------------------------------------------- demo
@cli.command()
@click.option("--out", "-o", type=click.Path(), default="build/demo", show_default=True, help="Folder for the demo's packages.")
@click.option("--force", is_flag=True, help="Replace existing demo packages.")
@click.option("--epochs", type=click.IntRange(1, 200), default=15, show_default=True, help="Training epochs for the digits CNN.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@handle_errors
def demo(out: str, force: bool, epochs: int, as_json: bool) -> None:
    """Train a small CNN on scikit-learn's digits, build fp32 and int8 programs, compare them."""
    from .demo import run_demo

    con = _console()
    result = run_demo(out, force=force, epochs=epochs, log=lambda msg: con.print(msg))
    if as_json:
        _emit_json(result)
        return
    from rich.table import Table

    table = Table(title="edgekit demo: digits CNN (scikit-learn load_digits, 360 held-out images)", title_justify="left")
    for col in ("variant", "accuracy", "size", "p50 latency", "SQNR vs eager"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for row in result["rows"]:
        table.add_row(row["variant"], f"{row['accuracy']:.2%}", f"{row['size_kib']:.1f} KiB",
                      f"{row['p50_ms']:.4f} ms" if row.get("p50_ms") is not None else "–",
                      "–" if row.get("sqnr_db", "–") == "–" else _fmt_db(row["sqnr_db"]))
    _console(stderr=False).print(table)
    _console(stderr=False).print(f"[dim]{result['timing_note']}[/]")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgekit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
