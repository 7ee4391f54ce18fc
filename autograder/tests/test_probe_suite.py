"""The probe suite is used from the grading threads of a batch (``--jobs N``)."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor

from autograder.engine.paths import REPO_ROOT
from autograder.engine.probes import load_suite


def test_unit_sources_are_the_same_from_many_threads_at_once():
    """CPython 3.11's ast.parse is not thread-safe (a batch once failed one submission with
    "SystemError: AST constructor recursion depth mismatch"); unit_source must give every
    thread the right answer."""
    suite = load_suite(REPO_ROOT / "autograder" / "probes" / "hw4.py")
    units = suite.units
    with ThreadPoolExecutor(max_workers=8) as pool:
        sources = list(pool.map(suite.unit_source, units * 8))
    for unit, source in zip(units * 8, sources):
        assert source == suite.unit_source(unit)
        names = {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
        own = {info.name for info in suite.cases[unit]}
        others = {info.name for u in units if u != unit for info in suite.cases[u]} - own
        assert own <= names and not (others & names), unit
