"""Resolve a model spec to an ``nn.Module`` (or a saved ExportedProgram) and its example inputs.

Model specs:
  * ``package.module:factory``  an importable module and a callable in it;
  * ``path/to/file.py:factory`` a Python file and a callable in it;
  * ``path/to/model.pt2``       a program saved with ``torch.export.save``;
  * ``hf:path/to/folder``       a local Hugging Face model folder (see :mod:`edgekit.hf`).

A factory returns an ``nn.Module``, or ``(module, example_inputs)`` where ``example_inputs`` is a
tensor or a tuple of tensors. ``--input`` specs (``1x3x224x224``, ``1x128:int64``) override them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import InputSpecError, ModelLoadError, first_line

# the input and model types live in specs (the ground floor); they are edgekit.models' public names too
from .specs import DTYPE_NAMES as DTYPE_NAMES
from .specs import DynamicBatch as DynamicBatch
from .specs import InputSpec as InputSpec
from .specs import LoadedModel as LoadedModel
from .specs import contiguous as contiguous
from .specs import import_object as import_object
from .specs import parse_dynamic_batch as parse_dynamic_batch
from .specs import parse_input_spec as parse_input_spec

if TYPE_CHECKING:
    import torch
    from torch.export import ExportedProgram


def _as_inputs(value: object, spec: str) -> tuple[torch.Tensor, ...]:
    import torch

    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in value):
        return tuple(value)
    raise ModelLoadError(
        f"factory {spec} returned example inputs of type {type(value).__name__}",
        "return (module, tensor) or (module, (tensor, ...))",
    )


def load_model(
    spec: str | Path | torch.nn.Module | LoadedModel,
    inputs: Sequence[InputSpec] = (),
    *,
    seed: int = 0,
    hf_output: str | None = None,
) -> LoadedModel:
    """Resolve a model spec to a :class:`LoadedModel` in eval mode with contiguous example inputs.

    Args:
        spec: a spec string (see the module docstring), an ``nn.Module``, or a ``LoadedModel``.
        inputs: input specs; they override example inputs the factory or program provides.
        seed: seed for random example inputs.
        hf_output: for ``hf:PATH`` specs, what the wrapper returns (see :mod:`edgekit.hf`).

    Returns:
        The loaded model.

    Raises:
        ModelLoadError: the spec cannot be resolved, the factory raises, or the file is not a model.
        InputSpecError: no example inputs are known and none were given.
    """
    import torch

    if isinstance(spec, LoadedModel):
        return spec
    gen = torch.Generator().manual_seed(seed)
    given = tuple(s.make(gen) for s in inputs)

    if isinstance(spec, torch.nn.Module):
        if not given:
            raise InputSpecError(
                "an nn.Module was given without example inputs", "pass inputs=[InputSpec((1, 3, 224, 224))]"
            )
        return LoadedModel(f"<{type(spec).__name__} object>", spec.eval(), contiguous(given))

    spec = str(spec)
    if spec.startswith("hf:"):
        from .hf import load_hf

        return load_hf(spec, inputs, hf_output)
    path = Path(spec)
    if ":" not in spec or (path.exists() and path.is_file()):
        return _load_file(spec, given)

    factory = import_object(spec)
    if not callable(factory):
        raise ModelLoadError(
            f"{spec} is a {type(factory).__name__}, not a callable", "point the spec at a function or class"
        )
    try:
        produced = factory()
    except Exception as exc:
        raise ModelLoadError(
            f"factory {spec} raised {type(exc).__name__}: {exc}",
            "fix the factory, or call it yourself to see the traceback",
        ) from exc
    example: tuple = ()
    module = produced
    if isinstance(produced, tuple) and len(produced) == 2 and isinstance(produced[0], torch.nn.Module):
        module, example = produced[0], _as_inputs(produced[1], spec)
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(
            f"factory {spec} returned {type(produced).__name__}, not an nn.Module",
            "return an nn.Module, or (module, example_inputs)",
        )
    example = given or example
    if not example:
        raise InputSpecError(
            f"model {spec} has no example inputs",
            "pass --input 1x3x224x224 (one per input), or return (module, example_inputs) from the factory",
        )
    return LoadedModel(spec, module.eval(), contiguous(example))


def _load_file(spec: str, given: tuple[torch.Tensor, ...]) -> LoadedModel:
    import torch

    path = Path(spec)
    if not path.exists():
        if path.suffix in (".pt2", ".py") or "/" in spec:  # meant as a file
            raise ModelLoadError(f"model file {spec} does not exist", "check the path")
        raise ModelLoadError(
            f"model {spec!r} is neither a file nor a module:factory spec",
            "use package.module:factory, path/to/file.py:factory, or a .pt2 file saved with torch.export.save",
        )
    if path.suffix == ".py":
        raise ModelLoadError(
            f"{spec} names no factory", f"use {spec}:make_model (the function that returns the module)"
        )
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise ModelLoadError(
            f"{spec} holds weights, not a model program",
            "load them in a factory (module:factory) or save an ExportedProgram with torch.export.save(..., 'model.pt2')",
        )
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        first = first_line(exc)
        raise ModelLoadError(
            f"{spec} is not a saved ExportedProgram ({first[:200]})",
            "save one with torch.export.save(torch.export.export(model, inputs), 'model.pt2'), or use module:factory",
        ) from exc
    if given:
        _check_given_shapes(spec, ep, given)
    example: tuple = given
    if not example and ep.example_inputs is not None:
        args, kwargs = ep.example_inputs
        example = tuple(args)
    if not example:
        raise InputSpecError(
            f"{spec} stores no example inputs", "pass --input for each input, e.g. --input 1x3x224x224"
        )
    return LoadedModel(str(path), ep.module(), contiguous(example), exported=ep)


def _check_given_shapes(spec: str, ep: ExportedProgram, given: tuple[torch.Tensor, ...]) -> None:
    """``--input`` for a saved program must fit what it was exported for: as many inputs, each of its rank, each static
    size equal (a dynamic one may differ).

    Raises:
        InputSpecError: naming the shapes the program takes.
    """
    import torch

    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    wanted = [placeholders[name].meta.get("val") for name in ep.graph_signature.user_inputs if name in placeholders]
    if not all(isinstance(w, torch.Tensor) for w in wanted):
        return  # non-tensor inputs: export's own checks speak
    shapes = ["x".join(str(d) for d in w.shape) for w in wanted]
    fits = len(wanted) == len(given) and all(
        g.dim() == w.dim() and all(not isinstance(d, int) or d == n for d, n in zip(w.shape, g.shape))
        for w, g in zip(wanted, given)
    )
    if not fits:
        got = ", ".join("x".join(map(str, g.shape)) for g in given)
        raise InputSpecError(
            f"{spec} was exported for input(s) {', '.join(shapes)}; --input gave {got}",
            "pass --input with those shapes (or leave it out: the program's own example inputs are used)",
        )
