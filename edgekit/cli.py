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

    con = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not con.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        con = Console(stderr=stderr, highlight=False, soft_wrap=True, width=140)
    return con


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
        except click.ClickException:
            raise
        except Exception as exc:  # a bug or an unforeseen failure: still one line, traceback on request
            import os

            if os.environ.get("EDGEKIT_DEBUG"):
                raise
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise click.ClickException(f"unexpected {type(exc).__name__}: {first} (hint: rerun with EDGEKIT_DEBUG=1 for "
                                       "the traceback, and please report it)") from None

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
        p = m["prune"]
        t.add_row("pruning", p.get("summary", ""))
        if p.get("structured_ratio") or p.get("layers"):
            t.add_row("params / MACs", f"{p['params_before']:,} → {p['params_after']:,} ({p['params_ratio']:.0%}) / "
                                       f"{p['macs_before']:,} → {p['macs_after']:,} ({p['macs_ratio']:.0%})")
        pruned_layers = [r for r in p.get("layers", []) if r["out_after"] != r["out_before"]]
        if pruned_layers:
            shown = ", ".join(f"{r['layer']} {r['out_before']}→{r['out_after']}" for r in pruned_layers[:6])
            more = f" (+{len(pruned_layers) - 6} more in the manifest)" if len(pruned_layers) > 6 else ""
            t.add_row("channels kept", shown + more)
        if p.get("finetune"):
            f = p["finetune"]
            t.add_row("fine-tune", f"{f['epochs']} epoch(s) on {f['samples']} samples, loss {f['epoch_losses'][0]} → {f['epoch_losses'][-1]}")
        sc = m["program"].get("size_comparison")
        if sc:
            t.add_row("sparsity", f"{p['sparsity_achieved']:.1%} zeros; deflated program {sc['without_sparsity']['deflate_bytes'] / 1024:.1f} → "
                                  f"{sc['with_sparsity']['deflate_bytes'] / 1024:.1f} KiB (not faster: dense kernels)")
    t.add_row("program", f"{m['program']['size_bytes'] / 1024:.1f} KiB ({m['program']['compressed_size_bytes'] / 1024:.1f} KiB deflated), "
                         f"sha256 {m['program']['sha256'][:12]}…")
    t.add_row("planned memory", f"{m['program']['planned_memory']['planned_bytes'] / 1024:.1f} KiB")
    t.add_row("delegation", f"{d['delegated_partitions']} partition(s), {d['delegated_nodes']} nodes delegated, "
                            f"{d['portable_nodes']} on portable kernels")
    t.add_row("verify", f"{v['samples']} samples from {v['data']}: SQNR {_fmt_db(v['sqnr_db'])}, "
                        f"cosine {v['cosine_similarity']:.5f}, max |err| {v['max_abs_error']:.3g}"
              + (f", top-1 agreement {v['top1_agreement']:.1%}" if "top1_agreement" in v else ""))
    if v.get("accuracy_note"):
        t.add_row("accuracy", v["accuracy_note"])
    if v.get("accuracy"):
        a = v["accuracy"]
        pruned = f" → pruned eager {a['pruned_eager']:.2%}" if "pruned_eager" in a else ""
        t.add_row("accuracy", f"eager {a['eager']:.2%}{pruned} → program {a['program']:.2%} (drop {a['drop'] * 100:+.2f} pts)")
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
@click.option("--prune-channels", type=click.FloatRange(0, 1, max_open=True), metavar="RATIO",
              help="Structured pruning: fraction of channels to remove (overrides the target).")
@click.option("--sparsity", type=click.FloatRange(0, 1, max_open=True), metavar="RATIO",
              help="Magnitude sparsity: fraction of weights to zero (smaller download, not faster).")
