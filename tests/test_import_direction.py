"""The package DAG: thunder -> {actors, planner, kernels_ext}; the three never import thunder or each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("actors", "planner", "kernels_ext")
FORBIDDEN = {
    "actors": {"thunder", "planner", "kernels_ext", "torch"},
    "planner": {"thunder", "actors", "kernels_ext", "torch", "asyncio", "uvloop"},
    "kernels_ext": {"thunder", "actors", "planner"},
}


def _imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", LOWER)
def test_lower_packages_never_import_upward_or_sideways(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_modules(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_import_thunder_needs_no_cuda_or_flashinfer() -> None:
    code = (
        "import sys; import thunder, actors, planner, kernels_ext; "
        "assert 'flashinfer' not in sys.modules, 'flashinfer imported eagerly'; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"CUDA_VISIBLE_DEVICES": ""}, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_planner_runtime_never_loads_torch_or_asyncio() -> None:
    code = "import sys; import planner; print(sorted(m for m in ('torch', 'asyncio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
