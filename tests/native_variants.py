"""Native runners compiled here with a deliberately broken attention kernel (what the kernel sweep and the answers
check must catch), or with one as correct as edgekit's that rounds differently (what they must pass). Each is
edgekit's own runner.cpp and llm_ops.cpp with one line changed, compiled exactly as the product compiles its runner
(edgekit.runner.native.compile_command)."""

from __future__ import annotations

from pathlib import Path

from edgekit.runner.native import LLM_OPS, compile_command, compile_runner, find_compiler

#: name → (the line in llm_ops.cpp, what it becomes)
BROKEN = {
    # the newest key left out of every query's attention (an off-by-one in the causal bound)
    "drops-newest-key": (
        "const int64_t keys = is_causal ? start_pos + i + 1 : start_pos + S;",
        "const int64_t keys = std::max<int64_t>(1, is_causal ? start_pos + i : start_pos + S - 1);",
    ),
    # each KV head's group of query heads starts at query head kh instead of kh·group: groups overlap (threads race
    # on them) and the last query heads are never written (whatever the output buffer held, NaN included)
    "misplaced-query-groups": (
        "const int64_t head = (b * S + i) * H + kh * group;",
        "const int64_t head = (b * S + i) * H + kh;",
    ),
    # softmax weights that are not numbers (a division by zero, say): every output NaN
    "nan-weights": (
        "const float inv = 1.0f / sum;",
        'const float inv = std::nanf("");',
    ),
    # a decode step's key ranges (attended separately at 2 threads) merged as if their maxima were equal
    "merge-ignores-maxima": (
        "const float w = std::exp(st[0] - m);",
        "const float w = 1.0f;",
    ),
    # scores scaled by 1/D instead of 1/sqrt(D)
    "wrong-scale": (
        "1.0f / std::sqrt(static_cast<float>(D))",
        "1.0f / static_cast<float>(D)",
    ),
}

#: kernels as correct as edgekit's, rounding differently: libm's exp() instead of the vectorised polynomial
CORRECT = {
    "libm-exp": (
        """    for (; j + 8 <= keys; j += 8) {
      f8 e = exp8(load8(pg + j) - splat(mx));
      store8(pg + j, e);
      acc += e;
    }
    float sum = hsum(acc);""",
        "    float sum = 0;",
    ),
}


def broken_runner(folder: Path, name: str) -> Path:
    """edgekit's native runner with the ``name`` change of :data:`BROKEN` or :data:`CORRECT`, compiled once per
    source, executorch tree and compiler into edgekit's cache (``folder`` is where the caller works; the binary is shared by the test
    processes and later runs)."""
    from edgekit.fileops import exclusive
    from edgekit.paths import user_cache
    from edgekit.runner.native import executorch_version, runner_key

    old, new = {**BROKEN, **CORRECT}[name]
    source = LLM_OPS.read_text()
    assert source.count(old) == 1, f"the line {name!r} mutates is no longer in llm_ops.cpp: update tests/{__name__}.py"
    mutated_source = source.replace(old, new)
    cxx = find_compiler()
    assert cxx is not None, "the native runner needs a C++ compiler"
    # the product runner's key and the changed line: a new executorch wheel, or a changed runner.cpp, compiles the
    # variant again
    digest = runner_key(cxx)
    digest.update((mutated_source + executorch_version()).encode())
    key = digest.hexdigest()[:16]
    cache = user_cache() / "test-runners" / f"{name}-{key}"
    binary = cache / "runner"
    with exclusive(cache / ".lock"):
        if not binary.exists():
            mutated = cache / f"llm_ops_{name}.cpp"
            mutated.write_text(mutated_source)
            cmd = [str(mutated) if c == str(LLM_OPS) else c for c in compile_command(cxx, binary)]
            compile_runner(cmd, binary)
    return binary
