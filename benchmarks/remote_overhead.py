"""What measuring through a device costs: the same program, the same runner build, profiled here and through
`--device` on a loopback sshd (tests/loopback.py), side by side in interleaved rounds; and what a second
profile on the same device transfers.

Target (issue 8): p50 through --device within 3% of local. Medians of the rounds' p50s are reported.

    .venv/bin/python benchmarks/remote_overhead.py [--rounds 5] [--runs 300]      (as root: it starts a private sshd)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import edgekit

    sys.path.insert(
        0, str(HERE.parent / "tests")
    )  # the loopback sshd is test support, not part of the installed edgekit
    from loopback import private_sshd

    with tempfile.TemporaryDirectory(prefix="ek-remote-") as tmp:
        t = Path(tmp)
        pkgs = {
            name: edgekit.build(f"{HERE / 'models.py'}:{name}", "xnnpack-fp32", out=t / name).out_dir
            for name in ("residual_cnn", "digits_cnn")
        }
        with private_sshd(t / "sshd") as sshd:
            devices = t / "devices.toml"
            devices.write_text(sshd.device_toml("loopback", t / "work"))
            opts = dict(runs=args.runs, warmup=30, warmup_seconds=0.5, threads=1)
            first = edgekit.profile(
                pkgs["residual_cnn"], device="loopback", devices_file=devices, runs=10, warmup_seconds=0
            )
            local, remote, wall_local, wall_remote = [], [], [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                local.append(edgekit.profile(pkgs["residual_cnn"], **opts).latency_ms.p50)
                wall_local.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                remote.append(
                    edgekit.profile(
                        pkgs["residual_cnn"], device="loopback", devices_file=devices, **opts
                    ).latency_ms.p50
                )
                wall_remote.append(time.perf_counter() - t0)
            second = edgekit.profile(
                pkgs["digits_cnn"], device="loopback", devices_file=devices, runs=10, warmup_seconds=0
            )
    lo, re_ = statistics.median(local), statistics.median(remote)
    print(
        f"residual CNN fp32 (1x3x128x128), 1 thread, {args.rounds} interleaved rounds x {args.runs} runs; medians of p50"
    )
    print(f"  local native runner       p50 {lo:.4f} ms   (profile wall {statistics.median(wall_local):.2f} s)")
    print(f"  --device loopback (ssh)   p50 {re_:.4f} ms   (profile wall {statistics.median(wall_remote):.2f} s)")
    print(
        f"  ratio {re_ / lo:.4f} ({(re_ / lo - 1) * 100:+.2f}%); target within 3%: {'MET' if abs(re_ / lo - 1) <= 0.03 else 'NOT MET'}"
    )
    print(
        f"  first profile on the device sent {first.device['bytes_sent']['bundle'] / 1024:.0f} KiB of runner bundle "
        f"+ {first.device['bytes_sent']['program_and_inputs'] / 1024:.0f} KiB of program and inputs"
    )
    print(
        f"  a second, new program sent {second.device['bytes_sent']['bundle']} bytes of bundle "
        f"+ {second.device['bytes_sent']['program_and_inputs'] / 1024:.0f} KiB of program and inputs"
    )


if __name__ == "__main__":
    main()
