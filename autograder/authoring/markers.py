"""Teaching markers: find the solution regions in the reference sources and stub them.

Solution code lives in the reference sources between markers that name its homework::

    def find_topo_sort(node_list):
        \"\"\"docstring\"\"\"
        ### BEGIN YOUR SOLUTION (hw1)
        ...
        ### END YOUR SOLUTION

C++ and CUDA use ``// BEGIN YOUR SOLUTION (hw3)`` ... ``// END YOUR SOLUTION``; Markdown
cells of a notebook may use ``<!-- BEGIN YOUR SOLUTION (hw1) -->`` ... ``<!-- END YOUR
SOLUTION -->``. A region in a library file is always the complete body of one function or
method, so replacing it by a stub leaves a valid file:

- Python: ``raise NotImplementedError()`` at the region's indentation;
- C++ / CUDA host code: ``throw std::runtime_error("<function>: not implemented (hwN)");``;
- inside a ``__global__`` or ``__device__`` CUDA function (which cannot throw): the body is
  emptied (a non-void ``__device__`` function gets ``return {};`` so it still compiles).

The markers themselves stay in the stubbed file, so students (and tools) can see where their
code goes. Malformed markers (nested, unterminated, unmatched END, unknown homework tag) raise
:class:`MarkerError` naming ``file:line``.

A second kind of marker keeps the reference's private helpers out of the student release::

    // BEGIN REFERENCE ONLY (hw3)
    inline float VecExp(float x) { ... }   // used only by the reference's EwiseExp
    // END REFERENCE ONLY

(``### BEGIN REFERENCE ONLY (hw1)`` ... ``### END REFERENCE ONLY`` in Python). Whenever the
regions of that homework are stubbed, the whole block, markers included, disappears; when they
are filled (the reference-filled release, a release with earlier homeworks given) it stays as
it is. A block holds complete top-level declarations (no solution region inside it, and no
block inside a region), so removing it leaves a file that still compiles as long as only
solution regions use what it declares.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from autograder.engine.paths import REPO_ROOT
from autograder.engine.pyparse import parse


def course_order(name: str) -> tuple[int, str]:
    """``hw4`` before ``hw4_extra`` before ``hw5``: the number, then the rest of the name."""
    match = re.fullmatch(r"hw(\d+)(.*)", name)
    return (int(match.group(1)), match.group(2)) if match else (10**6, name)


def find_homeworks(assignments_dir: Path = REPO_ROOT / "assignments") -> tuple[str, ...]:
    """Every folder of ``assignments/`` with an ``assignment.toml``, in course order."""
    names = [path.parent.name for path in assignments_dir.glob("*/assignment.toml")]
    return tuple(sorted(names, key=course_order))


#: Homework tags in course order, derived from ``assignments/*/assignment.toml`` (adding a
#: homework is adding its folder); a region's tag must be one of these.
HOMEWORKS: tuple[str, ...] = find_homeworks()

PYTHON_SUFFIXES = frozenset({".py"})
CPP_SUFFIXES = frozenset({".c", ".cc", ".cpp", ".cxx", ".h", ".hpp", ".cu", ".cuh"})

_SYNTAX = {
    "python": (
        re.compile(r"^(?P<indent>[ \t]*)###[ \t]*BEGIN YOUR SOLUTION\b(?P<rest>.*)$"),
        re.compile(r"^(?P<indent>[ \t]*)###[ \t]*END YOUR SOLUTION\b(?P<rest>.*)$"),
    ),
    "cpp": (
        re.compile(r"^(?P<indent>[ \t]*)//[ \t]*BEGIN YOUR SOLUTION\b(?P<rest>.*)$"),
        re.compile(r"^(?P<indent>[ \t]*)//[ \t]*END YOUR SOLUTION\b(?P<rest>.*)$"),
    ),
    "markdown": (
        re.compile(r"^(?P<indent>[ \t]*)<!--[ \t]*BEGIN YOUR SOLUTION\b(?P<rest>.*)$"),
        re.compile(r"^(?P<indent>[ \t]*)<!--[ \t]*END YOUR SOLUTION\b(?P<rest>.*)$"),
    ),
}
_REFERENCE_ONLY = {
    "python": (
        re.compile(r"^(?P<indent>[ \t]*)###[ \t]*BEGIN REFERENCE ONLY\b(?P<rest>.*)$"),
        re.compile(r"^(?P<indent>[ \t]*)###[ \t]*END REFERENCE ONLY\b(?P<rest>.*)$"),
    ),
    "cpp": (
        re.compile(r"^(?P<indent>[ \t]*)//[ \t]*BEGIN REFERENCE ONLY\b(?P<rest>.*)$"),
        re.compile(r"^(?P<indent>[ \t]*)//[ \t]*END REFERENCE ONLY\b(?P<rest>.*)$"),
    ),
    "markdown": (
        re.compile(r"^(?P<indent>[ \t]*)<!--[ \t]*BEGIN REFERENCE ONLY\b(?P<rest>.*)$"),
        re.compile(r"^(?P<indent>[ \t]*)<!--[ \t]*END REFERENCE ONLY\b(?P<rest>.*)$"),
    ),
}
_TAG = re.compile(r"^[ \t]*\((?P<tag>[A-Za-z0-9_]+)\)[ \t]*(?:-->)?[ \t]*$")
_END_REST = re.compile(r"^[ \t]*(?:-->)?[ \t]*$")


class MarkerError(ValueError):
    """A malformed solution region; the message starts with ``file:line``."""


@dataclass(frozen=True)
class Region:
    """One solution region: lines ``begin``..``end`` (1-based, the marker lines themselves).

    ``function`` is the name of the function whose body the region is (``None`` when it is
    not inside a function, e.g. a notebook cell); ``kind`` says how it is stubbed.
    """

    source: str  # file name (or notebook cell label) for messages
    tag: str
    begin: int
    end: int
    indent: str
    syntax: str  # "python" | "cpp" | "markdown"
    function: str | None = None
    kind: str = "raise"  # "raise" | "throw" | "empty" | "text"

    @property
    def label(self) -> str:
        """A stable, readable id such as ``needle/autograd.py:find_topo_sort``."""
        return f"{self.source}:{self.function or f'line {self.begin}'}"


@dataclass(frozen=True)
class ReferenceBlock:
    """Lines ``begin``..``end`` (1-based, marker lines included) that only the reference has."""

    source: str
    tag: str
    begin: int
    end: int


def find_reference_blocks(text: str, syntax: str, source: str = "<text>") -> list[ReferenceBlock]:
    """The ``REFERENCE ONLY`` blocks of ``text`` in order, validated: each names a known
    homework, none is nested, unterminated, inside a solution region or holds one."""
    begin_re, end_re = _REFERENCE_ONLY[syntax]
    region_begin, region_end = _SYNTAX[syntax]
    blocks: list[ReferenceBlock] = []
    open_at: tuple[int, str] | None = None
    in_region = False
    for number, line in enumerate(text.splitlines(), start=1):
        if region_begin.match(line):
            if open_at is not None:
                raise MarkerError(
                    f"{source}:{number}: a solution region inside the REFERENCE ONLY block "
                    f"opened at line {open_at[0]} (the block is removed from the student release)"
                )
            in_region = True
        elif region_end.match(line):
            in_region = False
        begin, end = begin_re.match(line), end_re.match(line)
        if begin:
            tag_match = _TAG.match(begin.group("rest"))
            if not tag_match:
                raise MarkerError(
                    f"{source}:{number}: a BEGIN REFERENCE ONLY marker must name its homework, "
                    f"e.g. 'BEGIN REFERENCE ONLY (hw3)'; got {line.strip()!r}"
                )
            tag = tag_match.group("tag")
            if tag not in HOMEWORKS:
                raise MarkerError(
                    f"{source}:{number}: unknown homework tag {tag!r} "
                    f"(known: {', '.join(HOMEWORKS)})"
                )
            if open_at is not None:
                raise MarkerError(
                    f"{source}:{number}: nested REFERENCE ONLY block; the block opened at "
                    f"line {open_at[0]} is not closed yet"
                )
            if in_region:
                raise MarkerError(f"{source}:{number}: a REFERENCE ONLY block inside a region")
            open_at = (number, tag)
        elif end:
            if not _END_REST.match(end.group("rest")):
                raise MarkerError(f"{source}:{number}: unexpected text after END marker")
            if open_at is None:
                raise MarkerError(f"{source}:{number}: END REFERENCE ONLY without a BEGIN")
            blocks.append(ReferenceBlock(source, open_at[1], open_at[0], number))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{source}:{open_at[0]}: unterminated REFERENCE ONLY block")
    if syntax == "cpp":
        lines = text.splitlines()
        for block in blocks:
            body = _strip_cpp_comments("\n".join(lines[block.begin : block.end - 1]))
            body = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', body)
            if body.count("{") != body.count("}"):
                raise MarkerError(
                    f"{source}:{block.begin}: unbalanced braces inside the REFERENCE ONLY block "
                    "(it must hold complete declarations)"
                )
    return blocks


def remove_reference_blocks(
    text: str, syntax: str, tags: Collection[str], source: str = "<text>"
) -> str:
    """``text`` without its REFERENCE ONLY blocks of ``tags`` (markers included).

    When the block stood between two blank lines, one of them goes too, so no gap is left.
    A Python file must still parse afterwards (a :class:`MarkerError` otherwise).
    """
    blocks = [b for b in find_reference_blocks(text, syntax, source) if b.tag in tags]
    if not blocks:
        return text
    lines = text.splitlines()
    trailing_newline = text.endswith("\n")
    for block in reversed(blocks):
        start, stop = block.begin - 1, block.end  # 0-based slice of the block's lines
        before_blank = start == 0 or not lines[start - 1].strip()
        after_blank = stop >= len(lines) or not lines[stop].strip()
        if before_blank and after_blank and stop < len(lines):
            stop += 1
        del lines[start:stop]
    result = "\n".join(lines) + ("\n" if trailing_newline else "")
    if syntax == "python":
        try:
            parse(result)
        except SyntaxError as error:
            raise MarkerError(
                f"{source}: removing its REFERENCE ONLY blocks leaves invalid Python "
                f"(line {error.lineno} of the result: {error.msg})"
            ) from None
    return result


def syntax_for(path: str | Path) -> str | None:
    """``"python"``, ``"cpp"`` or ``None`` (a file without markers) from the file suffix."""
    suffix = Path(path).suffix
    if suffix in PYTHON_SUFFIXES:
        return "python"
    if suffix in CPP_SUFFIXES:
        return "cpp"
    return None


def hw_index(tag: str) -> int:
    """Position of a homework tag in course order (``hw0`` → 0, ``hw4_extra`` → 5)."""
    try:
        return HOMEWORKS.index(tag)
    except ValueError:
        raise ValueError(f"unknown homework {tag!r}; known: {', '.join(HOMEWORKS)}") from None


def find_regions(text: str, syntax: str, source: str = "<text>") -> list[Region]:
    """All regions of ``text`` in order, validated (see module docstring).

    Args:
        text: the file's contents.
        syntax: ``"python"``, ``"cpp"`` or ``"markdown"``.
        source: the name used in error messages and region labels.
    """
    begin_re, end_re = _SYNTAX[syntax]
    lines = text.splitlines()
    regions: list[Region] = []
    open_at: tuple[int, str, str] | None = None  # (line number, tag, indent)
    for number, line in enumerate(lines, start=1):
        begin, end = begin_re.match(line), end_re.match(line)
        if begin:
            tag_match = _TAG.match(begin.group("rest"))
            if not tag_match:
                raise MarkerError(
                    f"{source}:{number}: a BEGIN marker must name its homework, "
                    f"e.g. 'BEGIN YOUR SOLUTION (hw1)'; got {line.strip()!r}"
                )
            tag = tag_match.group("tag")
            if tag not in HOMEWORKS:
                raise MarkerError(
                    f"{source}:{number}: unknown homework tag {tag!r} "
                    f"(known: {', '.join(HOMEWORKS)})"
                )
            if open_at is not None:
                raise MarkerError(
                    f"{source}:{number}: nested solution region; the region opened at "
                    f"line {open_at[0]} is not closed yet"
                )
            open_at = (number, tag, begin.group("indent"))
        elif end:
            if not _END_REST.match(end.group("rest")):
                raise MarkerError(f"{source}:{number}: unexpected text after END marker")
            if open_at is None:
                raise MarkerError(f"{source}:{number}: END marker without a BEGIN marker")
            start, tag, indent = open_at
            if end.group("indent") != indent:
                raise MarkerError(
                    f"{source}:{number}: END marker indented differently from its BEGIN "
                    f"marker at line {start}"
                )
            regions.append(Region(source, tag, start, number, indent, syntax))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{source}:{open_at[0]}: unterminated solution region (no END marker)")
    if "REFERENCE ONLY" in text:
        find_reference_blocks(text, syntax, source)  # validates them
    if syntax == "python":
        return _python_functions(text, regions, source)
    if syntax == "cpp":
        return [_cpp_function(lines, region) for region in regions]
    return [Region(**{**region.__dict__, "kind": "text"}) for region in regions]


def _python_functions(text: str, regions: list[Region], source: str) -> list[Region]:
    """Name each region's function and check the region is that function's whole body."""
    try:
        tree = parse(text)
    except SyntaxError as error:
        raise MarkerError(f"{source}:{error.lineno}: {error.msg}") from None
    functions = [
        node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    named = []
    for region in regions:
        # The innermost function whose span contains the region.
        # The markers are comments, so ast ends the function at its last statement, which
        # lies inside the region.
        enclosing = [f for f in functions if f.lineno < region.begin < _end_line(f) < region.end]
        if not enclosing:
            named.append(region)  # top-level code (notebook cells): no function to check
            continue
        function = max(enclosing, key=lambda f: f.lineno)
        body = list(function.body)
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body = body[1:]  # the docstring stays provided
        outside = [s for s in body if not (region.begin < s.lineno and _end_line(s) < region.end)]
        if outside:
            raise MarkerError(
                f"{source}:{outside[0].lineno}: the region at line {region.begin} must be the "
                f"complete body of {function.name}() (after its docstring), but this statement "
                "is outside it"
            )
        named.append(Region(**{**region.__dict__, "function": _qualname(tree, function)}))
    return named


def _end_line(node: ast.AST) -> int:
    end: int | None = getattr(node, "end_lineno", None)
    return end or int(getattr(node, "lineno", 0))


def _qualname(tree: ast.AST, target: ast.AST) -> str:
    """``Class.method`` or ``function`` for a function node."""
    path: list[str] = []

    def visit(node: ast.AST, trail: list[str]) -> bool:
        for child in ast.iter_child_nodes(node):
            if child is target:
                path.extend(trail + [getattr(child, "name", "?")])
                return True
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if visit(child, trail + [child.name]):
                    return True
            elif visit(child, trail):
                return True
        return False

    visit(tree, [])
    return ".".join(path) if path else getattr(target, "name", "?")


_CPP_QUALIFIERS = re.compile(r"\b(?:const|noexcept|override|final|mutable)\s*$")
_CPP_NAME = re.compile(r"([A-Za-z_]\w*(?:::[A-Za-z_]\w*)*)\s*(?:<[^<>()]*>)?\s*$")


def _cpp_function(lines: list[str], region: Region) -> Region:
    """Find the C++ function a region is the body of: its name and whether it is a kernel."""
    before = "\n".join(lines[: region.begin - 1])
    before = _strip_cpp_strings(_strip_cpp_comments(before)).rstrip()
    where = f"{region.source}:{region.begin}"
    if not before.endswith("{"):
        # Provided statements (argument checks) may come first: the region is then the rest of
        # the body. Find the function's opening brace: the first unmatched one going back.
        depth, position = 0, len(before) - 1
        while position >= 0:
            if before[position] == "}":
                depth += 1
            elif before[position] == "{":
                if depth == 0:
                    break
                depth -= 1
            position -= 1
        prefix = before[position + 1 :].strip()
        if position < 0 or not prefix.endswith((";", "}")):
            raise MarkerError(
                f"{where}: a C++ region must start after its function's opening brace or after "
                "complete statements (it must be the rest of the function's body)"
            )
        before = before[: position + 1]
    after = _strip_cpp_comments("\n".join(lines[region.end :])).lstrip()
    if not after.startswith("}"):
        raise MarkerError(
            f"{where}: a C++ region must end its function's body (only '}}' may follow its END "
            "marker)"
        )
    signature = before[:-1].rstrip()
    while True:  # trailing qualifiers such as `const` or `noexcept`
        stripped = _CPP_QUALIFIERS.sub("", signature).rstrip()
        if stripped == signature:
            break
        signature = stripped
    if not signature.endswith(")"):
        raise MarkerError(f"{where}: cannot find the function whose body this region is")
    depth, position = 0, len(signature) - 1
    while position >= 0:
        if signature[position] == ")":
            depth += 1
        elif signature[position] == "(":
            depth -= 1
            if depth == 0:
                break
        position -= 1
    head = signature[:position].rstrip()
    name_match = _CPP_NAME.search(head)
    name = name_match.group(1) if name_match and not head.endswith("]") else "lambda"
    # The declaration starts after the previous statement, block or preprocessor line.
    declaration = head[
        max(head.rfind(";"), head.rfind("}"), head.rfind("{"), head.rfind("#")) + 1 :
    ]
    declaration = (
        re.sub(r"^[^\n]*\n", "", declaration) if declaration.startswith("#") else declaration
    )
    words = set(re.findall(r"[A-Za-z_]\w*", declaration))
    if "__global__" in words or ("__device__" in words and "__host__" not in words):
        returns_void = "__global__" in words or re.search(r"\bvoid\b", declaration) is not None
        kind = "empty" if returns_void else "empty-return"
    else:
        kind = "throw"
    # Check the region's braces balance, so the stub cannot leave an unclosed block.
    body = _strip_cpp_comments("\n".join(lines[region.begin : region.end - 1]))
    body = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', body)
    if body.count("{") != body.count("}"):
        raise MarkerError(f"{where}: unbalanced braces inside the region of {name}()")
    return Region(**{**region.__dict__, "function": name.split("::")[-1], "kind": kind})


def _strip_cpp_strings(text: str) -> str:
    """String and character literals replaced by ``""`` (their braces do not count)."""
    return re.sub(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', '""', text)


def _strip_cpp_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def stub_line(region: Region, note: str | None = None) -> list[str]:
    """The line(s) that replace a region's body.

    Args:
        region: the region being stubbed.
        note: optional message for the student (Python exception text or C++ comment), e.g.
            ``"bring your hw1 solution"``; defaults to nothing (Python) / "not implemented".
    """
    indent = region.indent
    if region.syntax == "python":
        argument = repr(note) if note else ""
        return [f"{indent}raise NotImplementedError({argument})"]
    if region.syntax == "markdown":
        return [f"{indent}*Your answer here.*"]
    if region.kind in ("empty", "empty-return"):
        lines = [f"{indent}// TODO ({region.tag}): {note or 'write this kernel'}"]
        if region.kind == "empty-return":
            lines.append(f"{indent}return {{}};")
        return lines
    message = f"{region.function}: {note or 'not implemented'} ({region.tag})"
    return [f'{indent}throw std::runtime_error("{message}");']


def stub_text(
    text: str,
    syntax: str,
    stub: dict[str, str | None],
    source: str = "<text>",
) -> tuple[str, list[Region]]:
    """Replace the bodies of the regions whose tag is a key of ``stub``.

    Args:
        text: the reference file's contents.
        syntax: ``"python"``, ``"cpp"`` or ``"markdown"``.
        stub: tag → note for the stub (``None`` for no note); regions of other tags are kept.
        source: the file name used in messages.

    The REFERENCE ONLY blocks of the tags in ``stub`` are removed (see the module docstring).

    Returns:
        The new text (markers kept) and the list of all regions found (line numbers of
        ``text``).
    """
    regions = find_regions(text, syntax, source)
    lines = text.splitlines()
    trailing_newline = text.endswith("\n")
    for region in reversed(regions):
        if region.tag not in stub:
            continue
        replacement = stub_line(region, stub[region.tag])
        lines[region.begin : region.end - 1] = replacement
    result = "\n".join(lines) + ("\n" if trailing_newline else "")
    result = remove_reference_blocks(result, syntax, stub, source)
    if syntax == "cpp" and any(r.tag in stub and r.kind == "throw" for r in regions):
        result = _ensure_include(result, "stdexcept")
    return result, regions


def _ensure_include(text: str, header: str) -> str:
    """Add ``#include <header>`` after the first include when the file lacks it."""
    if re.search(rf"#\s*include\s*<{header}>", text):
        return text
    match = re.search(r"^#\s*include[^\n]*\n", text, flags=re.M)
    position = match.end() if match else 0
    return text[:position] + f"#include <{header}>\n" + text[position:]


