"""The dependency direction of STYLE.md: core knows no channel, adapters know no other adapter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHANNEL_SDKS = {"aiogram", "slack_bolt", "slack_sdk", "wechatpy"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", python_files("core"), ids=lambda p: p.name)
def test_core_imports_no_channel_sdk_adapter_or_bot(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in CHANNEL_SDKS | {"adapters", "bots"}, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", python_files("adapters"), ids=lambda p: str(p.parent.name))
def test_adapters_never_import_each_other_or_bots(path: Path) -> None:
    own = path.relative_to(ROOT / "adapters").parts[0]
    for name in imported_modules(path):
        parts = name.split(".")
        assert parts[0] != "bots", f"{path} imports {name}"
        if parts[0] == "adapters" and len(parts) > 1:
            assert parts[1] == own, f"{path} imports another adapter: {name}"
