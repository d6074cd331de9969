"""The generation worker: runs a generation program (ExecuTorch's text-runner convention) in its own process.

Two modes:

* ``profile``: load the program (timed), check its answers (fed the check's tokens: ``--check-prompt`` in one call,
  then ``--check-tokens`` one per call; each step's logits to ``--outputs``, which the parent compares with the user's
  model's, :mod:`edgekit.token_fidelity`), then ``--runs`` rounds of
  prefill (``--prompt-tokens`` in one call) and greedy decode (``--gen-len`` steps, one token each): each call timed
  with ``perf_counter``. Writes a JSON result (``runner.protocol.GenerationWorkerResult``, as ``runner.cpp`` does).
* ``generate``: tokenize ``--prompt`` with the package's ``tokenizer.json`` (the ``tokenizers`` library), prefill,
  then sample token by token and print the text to stdout as it is produced (whole characters only), stopping at an
  end-of-sequence token, ``--max-new-tokens`` or the end of the cache.

The program's ``llama::`` cache and attention kernels live in ExecuTorch's custom-ops library, which links libtorch:
the worker is a Python process with ``executorch.runtime`` (and so torch) loaded, and its memory baseline is taken
after those imports. Speaks ``@phase``/``@error`` lines on stderr like the other workers.

    python -m edgekit.runner.llmworker --model P.pte --mode profile --result R.json [...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from typing import Any

from edgekit.runner.protocol import ERROR_PREFIX, PHASE_PREFIX


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _fail(msg: str) -> None:
    _say(ERROR_PREFIX + " ".join(msg.split()))
    sys.exit(1)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edgekit.runner.llmworker")
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="")  # the program's external weights (.ptd), when it has any
    p.add_argument("--mode", choices=("profile", "generate"), default="profile")
    p.add_argument("--result")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--prompt-tokens", default="")  # comma-separated ids: profile mode's prefill
    p.add_argument("--prefill-chunk", type=int, default=0)  # prompts fed this many tokens per call (0: at once)
    p.add_argument("--check-prompt", default="")  # comma-separated token ids
    p.add_argument("--check-tokens", default="")  # fed one per call after the check prompt
    p.add_argument("--outputs", default="")  # the check steps' logits, raw float32, one step after another
    p.add_argument("--etdump", default="")  # after the timed rounds: one more, traced into this ETDump file
    p.add_argument("--etdump-runs", type=int, default=20)  # the traced round's decode steps, at most
    p.add_argument("--tokenizer")
    p.add_argument("--prompt", default="")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eos", default="")
    p.add_argument("--max-context", type=int, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = _parse(sys.argv[1:] if argv is None else argv)
    _say(PHASE_PREFIX + "start")
    import torch

    from edgekit.runner.runtime import load_runtime

    # the quantized kernels and llama::update_cache / custom_sdpa, without the compiler stack (see runtime.py)
    portable_lib, Runtime = load_runtime(llm_ops=True)

    # torch only makes the input tensors and reads the argmax here: one intra-op thread, so no OpenMP worker spins on
    # a core that ExecuTorch's threadpool needs (at 2 threads on 2 cores that made decoding slower than at 1)
    torch.set_num_threads(1)
    portable_lib._unsafe_reset_threadpool(a.threads)
    threads = int(portable_lib._threadpool_get_thread_count())
    baseline_kb = _status_kb("VmRSS")
    _say(PHASE_PREFIX + "load")
    t0 = time.perf_counter()
    try:
        method = Runtime.get().load_program(a.model, data_path=a.data or None).load_method("forward")
    except Exception as exc:
        hint = "" if a.data else " (a program that keeps its weights in a .ptd file needs --data)"
        _fail(f"loading the generation program failed: {str(exc).splitlines()[0][:200]}{hint}")
    load_ms = (time.perf_counter() - t0) * 1000
    after_load_kb = _status_kb("VmRSS")

    def step(ids: list[int], pos: int) -> Any:
        return method.execute([torch.tensor([ids], dtype=torch.long), torch.tensor([pos], dtype=torch.long)])[0][0]

    def feed_prompt(ids: list[int]) -> Any:
        return _feed(step, ids, a.prefill_chunk)

    check = None
    if a.check_prompt:
        _say(PHASE_PREFIX + "check")
        prompt = [int(t) for t in a.check_prompt.split(",")]
        fed = [int(t) for t in a.check_tokens.split(",")]
        # teacher-forced: the given tokens are fed (not this run's choices), so one flipped near tie does not send the
        # rest down another path; each step's logits go to --outputs, and its top token and how far the token fed
        # next is below it (in units of the logits' spread; None where they are not finite) into the result
        got, gaps, logits = [], [], []
        out = feed_prompt(prompt)
        for i, want in enumerate(fed):
            if i:
                out = step([fed[i - 1]], len(prompt) + i - 1)
            logits.append(out.float().numpy().tobytes())
            top = int(out.argmax())
            spread = max(float(out.max() - out.mean()), 1e-9)
            gap = float(out[top] - out[want]) / spread
            got.append(top)
            gaps.append(gap if math.isfinite(gap) else None)
        same = sum(x == y for x, y in zip(got, fed))
        check = {"prompt_tokens": len(prompt), "tokens": len(fed), "matching": same, "got": got, "gaps": gaps}
        if a.outputs:
            with open(a.outputs, "wb") as f:
                f.write(b"".join(logits))
    if a.mode == "generate":
        _generate(a, step)
        return
    prompt = [int(t) for t in a.prompt_tokens.split(",") if t]
    if not prompt:
        _fail("--prompt-tokens is empty: give the profile's prompt as comma-separated token ids")
    if len(prompt) + a.gen_len > a.max_context:
        _fail(
            f"{len(prompt)} prompt + {a.gen_len} generated tokens do not fit the program's {a.max_context}-token cache"
        )
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rounds = []
    _say(PHASE_PREFIX + "warmup")
    for r in range(a.warmup + a.runs):
        if r == a.warmup:
            _say(PHASE_PREFIX + "timed")
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.perf_counter()
        t = time.perf_counter()
        tok = int(feed_prompt(prompt).argmax())
        prefill = time.perf_counter() - t
        decode = []
        for i in range(a.gen_len - 1):
            t = time.perf_counter()
            tok = int(step([tok], len(prompt) + i).argmax())
            decode.append(time.perf_counter() - t)
        if r >= a.warmup:
            rounds.append({"prefill_ms": prefill * 1000, "decode_ms": [d * 1000 for d in decode]})
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    peak_kb = _status_kb("VmHWM")  # before the traced run loads a second copy of the program
    if a.etdump:
        _trace(a, portable_lib, prompt)
    result = {
        "threads": threads,
        "load_ms": load_ms,
        "rounds": rounds,
        "baseline_rss_kb": baseline_kb,
        "after_load_rss_kb": after_load_kb,
        "peak_rss_kb": peak_kb,
        "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "wall_s": wall,
        "check": check,
    }
    tmp = a.result + f".{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, a.result)
    _say(PHASE_PREFIX + "done")


def _feed(step: Any, ids: list[int], chunk: int) -> Any:
    """``ids`` from position 0 through ``step(ids, pos)``, all at once or ``chunk`` tokens per call (``--prefill-chunk``);
    the last call's logits."""
    n = chunk if 0 < chunk < len(ids) else len(ids)
    for at in range(0, len(ids), n):
        out = step(ids[at : at + n], at)
    return out


