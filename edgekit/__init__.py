"""edgekit: take a PyTorch model to an ExecuTorch program for CPU, and measure what it costs there.

Example:
    >>> import edgekit
    >>> result = edgekit.build("mypkg.nets:make_net", "xnnpack-int8", calibration="calib.npz", out="build/net")
    >>> result.manifest.verify.sqnr_db
    >>> edgekit.profile(result.pte_path, runs=200).latency_ms.p50
"""

from ._version import __version__  # noqa: E402,F401
from .errors import EdgekitError  # noqa: E402
from .manifest import Manifest, read_manifest  # noqa: E402
from .models import DynamicBatch, InputSpec, load_model, parse_dynamic_batch, parse_input_spec  # noqa: E402
from .targets import Target, list_targets, load_target  # noqa: E402


def build(*args, **kwargs):
    """Build a verified ExecuTorch package; see :func:`edgekit.pipeline.build.build`."""
    from .pipeline.build import build as _build

    return _build(*args, **kwargs)


# Callable subpackage: edgekit.profile(path, runs=200) profiles; edgekit.profile.ProfileResult is its type.
from . import profile  # noqa: E402

__all__ = [
    "__version__",
    "EdgekitError",
    "DynamicBatch",
    "InputSpec",
    "Manifest",
    "Target",
    "build",
    "list_targets",
    "load_model",
    "load_target",
    "parse_dynamic_batch",
    "parse_input_spec",
    "profile",
    "read_manifest",
]
