"""Docs fall behind, tests fail: settings, CLI commands and options, error codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from likewise.api.errors import CODES
from likewise.cli import app
from likewise.settings import Settings
from tests.conftest import Server

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "settings.md").read_text()
    for name in Settings.model_fields:
        assert f"`LIKEWISE_{name.upper()}`" in text, name


def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        if hasattr(cmd, "commands"):
            out.extend(_commands(cmd, full))
        else:
            out.append((full, cmd))
    return out


def test_every_cli_command_and_option_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    root = typer.main.get_command(app)
    assert hasattr(root, "commands")
    commands = _commands(root, "likewise")
    assert len(commands) >= 8
    for full, cmd in commands:
        heading = next((line for line in text.splitlines() if line.startswith(f"## `{full}")), None)
        assert heading is not None, f"{full} has no section in docs/cli.md"
        for param in cmd.params:
            if getattr(param, "param_type_name", "") == "option":
                assert any(opt.split("/")[0] in heading for opt in param.opts), (full, param.opts)


def test_every_error_code_is_documented() -> None:
    text = (DOCS / "errors.md").read_text()
    for cls, code in CODES.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| {code} |")), "")
        assert cls.__name__ in row, (cls.__name__, code)


def test_readme_sdk_snippet_runs_against_a_server(server: Server, capsys: Any) -> None:
    """The README's "point the official SDK at it" snippet works as printed."""
    readme = (DOCS.parent / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    adv, token = server.advertiser("Readme")
    code = (
        snippet.replace("http://127.0.0.1:8080", server.url)
        .replace("<access_token printed by the demo>", token)
        .replace("<advertiser_id>", adv)
    )
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "'list': []" in printed and "'total_number': 0" in printed
