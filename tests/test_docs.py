"""The documentation site builds with MkDocs in strict mode (a broken link, a missing anchor or page, any warning
fails it), and its generated reference covers every command and every manifest field."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_site_builds_without_a_warning_and_its_reference_is_complete(tmp_path):
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true"}
    mkdocs = str(Path(sys.executable).with_name("mkdocs"))
    r = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert r.returncode == 0 and "WARNING" not in r.stderr, r.stderr[-3000:]
    site = tmp_path / "site"
    cli_page = (site / "reference" / "cli" / "index.html").read_text()
    from edgekit.cli import cli

    def commands(group, prefix="edgekit"):
        for name, cmd in group.commands.items():
            yield f"{prefix} {name}"
            if hasattr(cmd, "commands"):
                yield from commands(cmd, f"{prefix} {name}")

    missing = [c for c in commands(cli) if c not in cli_page]
    assert not missing, missing
    manifest_page = (site / "reference" / "manifest" / "index.html").read_text()
    from edgekit.manifest import Manifest

    top = [f.name for f in dataclasses.fields(Manifest)]
    assert not [f for f in top if f"<code>{f}</code>" not in manifest_page]
    assert re.search(r"<code>generation\.reference\.build\.kld_mean</code>", manifest_page)


def test_every_option_says_what_it_does():
    """The reference (and --help) shows each option's help text: none is left without one."""
    import click

    from edgekit.cli import cli

    missing = []

    def walk(command, path):
        ctx = click.Context(command, info_name=path[-1])
        missing.extend(
            f"{' '.join(path)} {p.opts[0]}" for p in command.params if isinstance(p, click.Option) and not p.help
        )
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])

    walk(cli, ["edgekit"])
    assert not missing, missing
