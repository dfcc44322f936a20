"""The layers of docs/architecture.md, imports pointing one way only: engine <- storage <- pipeline <-
CLI and Airflow. Read from the source (no import runs), so a new module cannot quietly reverse a layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "wildocr"

# What each package may import from wildocr, and the third-party packages it must never import.
ALLOWED = {
    "engine": ({"engine"}, {"airflow", "fsspec", "pyarrow", "duckdb", "torch"}),
    "storage": ({"engine", "storage"}, {"airflow", "torch"}),
    "pipeline": ({"engine", "storage", "pipeline", "render"}, {"airflow", "torch"}),
    # Training (the `train` extra: PyTorch) sits beside the pipeline; only the CLI reaches it.
    "train": ({"engine", "train"}, {"airflow", "fsspec", "pyarrow", "duckdb"}),
    "cli": ({"engine", "storage", "pipeline", "cli", "render", "train"}, {"airflow", "torch"}),
    "airflow": ({"engine", "storage", "pipeline", "airflow"}, {"torch"}),
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    allowed, forbidden = ALLOWED[package]
    wrong = []
    for path in sorted((SRC / package).rglob("*.py")):
        for name in _imports(path):
            top, _, rest = name.partition(".")
            if (top == "wildocr" and rest.split(".")[0] not in allowed) or top in forbidden:
                wrong.append(f"{path.relative_to(SRC)}: {name}")
    assert not wrong, wrong
