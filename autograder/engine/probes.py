"""Hidden probes, one module per homework (``hw1.py`` …), and the grader's view of them.

A probe module is trusted code that lives only in this repository (never in a release). The
grader imports it here for its metadata (units, tolerances, limits), and ships the source of
ONE unit at a time into the sandbox, where ``runner.py`` calls its probes on the submission.
See ``README.md`` in this folder for how to write one.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

from autograder.engine.kit import ProbeInfo, probes_of
from autograder.engine.pyparse import parse

KIT_PATH = Path(__file__).resolve().parent / "kit.py"


class ProbeModuleError(ValueError):
    """A probe module that breaks the rules in README.md; the message says how."""


@dataclasses.dataclass
class ProbeSuite:
    """The probes of one homework, read from ``path``."""

    path: Path
    source: str
    module: ModuleType
    cases: dict[str, list[ProbeInfo]]  # unit -> its probes, in source order

    @property
    def units(self) -> list[str]:
        return list(self.cases)

    @property
    def digest(self) -> str:
        """Hash of the probe module and the kit: part of every cache key and results.json."""
        text = self.source + "\n--kit--\n" + KIT_PATH.read_text(encoding="utf-8")
        return hashlib.sha256(text.encode()).hexdigest()

    def setting(self, name: str, default=None):
        return getattr(self.module, name, default)

    def search_path(self) -> list[str]:
        """Workspace-relative folders put on ``sys.path`` ('' is the workspace root)."""
        return list(self.setting("SEARCH_PATH", ["", "apps", "src"]))

    def limits(self, unit: str) -> dict:
        """Limit overrides (``SandboxLimits`` field names) for ``unit``."""
        table = self.setting("LIMITS", {})
        return {**table.get("*", {}), **table.get(unit, {})}

    def unit_source(self, unit: str) -> str:
        """The module's source with the probes of every OTHER unit removed: what the sandbox
        of ``unit`` gets to see. Computed once per unit (batches grade in threads; see
        ``autograder.engine.pyparse``)."""
        cache = self.__dict__.setdefault("_unit_sources", {})
        if unit not in cache:
            tree = parse(self.source, filename=str(self.path))
            tree.body = [node for node in tree.body if _probe_unit(node) in (None, unit)]
            cache[unit] = ast.unparse(tree) + "\n"
        return cache[unit]


def _probe_unit(node: ast.AST) -> str | None:
    """The unit named by a ``@probe("unit", ...)`` decorator on ``node``, if any."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    for decorator in node.decorator_list:
        if not isinstance(decorator, ast.Call):
            continue
        func = decorator.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name == "probe" and decorator.args and isinstance(decorator.args[0], ast.Constant):
            return str(decorator.args[0].value)
    return None


def load_suite(path: str | Path) -> ProbeSuite:
    """Import the probe module at ``path`` (trusted) and index its probes by unit."""
    path = Path(path).resolve()
    source = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"autograder_probes_{path.stem}_{digest}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        raise ProbeModuleError(
            f"{path}: importing the probe module failed ({error}); probe modules import the "
            "submission (needle, apps...) inside probe functions, never at module level"
        ) from None
    cases: dict[str, list[ProbeInfo]] = {}
    for info, _ in probes_of(module):
        cases.setdefault(info.unit, []).append(info)
    tree = parse(source)
    for node in tree.body:
        unit = _probe_unit(node)
        name = getattr(node, "name", "?")
        if unit is not None and name not in {i.name for i in cases.get(unit, [])}:
            raise ProbeModuleError(f"{path}: could not index probe {name}")
    names = [info.name for infos in cases.values() for info in infos]
    if len(names) != len(set(names)):
        raise ProbeModuleError(f"{path}: two probes share a name")
    return ProbeSuite(path, source, module, cases)
