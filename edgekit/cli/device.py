"""``edgekit runner`` (bundles per architecture) and ``edgekit devices`` (the devices file, reachability, facts)."""

from __future__ import annotations

import json

import click

from .options import emit_json

_DEVICES_OPTION = click.option(
    "--devices",
    "devices_file",
    type=click.Path(dir_okay=False),
    envvar="EDGEKIT_DEVICES",
    help="Devices file (default ~/.config/edgekit/devices.toml).",
)


@click.group()
def runner() -> None:
    """Build and check native runner bundles (the measured process) per CPU architecture."""


@runner.command("build")
@click.option("--arch", default=None, metavar="x86_64|aarch64", help="Target architecture (default: this machine's).")
@click.option("--out", "-o", type=click.Path(), help="Also copy the bundle to this folder.")
@click.option("--force", is_flag=True, help="Replace an earlier bundle at --out.")
def runner_build(arch: str | None, out: str | None, force: bool) -> None:
    """Compile the runner for ARCH against the matching executorch wheel, with its libraries, as a bundle."""
    from ..device.bundle import build_bundle, read_bundle

    b = read_bundle(build_bundle(arch, out, force=force))
    click.echo(
        f"{b.path}: {b.arch} runner, executorch {b.executorch}, worker protocol {b.protocol}, "
        f"needs glibc >= {b.glibc_floor} on the device, {len(b.files)} files, id {b.bundle_id}"
    )


@runner.command("check")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--exec-prefix", help="Run through this (default for a foreign arch: qemu-user with -cpu cortex-a76).")
def runner_check(bundle: str, exec_prefix: str | None) -> None:
    """Run BUNDLE on a tiny built-in program and compare its outputs with eager PyTorch's."""
    from ..device.bundle import check_bundle

    r = check_bundle(bundle, exec_prefix)
    how = f"through {r['exec_prefix']} (timings mean nothing)" if r["emulated"] else "natively"
    click.echo(
        f"ok: {r['arch']} bundle ran {how}; outputs match eager PyTorch (max |err| {r['max_abs_error']:.2g}); "
        f"p50 {r['p50_ms']:.4f} ms"
    )


@click.group()
def devices() -> None:
    """List devices and check that they are reachable and ready.

    \b
    The devices file (TOML, one [[device]] per board):
      [[device]]
      name = "pi5"                  host = "pi@pi5.local"      port = 22 (optional)
      arch = "aarch64" (optional: detected)     workdir = ".cache/edgekit" (on the device)
      exec_prefix = "" (e.g. qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu: emulated, labelled so)
      ssh_options = ["-i", "~/.ssh/board"]     tags = ["arm"]
      [device.power]  active_watts_per_core = 1.2   idle_watts = 2.7
    """


@devices.command("list")
@_DEVICES_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the devices as JSON.")
def devices_list(devices_file: str | None, as_json: bool) -> None:
    """The devices in the devices file."""
    from ..device.devices import load_devices
    from . import render

    items = load_devices(devices_file)
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in items], indent=2, default=str, allow_nan=False))
        return
    if not items:
        from ..device.devices import DEFAULT_DEVICES_FILE

        click.echo(
            f"no devices: {devices_file or DEFAULT_DEVICES_FILE} lists none (see `edgekit devices --help` for its "
            "format, or profile with --device ssh://user@host)",
            err=True,
        )
        return
    t = render.table(
        None, ["name", "host", "arch", "tags", "exec prefix"], left=("name", "host", "arch", "tags", "exec prefix")
    )
    for d in items:
        t.add_row(
            d.name,
            d.host + (f":{d.port}" if d.port else ""),
            d.arch or "(detect)",
            ", ".join(d.tags),
            d.exec_prefix or "–",
        )
    render.console(stderr=False).print(t)


@devices.command("check")
@click.argument("names", nargs=-1)
@_DEVICES_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print each device's check as JSON.")
def devices_check(names: tuple, devices_file: str | None, as_json: bool) -> None:
    """Reach each device (default: all) and show its arch, glibc, cores, CPU, governor and bundle status."""
    from ..device.devices import load_devices, resolve_device
    from ..device.remote import device_status
    from ..errors import EdgekitError
    from . import render

    targets = [resolve_device(n, devices_file) for n in names] if names else load_devices(devices_file)
    if not targets:
        from ..device.devices import DEFAULT_DEVICES_FILE
        from ..errors import UsageError

        raise UsageError(
            f"no devices to check: {devices_file or DEFAULT_DEVICES_FILE} lists none",
            "name one (ssh://user@host works too), or add [[device]] tables to the devices file",
        )
    rows, failed = [], 0
    for d in targets:
        try:
            rows.append(device_status(d))
        except EdgekitError as exc:
            failed += 1
            rows.append({"device": d.name, "reachable": False, "error": str(exc)})
    if as_json:
        emit_json(rows)
    else:
        t = render.table(
            None,
            ["device", "reachable", "arch", "glibc", "cores", "CPU", "governor", "bundle"],
            left=("device", "reachable", "arch", "CPU", "governor", "bundle"),
            wrap=("CPU", "bundle"),
        )
        for r in rows:
            t.add_row(
                r["device"],
                "yes" if r["reachable"] else "[red]no[/]",
                r.get("arch", "–"),
                r.get("glibc") or "–",
                str(r.get("cores_logical") or "–"),
                r.get("cpu_model", r.get("error", "")),
                r.get("governor") or "–",
                r.get("bundle", "–"),
            )
        render.console(stderr=False).print(t)
    if failed:
        from ..device.devices import DeviceError

        raise DeviceError(f"{failed} of {len(rows)} device(s) are not ready", "see the table above")
