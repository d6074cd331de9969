"""Real-size reference models in plain torch, with torchvision's published layer configurations (torchvision itself
does not import beside the CPU torch here): MobileNetV2 1.0, ResNet-18 and MobileNetV3-Small at 1x3x224x224, and a
BERT-style encoder shaped like MiniLM-L6 (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522, 32 tokens; inputs
ids + attention mask, output the masked mean of the last hidden state).

Weights are random (no model hub here), initialised as torchvision does; BatchNorm running statistics are then
re-estimated on random images so activations have a realistic scale (with the initial statistics int8 would
collapse to zeros). Each factory returns ``(model, example_inputs)`` and is a valid edgekit model spec:
``benchmarks/realsize.py:mobilenet_v2``.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGE = (1, 3, 224, 224)


def _divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _cbr(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU6) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act(inplace=True)] if act else []))


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def recalibrate_bn(model: nn.Module, batches: int = 8, batch: int = 8, seed: int = 0) -> nn.Module:
    """Re-estimate BatchNorm running statistics (cumulative average) on random images, then eval mode."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch, *IMAGE[1:], generator=gen))
    return model.eval()


# ---------------------------------------------------------------------------------------------- MobileNetV2
class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [_cbr(cin, hidden, 1)] if expand != 1 else []
        layers += [_cbr(hidden, hidden, 3, stride, groups=hidden), _cbr(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = [
        [1, 16, 1, 1],
        [6, 24, 2, 2],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ]

    def __init__(self, classes: int = 1000):
        super().__init__()
        layers, cin = [_cbr(3, 32, 3, 2)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_cbr(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def mobilenet_v2():
    torch.manual_seed(0)
    return recalibrate_bn(MobileNetV2()), (torch.randn(*IMAGE),)


# ---------------------------------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.fc = nn.Linear(512, classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet18():
    torch.manual_seed(0)
    return recalibrate_bn(ResNet18()), (torch.randn(*IMAGE),)


# ---------------------------------------------------------------------------------------------- MobileNetV3-Small
class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        squeeze = _divisible(channels // 4)
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))


class V3Block(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, act: str, stride: int):
        super().__init__()
        a = nn.Hardswish if act == "HS" else nn.ReLU
        self.use_res = stride == 1 and cin == cout
        layers = [_cbr(cin, exp, 1, act=a)] if exp != cin else []
        layers.append(_cbr(exp, exp, k, stride, groups=exp, act=a))
        if se:
            layers.append(SqueezeExcitation(exp))
        layers.append(_cbr(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res else self.block(x)


class MobileNetV3Small(nn.Module):
    CONFIG = [
        (16, 3, 16, 16, True, "RE", 2),
        (16, 3, 72, 24, False, "RE", 2),
        (24, 3, 88, 24, False, "RE", 1),
        (24, 5, 96, 40, True, "HS", 2),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 120, 48, True, "HS", 1),
        (48, 5, 144, 48, True, "HS", 1),
        (48, 5, 288, 96, True, "HS", 2),
        (96, 5, 576, 96, True, "HS", 1),
        (96, 5, 576, 96, True, "HS", 1),
    ]

    def __init__(self, classes: int = 1000):
        super().__init__()
        layers = [_cbr(3, 16, 3, 2, act=nn.Hardswish)] + [V3Block(*c) for c in self.CONFIG]
        layers.append(_cbr(96, 576, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(576, 1024), nn.Hardswish(inplace=True), nn.Dropout(0.2), nn.Linear(1024, classes)
        )
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def mobilenet_v3_small():
    torch.manual_seed(0)
    return recalibrate_bn(MobileNetV3Small()), (torch.randn(*IMAGE),)


# ---------------------------------------------------------------------------------------------- MiniLM-shaped encoder
class EncoderLayer(nn.Module):
    def __init__(self, hidden: int = 384, heads: int = 12, ffn: int = 1536):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
        self.norm1, self.norm2 = nn.LayerNorm(hidden, eps=1e-12), nn.LayerNorm(hidden, eps=1e-12)
        self.up, self.down = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        n, t, h = x.shape
        d = h // self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(n, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / d**0.5 + additive_mask, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(n, t, h)
        x = self.norm1(x + self.o(ctx))
        return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))


class MiniLMEncoder(nn.Module):
    def __init__(self, vocab: int = 30522, hidden: int = 384, layers: int = 6, positions: int = 512):
        super().__init__()
        self.word, self.position = nn.Embedding(vocab, hidden, padding_idx=0), nn.Embedding(positions, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(EncoderLayer(hidden) for _ in range(layers))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, 0, 0.02)
        self.register_buffer("position_ids", torch.arange(positions)[None], persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        x = (
            self.word(input_ids)
            + self.position(self.position_ids[:, :t])
            + self.token_type(torch.zeros_like(input_ids))
        )
        x = self.norm(x)
        mask = attention_mask.to(x.dtype)
        additive = (1.0 - mask[:, None, None, :]) * -10000.0
        for layer in self.layers:
            x = layer(x, additive)
        return torch.bmm(mask.unsqueeze(1), x).squeeze(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)


def minilm_encoder(tokens: int = 32):
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (1, tokens))
    mask = torch.ones(1, tokens, dtype=torch.long)
    return MiniLMEncoder().eval(), (ids, mask)


MODELS = {
    "mobilenet_v2": mobilenet_v2,
    "resnet18": resnet18,
    "mobilenet_v3_small": mobilenet_v3_small,
    "minilm_encoder": minilm_encoder,
}


def image_calibration():
    """32 seeded random images at 224 (no image data ships here): the same samples tune_vs_ort.py calibrates on."""
    import numpy as np

    return {"x": np.random.default_rng(1).standard_normal((32, *IMAGE[1:])).astype(np.float32)}


def token_calibration():
    """32 seeded random token sequences (ids in the vocabulary's middle range, full masks), 32 tokens."""
    import numpy as np

    ids = np.random.default_rng(1).integers(1000, 30000, (32, 32))
    return {"x0": ids, "x1": np.ones_like(ids)}