@click.option("--prune-ignore", multiple=True, metavar="LAYER", help="Layer name to keep whole; repeatable.")
@click.option("--prune-layer", multiple=True, metavar="LAYER=RATIO", help="Per-layer channel ratio; repeatable.")
@click.option("--prune-importance", type=click.Choice(["l1", "l2"]), help="Channel ranking for structured pruning.")
@click.option("--prune-scope", type=click.Choice(["layer", "global"]), help="Same ratio per layer, or one global ranking.")
@click.option("--prune-round-to", type=click.IntRange(1), metavar="N", help="Keep channel counts multiples of N.")
@click.option("--finetune", type=click.Path(), help="Labelled training data for recovery fine-tuning after pruning.")
@click.option("--finetune-epochs", type=click.IntRange(0), metavar="N", help="Fine-tuning epochs (default 3 with --finetune).")
@click.option("--finetune-lr", type=click.FloatRange(0, min_open=True), metavar="LR", help="Fine-tuning learning rate.")
@click.option("--max-accuracy-drop", type=click.FloatRange(0, 1), metavar="FRACTION",
              help="Fail when the program's top-1 accuracy is this much below the original model's (needs --eval).")
@click.option("--out", "-o", type=click.Path(), required=True, help="Package folder to write (model.pte + manifest.json).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def build(model: str, target: str, inputs: tuple, dynamic_batch: Any, calibration: str | None, eval_data: str | None,
          prune_channels: float | None, sparsity: float | None, prune_ignore: tuple, prune_layer: tuple,
          prune_importance: str | None,
          prune_scope: str | None, prune_round_to: int | None, finetune: str | None, finetune_epochs: int | None,
          finetune_lr: float | None, max_accuracy_drop: float | None, out: str, force: bool, as_json: bool,
          quiet: bool) -> None:
    """Build MODEL into a verified ExecuTorch package.

    MODEL is package.module:factory, path/to/file.py:factory, or a .pt2 saved with torch.export.save.

    \b
    Example:
      edgekit build mypkg.nets:make_net -i 1x3x224x224 -t xnnpack-int8 -c calib.npz -o build/net
    """
    from .pipeline.build import build as run_build
    from .targets import load_target

    tgt = load_target(target)  # fail on a bad target before the slow imports
    overrides = {f"prune__{k}": v for k, v in (("structured_ratio", prune_channels), ("sparsity", sparsity),
                                               ("importance", prune_importance), ("scope", prune_scope),
                                               ("round_to", prune_round_to)) if v is not None}
    if prune_ignore:
        overrides["prune__ignore"] = tuple(prune_ignore)
    if prune_layer:
        from .errors import UsageError

        ratios = {}
        for item in prune_layer:
            name, sep, value = item.rpartition("=")
            try:
                ratios[name] = float(value)
            except ValueError:
                name = ""
            if not sep or not name or not 0 <= ratios.get(name, -1) < 1:
                raise UsageError(f"--prune-layer {item!r} is not LAYER=RATIO with 0 <= RATIO < 1", "e.g. --prune-layer layer1.0.conv1=0.3")
        overrides["prune__layer_ratios"] = ratios
    if max_accuracy_drop is not None:
        if eval_data is None:
            from .errors import UsageError

            raise UsageError("--max-accuracy-drop needs --eval with labelled data to measure accuracy",
                             "add --eval test.npz (inputs 'x', labels 'y')")
        overrides["budget__max_accuracy_drop"] = max_accuracy_drop
    if overrides:
        tgt = tgt.replace(**overrides)
    progress = _Progress(quiet)
    if not quiet:
        _console().print(f"[bold]edgekit build[/] {model} → {out} [dim](target {tgt.name})[/]")
    try:
        result = run_build(model, tgt, out=out, inputs=inputs, calibration=calibration, eval=eval_data,
                           dynamic_batch=dynamic_batch, finetune=finetune, finetune_epochs=finetune_epochs,
                           finetune_lr=finetune_lr, force=force, progress=progress)
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



# ------------------------------------------------------------------------------------------- profile
class _ProfileProgress:
    def __init__(self, quiet: bool, label: str):
        self.quiet = quiet
        self.label = label
        self.status = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.quiet:
            return
        text = f"[bold]{self.label}[/] {phase}" + (f" {done}/{total}" if total else "")
        if self.status is None:
            self.status = _console().status(text)
            self.status.start()
        else:
            self.status.update(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _f(v: Any, unit: str = "", digits: int = 4) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}g}{unit}"


