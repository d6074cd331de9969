"""edgekit's llama::update_cache / llama::custom_sdpa (runner/llm_ops.cpp, what the native runner and every board run)
against ExecuTorch's own kernels (its custom-ops library, called through torch.ops) on the same inputs, at the attention
shapes people ship: query × KV heads (4,1) (8,2) (9,3) (12,4) (32,8) (16,16) — Llama-3.2-1B is (32,8), SmolLM2 (9,3),
Qwen2.5-0.5B (14,2)'s grouping of 7 is covered by (9,3)'s 3 and (32,8)'s 4 — head dims 32, 64 and 128, a prefill from
position 0, a chunked prefill from a later position and into the last slots, decode steps at positions 0, 1, the middle
and the last slot of the cache, at 1, 2 and 4 threads. A decode step whose KV heads the threads do not divide splits
its keys into ranges merged afterwards (flash-decoding), each of at least 64 keys: in the 272-slot cache the middle
slot (137 keys: two uneven ranges) and the last (272 keys: two ranges at 2 threads, up to four at 4) take that path
for the (4,1) and (9,3) shapes at 2 threads, and for (4,1), (8,2) and (9,3) at 4.

One program holds all eighteen shapes (each: the cache filled from an input, the new keys and values written at
``start_pos``, attention over it), lowered without a delegate and run by the native runner's reference-check mode."""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pytest
import torch
from native_variants import broken_runner

from edgekit.runner.native import runner_path

