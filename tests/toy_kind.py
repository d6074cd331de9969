"""A third, toy kind of program, added the way a new kind would be: this module of steps, plus one registration line
(``kinds.register(TOY)`` in tests/test_kinds.py). Its programs are a tensor model's, built by the tensor kind's build,
under a target whose name starts with ``toy-``; each step says it ran, so the test sees the seam chose it."""

from __future__ import annotations

import dataclasses
import json

import click

from edgekit import kinds
from edgekit.manifest import MANIFEST_NAME, read_manifest
from edgekit.pipeline.build import build_tensor

MARK = "built by the toy kind"


def build(request):
    result = build_tensor(request)
    doc = json.loads((result.out_dir / MANIFEST_NAME).read_text())
    doc["warnings"] = [*doc["warnings"], MARK]
    (result.out_dir / MANIFEST_NAME).write_text(json.dumps(doc))
    return dataclasses.replace(result, manifest=read_manifest(result.out_dir))


def render_build(result) -> None:
    click.echo(f"toy build: {result.out_dir}")


def profile_command(args) -> None:
    click.echo(f"toy profile: {args.program} at {args.threads_text} thread(s)")


def bench_item(suite, model, target, threads, built, device):
    return f"toy item: {model.name}"


def tune_command(args) -> None:
    click.echo(f"toy tune: {args.model}")


TOY = kinds.ProgramKind(
    name="toy",
    label="a toy build",
    noun="a toy program",
    default_target="xnnpack-fp32",
    claims_build=lambda target, task: target is not None and target.name.startswith("toy-"),
    claims_package=lambda manifest: MARK in manifest.warnings,
    claims_model=lambda spec: spec.startswith("toy:"),
    options=frozenset({"inputs", "seed", "verify_samples", "reference_samples", "explain"}),
    steps={s: f"toy_kind:{s}" for s in kinds.STEPS},
    why_not="a toy build takes a model and its inputs only",
)