def region_bodies(text: str, syntax: str, source: str = "<text>") -> dict[Region, list[str]]:
    """Each region with the lines of its body (markers excluded)."""
    lines = text.splitlines()
    return {r: lines[r.begin : r.end - 1] for r in find_regions(text, syntax, source)}


def scan_file(path: Path, display: str | None = None) -> list[Region]:
    """Regions of one source file (empty for files of other types)."""
    syntax = syntax_for(path)
    if syntax is None:
        return []
    return find_regions(path.read_text(encoding="utf-8"), syntax, display or str(path))


def main(argv: list[str] | None = None) -> int:
    """``python -m autograder.authoring.markers [PATH...]``: validate markers and list regions."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("paths", nargs="*", default=["library", "assignments"])
    args = parser.parse_args(argv)
    counts: dict[str, int] = {}
    failed = False
    for root in map(Path, args.paths):
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            try:
                for region in scan_file(path):
                    counts[region.tag] = counts.get(region.tag, 0) + 1
                    print(f"{region.tag:10} {region.label}")
                syntax = syntax_for(path)
                text = path.read_text(encoding="utf-8") if syntax else ""
                if syntax and "REFERENCE ONLY" in text:
                    for block in find_reference_blocks(text, syntax, str(path)):
                        print(f"{block.tag:10} {path}:{block.begin}-{block.end} (reference only)")
            except MarkerError as error:
                print(f"error: {error}", file=sys.stderr)
                failed = True
    print("regions per homework: " + ", ".join(f"{t} {counts[t]}" for t in sorted(counts)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
