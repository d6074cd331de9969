"""The generated reference pages (run by mkdocs-gen-files while the site builds; nothing here is written to the tree).

Every page is made from the code it describes, so it cannot drift: the documents that cross a file (the manifest, a
profile, a bench run) from their ``Contract`` dataclasses and the comments on their fields, the target files' keys
from the target configuration classes, the error catalogue from ``edgekit.errors``, the upstream patches from their
registry; the command line from click itself (every command's ``--help``). Result images and
ARCHITECTURE.md are copied in, so pages can show and link them.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import io
import re
import tokenize
import typing
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent


def _field_comments(cls: type) -> dict[str, str]:
    """``name: type = ...  # comment`` → {name: comment}, and a comment on the lines just above a field."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"\s+(\w+)\s*:", line)
        if m and not stripped.startswith(("def ", "@", '"""')):
            try:
                tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
            except tokenize.TokenError:  # a default that continues on the next line: its comment is below it
                tokens = []
            trailing = [t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT]
            comments[m.group(1)] = " ".join(pending + trailing)
        pending = []
    return comments


def _type_name(tp: typing.Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _nested(tp: typing.Any) -> list[type]:
    """The dataclasses a field's type holds (directly, in a list, or optionally)."""
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [c for a in typing.get_args(tp) for c in _nested(a)]


def contract_rows(cls: type, prefix: str = "", seen: frozenset = frozenset()) -> list[tuple[str, str, str]]:
    """(field path, type, what it is) for every field of ``cls`` and of the documents it holds, depth first."""
    rows = []
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name}"
        what = comments.get(f.name, "")
        if not what:  # a nested document says what it is in its own docstring
            what = next(((inspect.getdoc(c) or "").split("\n\n")[0].replace("\n", " ") for c in _nested(tp)), "")
        rows.append((path, _type_name(tp), what))
        for inner in _nested(tp):
            if inner not in seen:
                sub = "[]." if typing.get_origin(tp) in (list, tuple) or list in typing.get_args(tp) else "."
                rows += contract_rows(inner, path + sub, seen | {cls})
    return rows