HEADS = [(4, 1), (8, 2), (9, 3), (12, 4), (32, 8), (16, 16)]
SHAPES = [(h, kv, d) for h, kv in HEADS for d in (32, 64, 128)]
CACHE = 272
#: (tokens per call, start positions): prefill from 0, chunked from 20, into the last 8 slots; decode at 0, 1, mid, last
CALLS = [(8, (0, 20, CACHE - 8)), (1, (0, 1, CACHE // 2, CACHE - 1))]
#: outputs are attention-weighted sums of N(0, 1) values: ExecuTorch's and edgekit's kernels differ by rounding only
#: (at most 1.6e-6 measured); a kernel with a 3e-4-accurate exp is already 2e-5 off
TOLERANCE = 5e-6


class Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for i, (_, kv, d) in enumerate(SHAPES):
            self.register_buffer(f"k{i}", torch.zeros(1, CACHE, kv, d), persistent=False)
            self.register_buffer(f"v{i}", torch.zeros(1, CACHE, kv, d), persistent=False)

    def forward(self, input_pos, xs):
        pos = input_pos[0].item()
        torch._check_is_size(pos)
        torch._check(pos + xs[0].shape[1] <= CACHE)
        out = []
        for i in range(len(SHAPES)):
            q, k, v, k_cache, v_cache = xs[5 * i : 5 * i + 5]
            kc, vc = getattr(self, f"k{i}"), getattr(self, f"v{i}")
            torch.ops.llama.update_cache(k_cache, kc, 0)  # the whole cache, so every call stands alone
            torch.ops.llama.update_cache(v_cache, vc, 0)
            torch.ops.llama.update_cache(k, kc, pos)
            torch.ops.llama.update_cache(v, vc, pos)
            out.append(torch.ops.llama.custom_sdpa(q, kc, vc, pos, None, 0.0, True))
        return tuple(out)


def _inputs(tokens: int, pos: int) -> list:
    g = torch.Generator().manual_seed(1000 * tokens + pos)
    xs = []
    for h, kv, d in SHAPES:
        for shape in ((tokens, h), (tokens, kv), (tokens, kv), (CACHE, kv), (CACHE, kv)):
            xs.append(torch.randn(1, *shape, d, generator=g))
    return [torch.tensor([pos]), xs]


@pytest.fixture(scope="module")
def attention(tmp_path_factory):
    """The eighteen shapes as one program, and ExecuTorch's answers for every call (its kernels, through torch.ops)."""
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from edgekit.pipeline.decoder import load_custom_ops

    load_custom_ops()
    folder = tmp_path_factory.mktemp("attention")
    module = Attention()
    example = _inputs(4, 0)
    tokens = torch.export.Dim("tokens", min=1, max=CACHE)
    dims = (None, [{1: tokens} if j % 5 < 3 else None for j in range(len(example[1]))])
    exported = torch.export.export(module, tuple(example), dynamic_shapes=dims, strict=False)
    program = to_edge_transform_and_lower(exported, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    with warnings.catch_warnings():  # the caches' initial values: each call fills them first
        warnings.filterwarnings("ignore", message="Mutation on a buffer")
        (folder / "attention.pte").write_bytes(program.to_executorch().buffer)
    calls = []
    for tokens, positions in CALLS:
        sets = [_inputs(tokens, p) for p in positions]
        with torch.no_grad():
            want = [[o.numpy() for o in module(*s)] for s in sets]
        calls.append((tokens, positions, sets, want))
    return folder, calls


def _worst_errors(runner, folder, calls, threads: int) -> dict:
    """Per (call, shape): the largest absolute difference between the runner's outputs and ExecuTorch's."""
    worst = {}
    for tokens, positions, sets, want in calls:
        flat = [[s[0], *s[1]] for s in sets]
        (folder / "in.bin").write_bytes(b"".join(t.numpy().tobytes() for s in flat for t in s))
        cmd = [runner, "--model", folder / "attention.pte", "--result", folder / "r.json", "--check-inputs",
               folder / "in.bin", "--check-count", str(len(sets)), "--check-outputs", folder / "out.bin", "--runs", "1",
               "--warmup", "0", "--threads", str(threads)]  # fmt: skip
        for t in flat[0]:
            cmd += ["--check-shape", ",".join(map(str, t.shape))]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-500:]
        got, at = np.fromfile(folder / "out.bin", np.float32), 0
        for pos, outs in zip(positions, want):
            for shape, o in zip(SHAPES, outs):
                worst[(tokens, pos, shape)] = float(np.abs(got[at : at + o.size].reshape(o.shape) - o).max())
                at += o.size
        assert at == got.size
    return worst


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_edgekits_attention_gives_executorchs_answers_at_the_shapes_people_ship(attention, threads):
    folder, calls = attention
    worst = _worst_errors(runner_path(), folder, calls, threads)
    assert len(worst) == len(SHAPES) * sum(len(p) for _, p in CALLS) == 126
    bad = {k: v for k, v in worst.items() if v > TOLERANCE}
    assert not bad, bad


def test_the_sweep_catches_a_broken_merge_of_split_keys(attention, tmp_path):
    """At 2 threads the decode steps over 128 keys or more with 1 or 3 KV heads split their keys: a merge that ignores
    the ranges' maxima is wrong exactly there."""
    folder, calls = attention
    worst = _worst_errors(broken_runner(tmp_path, "merge-ignores-maxima"), folder, calls, 2)
    wrong = {(tokens, pos, shape[1]) for (tokens, pos, shape), v in worst.items() if not v <= TOLERANCE}
    assert wrong == {(1, pos, kv) for pos in (CACHE // 2, CACHE - 1) for kv in (1, 3)}, sorted(wrong)


@pytest.mark.parametrize("mutation", ["drops-newest-key", "misplaced-query-groups", "libm-exp"])
def test_the_sweep_catches_a_broken_kernel_and_passes_one_that_only_rounds_differently(attention, tmp_path, mutation):
    folder, calls = attention
    worst = _worst_errors(broken_runner(tmp_path, mutation), folder, calls, 1)
    wrong = [k for k, v in worst.items() if not v <= 1e-3]  # NaN included; 200x the tolerance, well above rounding
    if mutation == "libm-exp":  # another exp(), as exact: within the sweep's tolerance everywhere
        assert max(worst.values()) <= TOLERANCE, max(worst.values())
    elif mutation == "misplaced-query-groups":  # both layouts agree with one KV head, or one query head per KV head
        assert {shape for *_, shape in wrong} == {s for s in SHAPES if 1 < s[1] < s[0]}
    else:  # the newest key matters at every position but the very first (one key there either way)
        assert {pos for _, pos, _ in wrong} >= {1, CACHE // 2, CACHE - 1, 20}