def _trace(a: argparse.Namespace, portable_lib: Any, prompt: list[int]) -> None:
    """One prefill (fed as the timed rounds feed it) and up to ``--etdump-runs`` greedy decode steps on the program
    loaded again with an ETDump tracer (the pybindings' module: ``executorch.runtime`` offers none), written to
    ``--etdump``: as the native runner's."""
    import torch

    _say(PHASE_PREFIX + "ops")
    m = portable_lib._load_for_executorch(a.model, data_path=a.data or None, enable_etdump=True, debug_buffer_size=0)

    def run(ids: list[int], pos: int) -> Any:
        out = m.run_method("forward", (torch.tensor([ids], dtype=torch.long), torch.tensor([pos], dtype=torch.long)))
        return out[0][0]

    tok = int(_feed(run, prompt, a.prefill_chunk).argmax())
    for i in range(min(a.gen_len - 1, a.etdump_runs)):
        tok = int(run([tok], len(prompt) + i).argmax())
    m.write_etdump_result_to_file(a.etdump)


def _generate(a: argparse.Namespace, step: Any) -> None:
    import torch
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(a.tokenizer)
    ids = tok.encode(a.prompt).ids
    if not ids:
        _fail("the prompt is empty after tokenization")
    if len(ids) >= a.max_context:
        _fail(
            f"the prompt is {len(ids)} tokens: the program's cache holds {a.max_context} (prompt and answer together)"
        )
    eos = {int(e) for e in a.eos.split(",") if e}
    gen = torch.Generator().manual_seed(a.seed)

    def pick(logits: Any) -> int:
        if a.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / a.temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=gen))

    _say(PHASE_PREFIX + "timed")
    t0 = time.perf_counter()
    nxt = pick(step(ids, 0))
    ttft = time.perf_counter() - t0
    out: list[int] = []
    shown = ""
    t1 = time.perf_counter()
    stop = "max-new-tokens"
    while True:
        if nxt in eos:
            stop = "end of sequence"
            break
        out.append(nxt)
        text = tok.decode(out)
        if not text.endswith("\ufffd"):  # a character split across tokens waits for its last byte
            sys.stdout.write(text[len(shown) :])
            sys.stdout.flush()
            shown = text
        if len(out) >= a.max_new_tokens:
            break
        if len(ids) + len(out) >= a.max_context:
            stop = "the program's cache is full"
            break
        nxt = pick(step([nxt], len(ids) + len(out) - 1))
    decode_s = time.perf_counter() - t1
    sys.stdout.write("\n")
    sys.stdout.flush()
    stats = {
        "prompt_tokens": len(ids),
        "generated_tokens": len(out),
        "ttft_ms": ttft * 1000,
        "prefill_tokens_per_s": len(ids) / ttft if ttft > 0 else None,
        "decode_tokens_per_s": (len(out) - 1) / decode_s if len(out) > 1 and decode_s > 0 else None,
        "stop": stop,
        "peak_rss_kb": _status_kb("VmHWM"),
    }
    if a.result:
        with open(a.result, "w") as f:
            json.dump(stats, f)
    _say(PHASE_PREFIX + "done")


if __name__ == "__main__":
    main()
