"""The built-in demo: a small CNN trained on scikit-learn's bundled digits (real data, no download).

It trains the network (seeded), builds it for ``xnnpack-fp32``, ``xnnpack-int8`` (calibrated on training
images) and ``xnnpack-int8-pruned`` (50% of channels removed, fine-tuned on the training images, then int8),
evaluates accuracy through the ``.pte`` files on the 360 held-out images, times each program in an
isolated worker and returns one comparison. Everything it writes stays under ``out``, so a user can repeat any
step from the command line (the trained model is saved as ``digits_cnn.pt2``, the data as ``.npz``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NotRequired, TypedDict

from .errors import EdgekitError
from .fileops import check_output, staged_output, write_json

SEED = 0
DEMO_MARKER = "demo.json"  # marks a folder as an earlier demo's, so --force may replace it
DEMO_MARKERS = (DEMO_MARKER, "digits_cnn.pt2")  # the second: demo folders of edgekit 0.1, which wrote no demo.json


def digits_cnn() -> tuple[torch.nn.Module, torch.Tensor]:
    """The demo network: three conv blocks and a linear classifier, ~93k parameters, input 1x1x8x8."""
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1),
                nn.BatchNorm2d(32),
                nn.ReLU(),
                nn.Conv2d(32, 64, 3, padding=1),
                nn.BatchNorm2d(64),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(64, 128, 3, padding=1),
                nn.BatchNorm2d(128),
                nn.ReLU(),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.pool(self.features(x)).flatten(1))

    torch.manual_seed(SEED)
    return DigitsCNN(), torch.zeros(1, 1, 8, 8)


# below digits_cnn on purpose: explain.json records the source line of DigitsCNN.forward, so the demo's packages
# stay byte-identical only while nothing above it moves
if TYPE_CHECKING:
    import numpy as np
    import torch
    from numpy.typing import ArrayLike

    from .data import Dataset


class DigitsSplit(TypedDict):
    """:func:`load_digits_split`: images ``N x 1 x 8 x 8`` (float32 in [0, 1]) and their labels (int64)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


class DemoRow(TypedDict):
    """One variant of the demo's comparison (the eager model has no target, program or engine)."""

    variant: str
    target: NotRequired[str]
    accuracy: float
    size_kib: float
    p50_ms: float | None
    sqnr_db: float | str | None  # "–" for the eager model; None: exact
    macs: NotRequired[int | None]
    pte: NotRequired[str]
    engine: NotRequired[str]


class DemoResult(TypedDict):
    """:func:`run_demo`'s comparison (also ``demo.json`` in its folder, without ``seconds``)."""

    rows: list[DemoRow]
    epochs: int
    test_samples: int
    timing_note: str
    out: str
    seconds: NotRequired[float]


def load_digits_split() -> DigitsSplit:
    """scikit-learn's digits as float32 ``N x 1 x 8 x 8`` in [0, 1]: 1437 train / 360 test, stratified, seeded."""
    import numpy as np

    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise EdgekitError(
            "the demo needs scikit-learn (it ships the digits data)", "pip install 'edgekit[demo]'"
        ) from exc
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    return {
        "x_train": np.ascontiguousarray(x_tr),
        "y_train": y_tr,
        "x_test": np.ascontiguousarray(x_te),
        "y_test": y_te,
    }


def _dataset(x: ArrayLike, y: ArrayLike, source: str = "scikit-learn digits") -> Dataset:
    import torch

    from .data import Dataset

    return Dataset((torch.as_tensor(x),), torch.as_tensor(y), source)


def train(
    model: torch.nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int,
    lr: float = 3e-3,
    batch: int = 32,
    seed: int = SEED,
) -> torch.nn.Module:
    """Train in place (Adam, cross-entropy, cosine-annealed rate); returns the model in eval mode."""
    from .pipeline.training import finetune_

    finetune_(model, _dataset(x, y), epochs=epochs, lr=lr, batch=batch, seed=seed, cosine=True)
    return model


def accuracy(model: torch.nn.Module, x: ArrayLike, y: ArrayLike) -> float:
    from .pipeline.training import accuracy as dataset_accuracy

    return dataset_accuracy(model, _dataset(x, y))


