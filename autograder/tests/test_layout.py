"""The engine / authoring split, enforced: what runs at grading time (``autograder.engine``,
shipped to Gradescope whole) imports only itself, the standard library and numpy; the hidden
probes import only the probe kit (plus, inside probe bodies, the submission they grade).
Neither may reach the authoring side (``autograder.authoring``), which holds the releases and
the reference: a wrong layout fails here, before any export is built."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from autograder.engine.paths import PACKAGE_DIR

ENGINE = PACKAGE_DIR / "engine"
PROBES = PACKAGE_DIR / "probes"
# Third-party modules the engine may use only when present, each inside try/except ImportError.
OPTIONAL = {"tqdm": "the batch progress bar", "pybind11": "headers for C++ homeworks"}


def _imports(tree: ast.AST):
    """(module, node, guarded) for every absolute import; guarded: inside try/except
    ImportError."""
    guarded_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            for inner in node.body:
                guarded_nodes.update(id(n) for n in ast.walk(inner))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node, id(node) in guarded_nodes
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield f"<relative import level {node.level}>", node, False
            else:
                yield node.module or "", node, id(node) in guarded_nodes


def engine_violations(path: Path) -> list[str]:
    problems = []
    for module, node, guarded in _imports(ast.parse(path.read_text(), str(path))):
        top = module.split(".")[0]
        if module == "autograder.engine" or module.startswith("autograder.engine."):
            continue
        if top in sys.stdlib_module_names or top == "numpy":
            continue
        if top in OPTIONAL and guarded:
            continue
        problems.append(f"{path.name}:{node.lineno} imports {module}")
    return sorted(problems)


def probe_violations(path: Path) -> list[str]:
    problems = []
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    for module, node, _ in _imports(tree):
        top = module.split(".")[0]
        if module == "autograder.engine.kit":
            continue
        if top == "autograder" or module.startswith("<relative"):
            problems.append(f"{path.name}:{node.lineno} imports {module}")
        elif id(node) in top_level and top not in sys.stdlib_module_names and top != "numpy":
            # the submission (needle, apps...) is imported inside probe bodies only
            problems.append(f"{path.name}:{node.lineno} imports {module} at module level")
    return sorted(problems)


def test_the_engine_imports_only_itself_the_standard_library_and_numpy():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) >= 15
    problems = [p for path in files for p in engine_violations(path)]
    assert problems == []


def test_the_probes_import_only_the_probe_kit():
    files = sorted(PROBES.glob("hw*.py"))
    assert {f.stem for f in files} >= {"hw0", "hw1", "hw2", "hw3", "hw4", "hw4_extra"}
    problems = [p for path in files for p in probe_violations(path)]
    assert problems == []


def test_the_checks_catch_a_deliberate_violation(tmp_path):
    """The rules above can fail: an engine module reaching for the release tools, an unguarded
    optional import, a probe importing the reference side."""
    engine_file = tmp_path / "leaky.py"
    engine_file.write_text(
        "import json\nimport numpy as np\nfrom autograder.engine import answers\n"
        "def f():\n    from autograder.authoring.release import render_release\n"
        "import tqdm\n"
        "try:\n    import pybind11\nexcept ImportError:\n    pybind11 = None\n"
    )
    assert engine_violations(engine_file) == [
        "leaky.py:5 imports autograder.authoring.release",
        "leaky.py:6 imports tqdm",
    ]
    probe_file = tmp_path / "hw9.py"
    probe_file.write_text(
        "from autograder.engine.kit import probe\nimport needle\n"
        "@probe('u')\ndef p():\n    import needle as ndl\n"
        "    from autograder.authoring.bundle import Homework\n"
    )
    assert probe_violations(probe_file) == [
        "hw9.py:2 imports needle at module level",
        "hw9.py:6 imports autograder.authoring.bundle",
    ]


def test_the_engine_imports_without_the_authoring_side(tmp_path):
    """Import every engine module in a fresh interpreter that cannot see the authoring side."""
    import subprocess

    modules = [
        "autograder.engine." + p.relative_to(ENGINE).with_suffix("").as_posix().replace("/", ".")
        for p in sorted(ENGINE.rglob("*.py"))
        if p.name != "__init__.py"
    ]
    code = (
        "import sys, importlib, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith(('autograder.authoring', 'autograder.cli')):\n"
        "            raise ImportError('the engine imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok', len(sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE_DIR.parent
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")
