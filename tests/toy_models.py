"""Small models the tests build for real (importable as ``toy_models:<factory>``)."""

import threading

import numpy as np
import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def small_cnn():
    torch.manual_seed(0)
    return SmallCNN()


def small_cnn_with_inputs():
    torch.manual_seed(0)
    return SmallCNN(), torch.randn(1, 1, 8, 8)


def numpy_strided_inputs():
    """Example input from numpy with one channel: strides (64, 1, 8, 1), ambiguous at export."""
    torch.manual_seed(0)
    arr = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32).transpose(0, 3, 1, 2)
    return SmallCNN(), torch.from_numpy(arr)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))

    def forward(self, x):
        return self.net(x)


def mlp():
    torch.manual_seed(0)
    return MLP(), torch.randn(1, 32)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.fc = nn.Linear(16 + 4, 3)

    def forward(self, tokens, feats):
        return self.fc(torch.cat([self.emb(tokens).mean(1), feats], dim=1))


def two_inputs():
    torch.manual_seed(0)
    return TwoInputs()


class LockedLinear(nn.Module):
    """Strict export (TorchDynamo) refuses the lock; non-strict tracing handles it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.lock = threading.Lock()

    def forward(self, x):
        with self.lock:
            return self.fc(x)


def locked_linear():
    return LockedLinear(), torch.randn(1, 4)


class DataDependent(nn.Module):
    """Branches on a tensor's value: neither export mode can trace it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


def data_dependent():
    return DataDependent(), torch.randn(1, 4)


def raises():
    raise RuntimeError("weights file missing")


def not_a_module():
    return {"weights": 1}


NOT_CALLABLE = 3


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResidualConcat(nn.Module):
    """Residual adds and a concatenation: the couplings structured pruning must respect."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 32, 3, padding=1)
        self.block = Block(32)
        self.left = nn.Conv2d(32, 16, 1)
        self.right = nn.Conv2d(32, 16, 3, padding=1)
        self.merge = nn.Conv2d(32, 32, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, 10)

    def forward(self, x):
        x = self.block(torch.relu(self.stem(x)))
        x = torch.relu(self.merge(torch.cat([self.left(x), self.right(x)], dim=1)))
        return self.classifier(self.pool(x).flatten(1))


def residual_concat():
    torch.manual_seed(0)
    return ResidualConcat(), torch.randn(1, 1, 8, 8)


class FunctionalConv(nn.Module):
    """A conv weight used through F.conv2d: torch-pruning cannot see which dimension is the channel."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(16, 16, 3, 3) * 0.1)
        self.classifier = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(torch.nn.functional.conv2d(torch.relu(self.stem(x)), self.weight, padding=1))
        return self.classifier(x.mean((2, 3)))


def functional_conv():
    torch.manual_seed(0)
    return FunctionalConv(), torch.randn(1, 1, 8, 8)


class DictOut(nn.Module):
    """Returns a dict, as many model libraries do: the program's outputs are its pytree leaves."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        return {"logits": y, "probs": torch.softmax(y, -1)}


def dict_out():
    torch.manual_seed(0)
    return DictOut(), torch.randn(1, 4)


def regressor():
    """One output column: not class scores."""
    torch.manual_seed(0)
    return nn.Linear(4, 1), torch.randn(1, 4)


class SequenceMixer(nn.Module):
    """Two N x T x 8 sequences added, a per-step linear, LayerNorm: T must be the same for both inputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, a, b):
        return self.norm(self.fc(a + b))


def sequence_mixer():
    torch.manual_seed(0)
    return SequenceMixer(), (torch.randn(1, 12, 8), torch.randn(1, 12, 8))


class Fragile(nn.Module):
    """An MLP whose fc2 output carries one huge channel (x1000) that the head ignores: int8 activations (one scale
    per tensor, or per row for dynamic ones) crush every other channel to zero, so plain int8 loses the output
    unless fc2 and head stay in fp32."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 32)
        self.head = nn.Linear(32, 8)
        with torch.no_grad():
            self.fc2.weight[0] *= 1000
            self.fc2.bias[0] = 1000.0
            self.head.weight[:, 0] = 0

    def forward(self, x):
        return self.head(self.fc2(torch.relu(self.fc1(x))))


def fragile():
    torch.manual_seed(0)
    return Fragile(), (torch.randn(1, 16),)


class DynamoOnly(nn.Module):
    """Runs eagerly and traces under TorchDynamo (strict export), but refuses plain Python tracing on fake tensors
    (non-strict export): the case edgekit's strict fallback exists for."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if torch.compiler.is_dynamo_compiling():
            return self.fc(x)
        if torch._guards.detect_fake_mode() is not None:
            raise RuntimeError("this model only traces under TorchDynamo")
        return self.fc(x)


