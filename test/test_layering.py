"""One-way layering: the runtime side runs without torch or uwm_training (README, Architecture).

Rules, checked on the import graph and on the source:
- ``uwm_ros`` never imports ``uwm_training``, except the torch backend (``engines/torch_engine``),
  inside the function that builds the model;
- ``uwm_training.{model,data,train,export}`` never import ``uwm_ros.{runtime,engines,nodes,
  transport,sim}``: what both sides share (bundle format, input contract, message decoding) is
  the torch-free ``uwm_ros.bundle``, ``uwm_ros.conversions``, ``uwm_ros.msgs``, ``uwm_ros.timing``;
- the integration layer, ``uwm_training/cli.py`` and ``uwm_training/demo/``, may import both.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_MODULES = [
    "uwm_ros.runtime",
    "uwm_ros.engines",
    "uwm_ros.engines.onnx_engine",
    "uwm_ros.transport.dds",
    "uwm_ros.nodes.policy_node",
    "uwm_ros.nodes.cli",
    "uwm_ros.bundle.manifest",
    "uwm_ros.bundle.contract",
    "uwm_ros.conversions",
]
RUNTIME_ONLY = ("uwm_ros.runtime", "uwm_ros.engines", "uwm_ros.nodes", "uwm_ros.transport")
TRAINING_LIBS = ("model", "data", "train", "export")


def _loaded_after_import(modules: list[str]) -> list[str]:
    """Modules in sys.modules of a fresh interpreter after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_runtime_engines_transport_and_node_import_neither_torch_nor_training() -> None:
    loaded = _loaded_after_import(RUNTIME_MODULES)
    heavy = [m for m in loaded if m.split(".")[0] in ("torch", "uwm_training")]
    assert heavy == []


def test_the_uwm_command_imports_no_torch() -> None:
    """``uwm policy`` goes through the integration CLI: building its parser loads no torch."""
    loaded = _loaded_after_import(["uwm_training.cli"])
    assert [m for m in loaded if m.split(".")[0] == "torch"] == []


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module, at module level?) for every import statement in ``path``."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((name, id(node) in top))
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _training_library_sources() -> list[Path]:
    return [p for lib in TRAINING_LIBS for p in _sources(f"uwm_training/{lib}")]


@pytest.mark.parametrize("path", _sources("uwm_ros"), ids=lambda p: str(p.relative_to(ROOT)))
def test_uwm_ros_imports_training_only_lazily_in_the_torch_backend(path: Path) -> None:
    training = [(m, top) for m, top in _imports(path) if m.split(".")[0] == "uwm_training"]
    if path.relative_to(ROOT).as_posix() == "uwm_ros/engines/torch_engine.py":
        assert training and not any(top for _, top in training)
    else:
        assert training == []


@pytest.mark.parametrize(
    "path", _training_library_sources(), ids=lambda p: str(p.relative_to(ROOT))
)
def test_training_libraries_never_import_the_runtime_side(path: Path) -> None:
    bad = [m for m, _ in _imports(path) if m.startswith(RUNTIME_ONLY + ("uwm_ros.sim",))]
    assert bad == []


def test_import_scanner_sees_relative_and_lazy_imports() -> None:
    """The rule checks above must be able to fail: the scanner finds both kinds."""
    module = ROOT / "uwm_ros" / "engines" / "torch_engine.py"
    found = dict(_imports(module))
    assert found.get("uwm_training.model") is False  # lazy: inside a function
    assert found.get("uwm_ros.engines.base") is True  # `from .base import ...`, resolved
