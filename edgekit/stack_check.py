"""Packages installed beside the pinned stack that break it, named in one line before they fail deep inside.

A torchvision wheel built for another torch (or for CUDA beside the CPU torch) is a common leftover: transformers
imports it lazily while resolving its model classes and the user sees "Could not import module 'LlamaConfig'". edgekit
never uses torchvision; the fix is to remove it or install the one built for this torch.
"""

from __future__ import annotations

import re
from importlib import metadata

from .errors import ModelLoadError

PIN = re.compile(r"^torch\s*\(?\s*==(?!=)\s*([^\s;,)*]+)(?![\w.]*\*)")
HINT = "pip uninstall torchvision (edgekit does not use it), or install the torchvision built for torch {torch}"


def check_torchvision() -> None:
    """Refuse a torchvision whose wheel pins another torch than the installed one.

    Raises:
        ModelLoadError: naming both versions and the fix.
    """
    try:
        tv = metadata.version("torchvision")
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return
    for req in metadata.requires("torchvision") or []:
        pin = PIN.match(req)  # "torch==2.5.0", "torch (==2.5.0)", "torch==2.5.0; extra == ..."
        if pin:
            wanted = pin.group(1)
            if wanted.split("+")[0] != torch.split("+")[0]:
                raise ModelLoadError(
                    f"torchvision {tv} (built for torch {wanted}) is installed beside torch {torch}, and transformers "
                    "fails when it imports it",
                    HINT.format(torch=torch),
                )


def torchvision_failure(exc: BaseException) -> ModelLoadError | None:
    """The one-line error for an import failure that an installed torchvision caused (anywhere in ``exc``'s chain),
    else None (a model that needs torchvision where none is installed is not this)."""
    try:
        tv = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        return None
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "?"
    seen: BaseException | None = exc
    while seen is not None:
        if "torchvision" in str(seen):
            first = str(seen).strip().splitlines()[0][:160] if str(seen).strip() else type(seen).__name__
            return ModelLoadError(
                f"transformers cannot import its model classes because torchvision {tv} does not work with torch "
                f"{torch} ({first})",
                HINT.format(torch=torch),
            )
        seen = seen.__cause__ or seen.__context__
    return None
