"""Native runners compiled here with a deliberately broken attention kernel: what the kernel sweep and the answers
check must catch. Each is edgekit's own runner.cpp and llm_ops.cpp with one line changed, compiled exactly as the
product compiles its runner (edgekit.runner.native.compile_command)."""

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
    # query heads mapped to KV heads by h % Hkv instead of h / group (repeat instead of repeat_interleave)
    "interleaved-kv-heads": (
        "const int64_t head = (b * S + i) * H + kh * group;",
        "const int64_t head = (b * S + i) * H + kh;",
    ),
}


def broken_runner(folder: Path, name: str) -> Path:
    """edgekit's native runner with the ``name`` mutation of :data:`BROKEN`, compiled into ``folder``."""
    old, new = BROKEN[name]
    source = LLM_OPS.read_text()
    assert source.count(old) == 1, f"the line {name!r} mutates is no longer in llm_ops.cpp: update tests/{__name__}.py"
    folder.mkdir(parents=True, exist_ok=True)
    mutated = folder / f"llm_ops_{name}.cpp"
    mutated.write_text(source.replace(old, new))
    binary = folder / f"runner-{name}"
    cxx = find_compiler()
    assert cxx is not None, "the native runner needs a C++ compiler"
    cmd = [str(mutated) if c == str(LLM_OPS) else c for c in compile_command(cxx, binary)]
    compile_runner(cmd, binary)
    return binary
