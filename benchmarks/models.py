"""Models for the benchmark suite and scripts, defined in code (no model hub is reachable).

Each factory returns ``(module, example_inputs)`` so it works as a model spec: ``benchmarks.models:NAME``
(run from the repository root) or ``benchmarks/models.py:NAME``.

The real-size reference models (MobileNetV2 1.0, ResNet-18, MobileNetV3-Small at 224, a MiniLM-L6-shaped encoder)
are defined in ``realsize.py`` beside their calibration data, and are reachable from here too.
"""

from __future__ import annotations

import torch
from torch import nn


def trivial():
    """Linear(4, 4): nothing to compute, so its latency is the per-call overhead."""
    torch.manual_seed(0)
    return nn.Linear(4, 4).eval(), torch.randn(1, 4)


def big_linear():
    """A program holding exactly 64 MiB of fp32 weights (4096 x 4096), for memory accuracy."""
    torch.manual_seed(0)
    return nn.Linear(4096, 4096, bias=False).eval(), torch.randn(1, 4096)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class ResidualCNN(nn.Module):
    """A ResNet-style CNN (~1.2 M parameters) for 3x128x128 images."""

    def __init__(self, classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 4 * w, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))


def residual_cnn():
    torch.manual_seed(0)
    return ResidualCNN().eval(), torch.randn(1, 3, 128, 128)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Small(nn.Module):
    """A MobileNetV2-style inverted-residual network (width 0.5) for 3x96x96 images."""

    def __init__(self, classes: int = 10):
        super().__init__()
        cfg = [
            (1, 8, 1, 1),
            (6, 16, 2, 2),
            (6, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 24, 1, 1),
            (6, 48, 2, 2),
            (6, 48, 1, 1),
            (6, 64, 1, 1),
            (6, 80, 2, 2),
            (6, 160, 1, 1),
        ]
        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()]
        cin = 16
        for expand, cout, n, stride in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += [nn.Conv2d(cin, 640, 1, bias=False), nn.BatchNorm2d(640), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(640, classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenet_v2_small():
    torch.manual_seed(0)
    return MobileNetV2Small().eval(), torch.randn(1, 3, 96, 96)


class TinyTransformer(nn.Module):
    """A 2-layer transformer encoder classifier over 32 tokens (Linear-heavy: the int8-dynamic case)."""

    def __init__(self, vocab: int = 1000, dim: int = 128, classes: int = 4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, 32, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, dim * 4, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.emb(tokens) + self.pos).mean(1))


def tiny_transformer():
    torch.manual_seed(0)
    return TinyTransformer().eval(), torch.randint(0, 1000, (1, 32))


def digits_cnn():
    """The demo's digits CNN, trained on scikit-learn's digits (seeded, 15 epochs)."""
    from edgekit.demo import digits_cnn as make
    from edgekit.demo import load_digits_split, train

    model, example = make()
    data = load_digits_split()
    train(model, data["x_train"], data["y_train"], epochs=15)
    return model.eval(), example


def digits_calib():
    """256 training images of scikit-learn's digits (calibration data)."""
    from edgekit.demo import load_digits_split

    d = load_digits_split()
    return {"x": d["x_train"][:256]}


def digits_test():
    """The 360 held-out digits with labels (evaluation data: real accuracy)."""
    from edgekit.demo import load_digits_split

    d = load_digits_split()
    return {"x": d["x_test"], "y": d["y_test"]}


# ------------------------------------------------------------------------------------------------ real-size models
def _realsize():
    """benchmarks/realsize.py, loaded by path (a spec file is imported without its folder on sys.path)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "_edgekit_benchmarks_realsize"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("realsize.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def mobilenet_v2():
    """MobileNetV2 1.0 at 1x3x224x224 (realsize.py)."""
    return _realsize().mobilenet_v2()


def resnet18():
    """ResNet-18 at 1x3x224x224 (realsize.py)."""
    return _realsize().resnet18()


def mobilenet_v3_small():
    """MobileNetV3-Small at 1x3x224x224 (realsize.py)."""
    return _realsize().mobilenet_v3_small()


def minilm_encoder():
    """A BERT-style encoder shaped like MiniLM-L6, 32 tokens, ids + attention mask (realsize.py)."""
    return _realsize().minilm_encoder()