def print_profile(results: list, con: Any = None) -> None:
    """Latency, memory and energy sections for people (one row per thread setting)."""
    from rich.table import Table

    con = con or _console(stderr=False)
    first = results[0]
    subj = first.subject
    title = subj.get("package") or subj.get("pte") or f"eager {subj.get('eager')}"
    con.print(f"[bold]edgekit profile[/] {title}  [dim]engine {first.engine}, "
              f"inputs {subj.get('input_source')}, {first.machine['cpu_model']}[/]")
    lat = Table(title="latency (ms): timed runs", title_justify="left")
    for col in ("threads", "runs", "p50", "p50 95% CI", "p90", "p99", "mean ± std", "min", "max", "outliers"):
        lat.add_column(col, justify="right")
    for r in results:
        s = r.latency_ms
        lat.add_row(f"{r.threads['effective']}", str(s.count), f"[bold]{_f(s.p50)}[/]",
                    f"{s.ci95_median[0]:.4g}–{s.ci95_median[1]:.4g}", _f(s.p90), _f(s.p99),
                    f"{_f(s.mean)} ± {_f(s.std, digits=2)}", _f(s.min), _f(s.max), str(s.outliers))
    con.print(lat)
    for r in results:
        p = r.phases
        con.print(f"[dim]{r.threads['effective']} thread(s): load {_f(p.load_ms)} ms · first run {_f(p.first_run_ms)} ms · "
                  f"warm-up {p.warmup_runs} runs, mean {_f(p.warmup_mean_ms)} ms[/]")
    con.print(f"[dim]percentiles: {first.latency_ms.percentile_method}; CI: {first.latency_ms.ci_method}[/]")
    mem = Table(title="memory (MiB, resident set of the worker)", title_justify="left")
    for col in ("threads", "baseline", "after load", "peak", "load Δ", "peak Δ", "USS peak", "planned", ".pte"):
        mem.add_column(col, justify="right")
    for r in results:
        m = r.memory
        mem.add_row(f"{r.threads['effective']}", _f(m.baseline_rss_mb), _f(m.load_rss_mb), _f(m.peak_rss_mb),
                    _f(m.load_delta_mb), _f(m.peak_delta_mb), _f(m.uss_mb), _f(m.planned_mb), _f(m.pte_size_mb))
    con.print(mem)
    con.print(f"[dim]baseline: {first.memory.baseline_note}[/]")
    en = Table(title="energy proxies (timed runs)", title_justify="left")
    for col in ("threads", "CPU s/run", "CPU util.", "ctx sw. vol/invol", "J/run", "source"):
        en.add_column(col, justify="right")
    for r in results:
        e = r.energy
        en.add_row(f"{r.threads['effective']}", _f(e.cpu_seconds_per_run), f"{e.cpu_utilization:.2f}",
                   f"{e.voluntary_ctx_switches}/{e.involuntary_ctx_switches}", _f(e.joules_per_run), e.joules_source)
    con.print(en)
    e = first.energy
    con.print(f"[dim]{e.joules_note}" + (f"; inputs {e.estimate_inputs}" if e.estimate_inputs else "") + "[/]")
    if e.cpu_freq_mhz:
        con.print(f"[dim]CPU frequency: {e.cpu_freq_mhz['current']} MHz now (max {e.cpu_freq_mhz['max']})[/]")
    for r in results:
        if r.ops:
            ops = Table(title=f"top operators by time ({r.threads['effective']} thread(s), {r.ops['runs']} traced runs)",
                        title_justify="left")
            for col in ("operator", "kind", "calls/run", "mean ms", "share"):
                ops.add_column(col, justify="left" if col in ("operator", "kind") else "right")
            for op in r.ops["ops"][:15]:
                ops.add_row(op["name"], op["kind"], f"{op['calls_per_run']:g}", f"{op['mean_ms']:.4f}", f"{op['share']:.1%}")
            con.print(ops)
            con.print(f"[dim]{r.ops['note']}[/]")
        for c in r.budget.get("checks", []):
            mark = "[green]ok[/]" if c["ok"] else "[red]EXCEEDED[/]"
            con.print(f"budget {c['name']}: {c['value']} (limit {c['limit']}) {mark}")
    seen = set()
    for r in results:
        for w in r.warnings:
            if w not in seen:
                seen.add(w)
                _console().print(f"[yellow]warning:[/] {w}")