def run_demo(
    out: str | Path,
    *,
    force: bool = False,
    epochs: int = 15,
    log: Callable[[str], None] = lambda m: None,
    time_runs: int = 200,
    finetune_epochs: int = 5,
) -> DemoResult:
    """Train, build, evaluate and time the digits CNN; return the comparison rows.

    Raises:
        OutputExistsError: ``out`` exists and ``force`` is not set, or it is not an earlier demo folder.
    """
    import torch

    from ._noise import import_stack

    out = Path(out)
    check_output(out, force, marker=DEMO_MARKERS)
    t0 = time.perf_counter()
    import_stack()
    torch.manual_seed(SEED)
    data = load_digits_split()
    with staged_output(out, force, marker=DEMO_MARKERS) as tmp:
        result = _run(tmp, out, data, epochs, log, time_runs, finetune_epochs)
        write_json(tmp / DEMO_MARKER, result)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def write_digits_files(folder: Path, data: DigitsSplit) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The split as the data files edgekit reads: ``calib.npz`` (256 training images), ``train.npz`` and ``test.npz``
    (images and labels). Returns their arrays by name."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "calib": (data["x_train"][:256], data["y_train"][:256]),
        "train": (data["x_train"], data["y_train"]),
        "test": (data["x_test"], data["y_test"]),
    }
    for name, (x, y) in files.items():
        np.savez(folder / f"{name}.npz", x=x, y=y)
    return files


def _run(
    tmp: Path,
    out: Path,
    data: DigitsSplit,
    epochs: int,
    log: Callable[[str], None],
    time_runs: int,
    finetune_epochs: int,
) -> DemoResult:
    import torch

    from .models import LoadedModel, contiguous
    from .pipeline.build import build

    splits = write_digits_files(tmp / "data", data)

    log(f"[bold]1/5[/] training the digits CNN on {len(data['x_train'])} images ({epochs} epochs)…")
    model, example = digits_cnn()
    train(model, data["x_train"], data["y_train"], epochs=epochs)
    eager_acc = accuracy(model, data["x_test"], data["y_test"])
    log(f"     eager test accuracy {eager_acc:.2%}")
    with torch.no_grad():
        ep = torch.export.export(model, (example,))
    torch.export.save(ep, str(tmp / "digits_cnn.pt2"))
    loaded = LoadedModel("edgekit.demo:digits_cnn (trained by the demo)", model, contiguous((example,)))

    rows: list[DemoRow] = [
        {
            "variant": "eager PyTorch (fp32)",
            "accuracy": eager_acc,
            "size_kib": sum(p.numel() * p.element_size() for p in model.state_dict().values()) / 1024,
            "p50_ms": None,
            "sqnr_db": "–",
        }
    ]
    builds = {}
    # the data as the builds read it, named where the demo leaves its files: the manifests record their data's
    # source, and the staging folder they were written to is gone by then
    calib, train_data, test = (_dataset(x, y, str(out / "data" / f"{name}.npz")) for name, (x, y) in splits.items())
    variants = [
        ("ExecuTorch fp32 (xnnpack-fp32)", "xnnpack-fp32", None, None),
        ("ExecuTorch int8 (xnnpack-int8)", "xnnpack-int8", calib, None),
        ("pruned 50% + fine-tune + int8 (xnnpack-int8-pruned)", "xnnpack-int8-pruned", calib, train_data),
    ]
    for step, (variant, target, calib, finetune) in enumerate(variants, start=2):
        log(f"[bold]{step}/5[/] building {target}…")
        res = build(
            loaded,
            target,
            out=tmp / target,
            calibration=calib,
            eval=test,
            force=True,
            finetune=finetune,
            finetune_epochs=finetune_epochs if finetune else None,
        )
        builds[target] = res
        m = res.manifest
        rows.append(
            {
                "variant": variant,
                "target": target,
                "accuracy": m.verify.accuracy.program,
                "size_kib": m.program.size_bytes / 1024,
                "sqnr_db": m.verify.sqnr_db,
                "macs": m.prune.macs_after,
                "pte": str(out / target / "model.pte"),
            }
        )

    log(f"[bold]5/5[/] profiling each variant in an isolated worker ({time_runs} runs, 1 thread)…")
    from .models import InputSpec
    from .profile import profile

    timing = dict(runs=time_runs, warmup=20, warmup_seconds=0.2, threads=1)
    rows[0]["p50_ms"] = profile(
        eager=str(tmp / "digits_cnn.pt2"), eager_inputs=[InputSpec((1, 1, 8, 8))], **timing
    ).latency_ms.p50
    for row, target in zip(rows[1:], builds):
        prof = profile(tmp / target, **timing)
        row["p50_ms"] = prof.latency_ms.p50
        row["engine"] = prof.engine
    return {
        "rows": rows,
        "epochs": epochs,
        "test_samples": int(len(data["x_test"])),
        "timing_note": _TIMING_NOTE.format(runs=time_runs),
        "out": str(out),
    }


_TIMING_NOTE = (
    "p50 of {runs} single-image runs after warm-up, 1 thread, each variant in its own worker process "
    "(`edgekit profile`; the eager row runs the exported graph in PyTorch)."
)
