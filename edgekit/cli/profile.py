"""``edgekit profile`` and ``edgekit generate``: a program (or a generation program) measured here or on a device, and
a language model's text streamed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import click

from .._options import Finite, defaulted, given_flags
from ..runner.protocol import SELECTABLE_ENGINES
from .options import emit_json, parsed

if TYPE_CHECKING:
    from ..specs import InputSpec


@click.command()
@click.argument("program", required=False)
@click.option("--eager", metavar="MODEL_SPEC", help="Profile an eager PyTorch model instead (needs --input).")
@click.option(
    "--input",
    "-i",
    "input_specs",
    multiple=True,
    callback=parsed("parse_input_spec"),
    metavar="SHAPE[:DTYPE]",
    help="Input spec for --eager, e.g. 1x3x224x224.",
)
@click.option("--inputs", "inputs_file", type=click.Path(), help="Real inputs (.npz/.pt) instead of random ones.")
@click.option(
    "--batch",
    type=click.IntRange(1),
    help="Batch size to run (programs built with --dynamic-batch; default: their largest).",
)
@click.option(
    "--engine",
    type=click.Choice(SELECTABLE_ENGINES),
    default="auto",
    show_default=True,
    help="native: the C++ runner (no Python in the measured process); python: the pybindings worker. auto: native "
    "where a compiler is, else python.",
)
@click.option(
    "--threads", "threads_text", metavar="N[,N...]", help="Threadpool size; a list sweeps (default: the target's)."
)
@click.option("--cpus", metavar="LIST", help="Pin the worker to these CPUs, e.g. 0,1.")
@click.option("--runs", type=click.IntRange(1), help="Timed runs (at least; default: the target's).")
@click.option("--warmup", type=click.IntRange(0), help="Warm-up runs (at least; default: the target's).")
@click.option(
    "--warmup-seconds", type=Finite(0), default=0.5, show_default=True, help="Warm up for at least this long."
)
@click.option("--min-seconds", type=Finite(0), help="Keep timing until at least this long has passed.")
@click.option("--max-seconds", type=Finite(0), default=60.0, show_default=True, help="Stop timing after this long.")
@click.option(
    "--timeout",
    type=Finite(0, min_open=True),
    default=300.0,
    show_default=True,
    help="Kill the worker after this many seconds.",
)
@click.option("--method", default="forward", show_default=True, help="Program method to run.")
@click.option("--ops", is_flag=True, help="Also record an ETDump and print the top operators by time.")
@click.option("--target", "-t", help="Target for defaults, budgets and the power model (default: the package's).")
@click.option(
    "--device", "-d", metavar="NAME|ssh://USER@HOST[:PORT]", help="Measure on this device over ssh instead of here."
)
@click.option(
    "--devices",
    "devices_file",
    type=click.Path(dir_okay=False),
    envvar="EDGEKIT_DEVICES",
    help="Devices file (default ~/.config/edgekit/devices.toml).",
)
@click.option(
    "--save-outputs",
    type=click.Path(dir_okay=False),
    help="Save the last run's outputs (raw bytes) to compare devices.",
)
@click.option(
    "--no-check",
    is_flag=True,
    help="Do not run the package's reference inputs first (by default a program that answers them unlike your model "
    "fails the profile).",
)
@click.option(
    "--prompt-len",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Generation programs: prompt tokens prefilled in one call.",
)
@click.option(
    "--gen-len",
    type=click.IntRange(2),
    default=128,
    show_default=True,
    help="Generation programs: tokens generated greedily after the prompt.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result(s) as JSON.")
@click.option("--out", "out_file", type=click.Path(), help="Also save the JSON to this file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def profile(
    program: str | None,
    eager: str | None,
    input_specs: tuple,
    inputs_file: str | None,
    batch: int | None,
    engine: str,
    threads_text: str | None,
    cpus: str | None,
    runs: int | None,
    warmup: int | None,
    warmup_seconds: float,
    min_seconds: float | None,
    max_seconds: float,
    timeout: float,
    method: str,
    ops: bool,
    target: str | None,
    device: str | None,
    devices_file: str | None,
    save_outputs: str | None,
    no_check: bool,
    prompt_len: int,
    gen_len: int,
    as_json: bool,
    out_file: str | None,
    quiet: bool,
) -> None:
    """Measure PROGRAM (a .pte or a package folder) in an isolated worker process. A generation package (built with
    --task text-generation) reports time to first token, prefill and decode tokens per second instead.

    \b
    Examples:
      edgekit profile build/net --runs 200 --threads 2
      edgekit profile build/net --threads 1,2 --ops --json
      edgekit profile --eager mypkg.nets:make_net --input 1x3x224x224
      edgekit profile build/net --device pi5 --threads 1,4
    """
    from .. import kinds
    from ..errors import UsageError

    if (program is None) == (eager is None):
        raise UsageError(
            "nothing to profile" if program is None else "give PROGRAM or --eager, not both",
            "pass a .pte / package folder, or --eager MODEL_SPEC --input SHAPE",
        )
    values = locals()  # (a comprehension has locals of its own)
    args = ProfileArgs(**{f.name: values[f.name] for f in dataclasses.fields(ProfileArgs)})
    kind = kinds.of_package(program) if program is not None else kinds.TENSOR
    kinds.step(kind, "profile_command")(args)


@dataclass(frozen=True)
class ProfileArgs:
    """What ``edgekit profile`` was given, for the kind of program that measures it (:mod:`edgekit.kinds`)."""

    program: str | None
    eager: str | None
    input_specs: tuple[InputSpec, ...]
    inputs_file: str | None
    batch: int | None
    engine: str
    threads_text: str | None
    cpus: str | None
    runs: int | None
    warmup: int | None
    warmup_seconds: float
    min_seconds: float | None
    max_seconds: float
    timeout: float
    method: str
    ops: bool
    target: str | None
    device: str | None
    devices_file: str | None
    save_outputs: str | None
    no_check: bool
    prompt_len: int
    gen_len: int
    as_json: bool
    out_file: str | None
    quiet: bool


def _refuse(wrong: list[str], noun: str, hint: str) -> None:
    from ..errors import UsageError

    if wrong:
        raise UsageError(f"{', '.join(wrong)} do(es) not apply to {noun}", hint)


def _emit(data: list[dict], a: ProfileArgs, show: Callable[[], None]) -> None:
    from ..fileops import write_json

    payload = data[0] if len(data) == 1 else {"schema_version": 1, "sweep": data}
    if a.out_file:
        write_json(a.out_file, payload)
    emit_json(payload) if a.as_json else show()


def profile_generation_package(a: ProfileArgs) -> None:
    """The generation kind's ``edgekit profile``: time to first token, prefill and decode tokens per second."""
    from ..profile.generation import profile_generation
    from ..profile.options import parse_cpus, parse_threads
    from . import render

    _refuse(
        [
            opt
            for opt, on in (
                ("--input", bool(a.input_specs)),
                ("--inputs", a.inputs_file is not None),
                ("--batch", a.batch is not None),
                ("--save-outputs", a.save_outputs is not None),
                ("--target", a.target is not None),
                ("--method", a.method != "forward"),
                ("--min-seconds", a.min_seconds is not None),
            )
            if on
        ],
        "a generation program",
        "drop them: it is profiled with --prompt-len / --gen-len / --runs / --threads / --engine / --device / --ops",
    )
    gen = []
    for threads in parse_threads(a.threads_text) if a.threads_text else [1]:
        if not a.quiet:
            render.console().print(f"[dim]generation profile, {threads} thread(s)…[/]")
        gen.append(
            profile_generation(
                a.program,
                prompt_len=a.prompt_len,
                gen_len=a.gen_len,
                runs=a.runs or 3,
                warmup=1 if a.warmup is None else a.warmup,
                threads=threads,
                cpus=parse_cpus(a.cpus),
                check=not a.no_check,
                # a generation profile runs hundreds of steps: 30 min unless --timeout was given
                timeout=1800.0 if defaulted("timeout") else a.timeout,
                engine=a.engine,
                device=a.device,
                devices_file=a.devices_file,
                ops=a.ops,
                progress=None if a.quiet else lambda m: render.console().print(f"[dim]{m}[/]"),
            )
        )
    _emit([r.to_dict() for r in gen], a, lambda: render.generation_report(gen))