@cli.command()
@click.argument("program", required=False)
@click.option("--eager", metavar="MODEL_SPEC", help="Profile an eager PyTorch model instead (needs --input).")
@click.option("--input", "-i", "input_specs", multiple=True, callback=_parse_inputs, metavar="SHAPE[:DTYPE]",
              help="Input spec for --eager, e.g. 1x3x224x224.")
@click.option("--inputs", "inputs_file", type=click.Path(), help="Real inputs (.npz/.pt) instead of random ones.")
@click.option("--batch", type=int, help="Batch size to run (programs built with --dynamic-batch; default: their largest).")
@click.option("--engine", type=click.Choice(["auto", "native", "python"]), default="auto", show_default=True,
              help="native: the C++ runner (no Python in the measured process); python: the pybindings worker.")
@click.option("--threads", "threads_text", metavar="N[,N...]", help="Threadpool size; a list sweeps (default: the target's).")
@click.option("--cpus", metavar="LIST", help="Pin the worker to these CPUs, e.g. 0,1.")
@click.option("--runs", type=int, help="Timed runs (at least; default: the target's).")
@click.option("--warmup", type=int, help="Warm-up runs (at least; default: the target's).")
@click.option("--warmup-seconds", type=float, default=0.5, show_default=True, help="Warm up for at least this long.")
@click.option("--min-seconds", type=float, help="Keep timing until at least this long has passed.")
@click.option("--max-seconds", type=float, default=60.0, show_default=True, help="Stop timing after this long.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Kill the worker after this many seconds.")
@click.option("--method", default="forward", show_default=True, help="Program method to run.")
@click.option("--ops", is_flag=True, help="Also record an ETDump and print the top operators by time.")
@click.option("--target", "-t", help="Target for defaults, budgets and the power model (default: the package's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result(s) as JSON.")
@click.option("--out", "out_file", type=click.Path(), help="Also save the JSON to this file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def profile(program: str | None, eager: str | None, input_specs: tuple, inputs_file: str | None, batch: int | None, engine: str,
            threads_text: str | None, cpus: str | None, runs: int | None, warmup: int | None, warmup_seconds: float,
            min_seconds: float | None, max_seconds: float, timeout: float, method: str, ops: bool, target: str | None,
            as_json: bool, out_file: str | None, quiet: bool) -> None:
    """Measure PROGRAM (a .pte or a package folder) in an isolated worker process.

    \b
    Examples:
      edgekit profile build/net --runs 200 --threads 2
      edgekit profile build/net --threads 1,2 --ops --json
      edgekit profile --eager mypkg.nets:make_net --input 1x3x224x224
    """
    from .errors import UsageError
    from .profile.harness import ProfileOptions, parse_cpus, parse_threads, profile as run_profile

    if program is None and eager is None:
        raise UsageError("nothing to profile", "pass a .pte / package folder, or --eager MODEL_SPEC --input SHAPE")
    if program is not None and eager is not None:
        raise UsageError("give PROGRAM or --eager, not both")
    thread_list = parse_threads(threads_text) if threads_text else [None]
    results = []
    for threads in thread_list:
        opts = ProfileOptions(runs=runs, warmup=warmup, warmup_seconds=warmup_seconds, min_seconds=min_seconds,
                              max_seconds=max_seconds, threads=threads, cpus=parse_cpus(cpus), timeout=timeout,
                              method=method, engine=engine, ops=ops, batch=batch)
        bar = _ProfileProgress(quiet, f"profile ({threads or 'default'} thread(s))")
        try:
            results.append(run_profile(program, eager=eager, eager_inputs=input_specs, inputs=inputs_file, target=target,
                                       options=opts, progress=bar))
        finally:
            bar.close()
    data = [r.to_dict() for r in results]
    payload = data[0] if len(data) == 1 else {"schema_version": 1, "sweep": data}
    if out_file:
        from pathlib import Path

        from .pipeline.package import write_json

        write_json(Path(out_file), payload)
    if as_json:
        _emit_json(payload)
    else:
        print_profile(results)
    failed = [(r, c) for r in results for c in r.budget_failures]
    if failed:
        raise click.ClickException("budget exceeded: " + "; ".join(
            f"{c['name']} {c['value']} > {c['limit']} ({r.threads['effective']} thread(s))" for r, c in failed))