def dynamo_only():
    torch.manual_seed(0)
    return DynamoOnly(), (torch.randn(1, 4),)


def torch_threads(_job) -> int:
    """What a build process's torch would compute with (tests/test_scale.py: a local pool shares the cores)."""
    return torch.get_num_threads()


def digits_like_arrays(n: int = 400, seed: int = 0) -> tuple:
    """A learnable 10-class problem on 1x8x8 inputs: ten random prototypes plus noise (x float32, y int64)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((10, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, n)
    x = (protos[y] + 0.15 * rng.standard_normal((n, 1, 8, 8))).astype(np.float32)
    return x, y


class WideCNN(nn.Module):
    """Wide enough that pruning half its channels is measurably faster (a quarter of the MACs of its main conv)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def train(model: nn.Module, steps: int = 40) -> nn.Module:
    """A few full-batch Adam steps on the first 300 digits_like samples: enough for 100% held-out accuracy."""
    x, y = digits_like_arrays()
    x, y = torch.from_numpy(x[:300]), torch.from_numpy(y[:300])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


class OutlierMLP(nn.Module):
    """fc2's rows each hold one weight far above the others, on an input fc1 never activates: per-channel int8 rounds
    the rest of every row to nothing, so fc2 is the layer that makes the int8 model wrong (fc1 and head quantize
    well). Wide enough that each layer takes measurable time."""

    def __init__(self, width: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(64, width)
        self.fc2 = nn.Linear(width, width)
        self.head = nn.Linear(width, 8)
        with torch.no_grad():
            self.fc1.weight[0].zero_()
            self.fc1.bias[0] = -1.0  # unit 0 is always 0 after the ReLU
            self.fc2.weight[:, 0] = 50.0  # so this column never matters, but sets every row's int8 scale

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.head(x)


def outlier_mlp():
    torch.manual_seed(0)
    return OutlierMLP(), torch.randn(1, 64)


# ------------------------------------------------------------------------------------------------ tiny decoders
def tiny_tokenizer(vocab_size: int = 384, add_bos: bool = False):
    """A byte-level BPE trained here on the standard library's own source (no download); ``add_bos``: it puts its BOS
    first by itself, as Llama's tokenizers do."""
    import inspect
    import json as _json
    import textwrap

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([inspect.getsource(m) for m in (textwrap, _json.decoder)], trainer=trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", pad_token="<|pad|>"
    )


def tiny_decoder(folder, family: str = "llama", seed: int = 0, layers: int = 1, gguf_q4_1: bool = False, **config):
    """A random-weight decoder of ``family`` (llama, qwen2, gpt2, phi3) and its tokenizer, saved with save_pretrained:
    the real hf: code path, no download. Weights are drawn wider than the default so greedy choices are not ties.
    ``gguf_q4_1``: the weights as a Q4_1 GGUF file holds them (what transformers' GGUF loader hands back), by the
    ``gguf`` package's own quantizer: the linears Q4_1 but ``down_proj`` Q8_0 (llama.cpp's mixed files keep some
    projections at more bits), the embedding table Q8_0; the first q_proj has a zero and a constant group."""
    import transformers

    tok = tiny_tokenizer()
    common = dict(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.2,
    )
    if family == "gpt2":
        cfg = transformers.GPT2Config(
            n_embd=64, n_layer=layers, n_head=4, n_positions=256, tie_word_embeddings=True, **common
        )
        cls = transformers.GPT2LMHeadModel
    else:
        kw = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=family != "phi3",
            **common,
        )
        kw.update(config)  # e.g. another attention shape: num_attention_heads, num_key_value_heads, head_dim
        cfg, cls = {
            "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
            "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
            "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM),
        }[family]
        cfg = cfg(**kw)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    if gguf_q4_1:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize, quantize

        def snap(weight, kind):
            w = weight.detach().numpy()
            weight.data = torch.from_numpy(dequantize(quantize(w, kind), kind).reshape(w.shape).copy())

        with torch.no_grad():
            q_proj = model.model.layers[0].self_attn.q_proj.weight
            q_proj[0, :32], q_proj[1, :32] = 0.0, 0.05  # a zero and a constant group (step 0 in the file)
            for name, m in model.named_modules():
                if isinstance(m, torch.nn.Linear) and m.weight is not model.get_input_embeddings().weight:
                    kind = GGMLQuantizationType.Q8_0 if name.endswith("down_proj") else GGMLQuantizationType.Q4_1
                    snap(m.weight, kind)
            snap(model.get_input_embeddings().weight, GGMLQuantizationType.Q8_0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