def profile_tensor(a: ProfileArgs) -> None:
    """The tensor kind's ``edgekit profile``: runs of one input, their latency, memory and energy."""
    from ..profile.harness import profile as run_profile
    from ..profile.options import ProfileOptions, parse_cpus, parse_threads
    from . import render

    _refuse(
        given_flags(("prompt_len", "gen_len")),
        "a model's program",
        "they size a generation program's profile (a package built with --task text-generation)",
    )
    results = []
    for threads in parse_threads(a.threads_text) if a.threads_text else [None]:
        opts = ProfileOptions(
            runs=a.runs,
            warmup=a.warmup,
            warmup_seconds=a.warmup_seconds,
            min_seconds=a.min_seconds,
            max_seconds=a.max_seconds,
            threads=threads,
            cpus=parse_cpus(a.cpus),
            timeout=a.timeout,
            method=a.method,
            engine=a.engine,
            ops=a.ops,
            batch=a.batch,
            save_outputs=a.save_outputs,
            check=not a.no_check,
        )
        bar = render.PhaseProgress(a.quiet, f"profile ({threads or 'default'} thread(s))")
        try:
            results.append(
                run_profile(
                    a.program,
                    eager=a.eager,
                    eager_inputs=a.input_specs,
                    inputs=a.inputs_file,
                    target=a.target,
                    options=opts,
                    progress=bar,
                    device=a.device,
                    devices_file=a.devices_file,
                )
            )
        finally:
            bar.close()
    _emit([r.to_dict() for r in results], a, lambda: render.profile_report(results))
    for r in results:
        r.raise_for_budget()


@click.command()
@click.argument("package", type=click.Path())
@click.option("--prompt", "-p", required=True, help="The text to continue (write a chat template into it yourself).")
@click.option(
    "--max-new-tokens",
    "-n",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Stop after this many tokens.",
)
@click.option(
    "--temperature", type=Finite(0), default=0.0, show_default=True, help="0: greedy; above: sampling (--seed)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (with --temperature above 0).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Threadpool size.")
@click.option("--quiet", "-q", is_flag=True, help="Only the generated text.")
def generate(
    package: str, prompt: str, max_new_tokens: int, temperature: float, seed: int, threads: int, quiet: bool
) -> None:
    """Continue PROMPT with a generation package, printing the text as it is produced, then its tokens per second.

    \b
    Example:
      edgekit generate build/lm --prompt "The capital of France is" -n 32
    """
    from ..profile.generate import generate as run_generate
    from . import render

    stats = run_generate(
        package, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, threads=threads
    )
    if not quiet:
        render.generate_stats(stats)