# --------------------------------------------------------------------------------------------- bench
@cli.group()
def bench() -> None:
    """Run benchmark suites, store results, compare against baselines, write reports."""


_STORE_OPTION = click.option("--store", type=click.Path(), default=".edgekit/bench", show_default=True,
                             help="Where runs and baselines are stored.")


@bench.command("run")
@click.argument("suite_file", metavar="SUITE")
@click.option("--save-as", metavar="NAME", help="Also save the run as the named baseline NAME.")
@_STORE_OPTION
@click.option("--cache", type=click.Path(), default=".edgekit/cache/builds", show_default=True, help="Build cache folder.")
@click.option("--no-save", is_flag=True, help="Do not store the run (print it only).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@handle_errors
def bench_run(suite_file: str, save_as: str | None, store: str, cache: str, no_save: bool, as_json: bool) -> None:
    """Build and profile every model × target × threads of SUITE and store one run file."""
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .bench.run import run_suite
    from .bench.store import save_run
    from .bench.suite import load_suite

    suite = load_suite(suite_file)
    con = _console()
    con.print(f"[bold]edgekit bench run[/] {suite.name}: {len(suite.items())} item(s)")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=con, transient=False) as bar:
        task = bar.add_task("starting", total=len(suite.items()))

        def progress(label: str, i: int, n: int) -> None:
            bar.update(task, description=label, completed=i - 1)

        run = run_suite(suite, cache=Path(cache), progress=progress)
        bar.update(task, description="done", completed=len(suite.items()))
    paths = [] if no_save else save_run(run, Path(store), save_as)
    if as_json:
        _emit_json(run)
    else:
        from rich.table import Table

        from .bench.report import SUMMARY_HEAD, summary_rows

        table = Table(title=f"{suite.name}: {run['wall_seconds']} s", title_justify="left")
        for h in SUMMARY_HEAD:
            table.add_column(h, justify="left" if h in ("model", "target") else "right", no_wrap=h in ("model", "target"))
        for row in summary_rows(run):
            table.add_row(*row)
        _console(stderr=False).print(table)
    for e in run["errors"]:
        con.print(f"[red]failed:[/] {e['model']} × {e['target']} × {e['threads']}: {e['error']}")
    for p in paths:
        con.print(f"saved {p}")
    if run["errors"]:
        raise click.ClickException(f"{len(run['errors'])} item(s) failed; the others were measured and saved")


@bench.command("compare")
@click.option("--baseline", "-b", default="previous", show_default=True, metavar="NAME|FILE|latest|previous",
              help="The reference run.")
@click.option("--run", "-r", "run_ref", default="latest", show_default=True, metavar="FILE|latest", help="The run to judge.")
@click.option("--fail-on", multiple=True, metavar="METRIC:PCT",
              help="Gate on these metrics with these thresholds (default: every metric at its default).")
@click.option("--allow-machine-mismatch", is_flag=True, help="Compare runs from different machines anyway.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=0.002, show_default=True,
              help="Significance level of the Mann-Whitney U test.")
@_STORE_OPTION
@click.option("--all", "show_all", is_flag=True, help="Show every metric of every item (default: p50 + changes).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def bench_compare(baseline: str, run_ref: str, fail_on: tuple, allow_machine_mismatch: bool, alpha: float, store: str,
                  show_all: bool, as_json: bool) -> None:
    """Compare a run with a baseline; exit 1 on a significant regression beyond its threshold.

    \b
    Metrics: latency_p50 (10%), latency_p90 (15%), peak_rss (10%), size (2%), accuracy (1 point), sqnr (3 dB).
    Example:  edgekit bench compare --baseline main --fail-on latency_p50:10% --fail-on size:5%
    """
    from pathlib import Path

    from .bench.compare import compare_runs, parse_fail_on
    from .bench.store import load_run, resolve

    thresholds = parse_fail_on(fail_on)
    run = load_run(resolve(run_ref, Path(store), default="latest"))
    base = load_run(resolve(baseline, Path(store), run["machine"]["machine_id"], default="previous"))
    if Path(base["_path"]).resolve() == Path(run["_path"]).resolve() or (base.get("run_id") and base.get("run_id") == run.get("run_id")):
        from .errors import UsageError

        raise UsageError(f"the baseline ({base['_path']}) and the run ({run['_path']}) are the same run",
                         "run the suite again, or pass --baseline NAME / --run FILE")
    cmp = compare_runs(base, run, fail_on=thresholds or None, allow_machine_mismatch=allow_machine_mismatch, alpha=alpha)
    if as_json:
        _emit_json(cmp.to_dict())
    else:
        print_comparison(cmp, show_all)
    if cmp.regressions:
        raise click.ClickException(f"{len(cmp.regressions)} regression(s): " + "; ".join(
            f"{r['key']} {r['metric']} " + (f"{r['ratio']:.2f}×" if r.get("ratio") is not None else f"{r['change']:+.3g}")
            for r in cmp.regressions[:5]))