def contract_page(title: str, intro: str, cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    lines = [f"# {title}", "", intro, "", doc.split("\n\n")[0], "", "| field | type | what it is |", "|---|---|---|"]
    for path, tp, what in contract_rows(cls):
        lines.append(f"| `{path}` | {tp} | {what.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def targets_page() -> str:
    from edgekit import targets

    lines = [
        "# Target files",
        "",
        "A target is a TOML file (or a built-in name: `edgekit targets list`). Every key, by table, with its type and "
        "default; a value out of range is a one-line error naming the key and the valid values.",
        "",
    ]
    for table, cls in (
        ("quantize", targets.QuantizeConfig),
        ("prune", targets.PruneConfig),
        ("profile", targets.ProfileConfig),
        ("budget", targets.BudgetConfig),
        ("power", targets.PowerConfig),
    ):
        hints, comments = typing.get_type_hints(cls), _field_comments(cls)
        lines += [f"## [{table}]", "", inspect.getdoc(cls) or "", "", "| key | type | default | what it is |"]
        lines.append("|---|---|---|---|")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else "—"
            if isinstance(default, enum.Enum):
                default = default.value
            tp = hints[f.name]
            choices = [m.value for m in tp] if isinstance(tp, type) and issubclass(tp, enum.Enum) else None
            what = comments.get(f.name, "") + (f" One of: {', '.join(map(str, choices))}." if choices else "")
            lines.append(f"| `{f.name}` | {_type_name(tp)} | `{default}` | {what.replace('|', '/')} |")
        lines.append("")
    lines += ["## Built-in targets", "", "| name | backend | what it is |", "|---|---|---|"]
    for t in targets.list_targets():
        lines.append(f"| `{t.name}` | {t.backend.value} | {t.description} |")
    return "\n".join(lines) + "\n"


def errors_page() -> str:
    import edgekit.errors as errors

    def subclasses(cls: type) -> list[type]:
        out = []
        for c in cls.__subclasses__():
            out += [c, *subclasses(c)]
        return out

    import edgekit.builds.cache  # noqa: F401  (errors defined beside the code that raises them)
    import edgekit.device.bundle  # noqa: F401
    import edgekit.device.devices  # noqa: F401
    import edgekit.runner.native  # noqa: F401
    import edgekit.runner.worker  # noqa: F401
    import edgekit.scale.executor  # noqa: F401

    lines = [
        "# Errors",
        "",
        "Every error edgekit raises on purpose is one line naming the problem and a hint naming the fix; the command "
        "exits 1 for a failure of the work and 2 for a usage error, with no traceback (`EDGEKIT_DEBUG=1` shows one). "
        "The classes, for the Python API:",
        "",
        "| error | exit code | raised when |",
        "|---|---|---|",
    ]
    for cls in sorted(subclasses(errors.EdgekitError), key=lambda c: c.__name__):
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        lines.append(f"| `{cls.__module__}.{cls.__name__}` | {getattr(cls, 'exit_code', 1)} | {doc} |")
    return "\n".join(lines) + "\n"


def upstream_page() -> str:
    from edgekit import upstream

    lines = [
        "# Upstream patches",
        "",
        (inspect.getdoc(upstream) or "").split("\n\n")[0],
        "",
        "| patch | kind | written for | what it changes | what it buys | its test |",
        "|---|---|---|---|---|---|",
    ]
    for p in upstream.PATCHES:
        versions = ", ".join(f"{k} {v}" + ("" if v.startswith(">=") else "*") for k, v in p.written_for.items())
        lines.append(f"| `{p.name}` | {p.kind} | {versions} | {p.changes} | {p.buys} | `{p.test}` |")
    return "\n".join(lines) + "\n"


def cli_page() -> str:
    """Every command's own ``--help`` text, as click renders it for a terminal 100 columns wide."""
    import click

    from edgekit.cli import cli

    lines = [
        "# The command line",
        "",
        "Every command and option, as `edgekit COMMAND --help` prints them: rendered from the click definitions "
        "themselves (`edgekit/cli/`) when the site is built.",
        "",
    ]

    def walk(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(command, info_name=path[-1], parent=parent, max_content_width=100, terminal_width=100)
        lines.extend(
            [f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`", "", "```text", command.get_help(ctx), "```", ""]
        )
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name], ctx)

    walk(cli, ["edgekit"], None)
    return "\n".join(lines) + "\n"


def main() -> None:
    from edgekit.bench.document import BenchRun
    from edgekit.manifest import Manifest
    from edgekit.profile.result import ProfileResult

    pages = {
        "reference/cli.md": cli_page(),
        "reference/manifest.md": contract_page(
            "The manifest",
            "`manifest.json`, beside every package's program (schema in `edgekit/manifest.py`). Every field, nested "
            "documents flattened to paths (`[]` marks a list of them).",
            Manifest,
        ),
        "reference/profile-result.md": contract_page(
            "A profile's result",
            "What `edgekit profile --json` prints for a tensor program (one per thread count).",
            ProfileResult,
        ),
        "reference/bench-run.md": contract_page(
            "A bench run", "The run document `edgekit bench run --save` stores (`edgekit/bench/document.py`).", BenchRun
        ),
        "reference/targets.md": targets_page(),
        "reference/errors.md": errors_page(),
        "reference/upstream.md": upstream_page(),
    }
    for name, text in pages.items():
        with mkdocs_gen_files.open(name, "w") as f:
            f.write(text)
    with mkdocs_gen_files.open("architecture.md", "w") as f:
        f.write((ROOT / "ARCHITECTURE.md").read_text())
    for image in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        with mkdocs_gen_files.open(f"results/files/{image.name}", "wb") as f:
            f.write(image.read_bytes())


main()