def print_comparison(cmp: Any, show_all: bool = False) -> None:
    from rich.table import Table

    from .bench.report import COMPARE_HEAD, compare_rows

    con = _console(stderr=False)
    if cmp.machine_mismatch:
        con.print("[bold red]MACHINES DIFFER[/] — " + "; ".join(f"{k}: {a} vs {b}" for k, (a, b) in cmp.machine_mismatch.items()))
    table = Table(title=f"{cmp.baseline} → {cmp.run}", title_justify="left")
    for h in COMPARE_HEAD:
        table.add_column(h, justify="left" if h in ("model", "target", "metric", "verdict") else "right",
                         no_wrap=h in ("model", "target", "metric"))
    colors = {"regressed": "red", "improved": "green", "noisy": "yellow", "unchanged": "dim"}
    rows = compare_rows(cmp)
    shown = [r for r in rows if show_all or r[3] == "latency_p50" or not r[-1].startswith("unchanged")]
    if len(shown) < len(rows):
        table.caption = f"{len(rows) - len(shown)} unchanged rows of other metrics hidden (--all shows them)"
    for row in shown:
        color = colors.get(row[-1].split()[0], "")
        table.add_row(*row[:-1], f"[{color}]{row[-1]}[/]")
    con.print(table)
    for w in cmp.warnings:
        _console().print(f"[yellow]warning:[/] {w}")
    con.print("[bold red]REGRESSED[/]" if cmp.regressions else "[bold green]no regression[/]" +
              f" [dim](gated: {', '.join(f'{k} {v:g}' for k, v in cmp.gated.items())})[/]")


@bench.command("report")
@click.argument("runs", nargs=-1, metavar="[RUN...]")
@click.option("--out", "-o", type=click.Path(), default="report", show_default=True, help="Report folder (replaced).")
@click.option("--baseline", "-b", metavar="NAME|FILE|previous", help="Add a comparison with this baseline.")
@click.option("--allow-machine-mismatch", is_flag=True)
@_STORE_OPTION
@handle_errors
def bench_report(runs: tuple, out: str, baseline: str | None, allow_machine_mismatch: bool, store: str) -> None:
    """Write Markdown + self-contained HTML with plots for RUNs (default: the latest run)."""
    from pathlib import Path

    from .bench.compare import compare_runs
    from .bench.report import write_report
    from .bench.store import load_run, resolve

    loaded = [load_run(resolve(r, Path(store))) for r in (runs or ("latest",))]
    cmp = None
    if baseline:
        base = load_run(resolve(baseline, Path(store), loaded[-1]["machine"]["machine_id"]))
        cmp = compare_runs(base, loaded[-1], allow_machine_mismatch=allow_machine_mismatch)
    paths = write_report(loaded, Path(out), cmp)
    click.echo(f"wrote {paths['html']} and {paths['markdown']}")


@bench.command("list")
@_STORE_OPTION
@handle_errors
def bench_list(store: str) -> None:
    """List stored runs and named baselines."""
    from pathlib import Path

    from .bench.store import list_baselines, list_runs

    for p in list_runs(Path(store)):
        click.echo(str(p))
    for name in list_baselines(Path(store)):
        click.echo(f"baseline {name}")


def main() -> None:
    """Console-script entry point."""
    import os

    # Like other tools that take module:attr specs (uvicorn, flask), resolve them from the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cli(prog_name="edgekit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
