"""The marker parser and stubber (autograder.authoring.markers) on small sources."""

from __future__ import annotations

import textwrap

import pytest

from autograder.authoring.markers import (
    MarkerError,
    find_reference_blocks,
    find_regions,
    scan_file,
    stub_text,
)

PYTHON = textwrap.dedent(
    '''
    class Op:
        def compute(self, a):
            """Docstring stays."""
            ### BEGIN YOUR SOLUTION (hw1)
            b = a + 1
            return b
            ### END YOUR SOLUTION


    def helper(x):
        ### BEGIN YOUR SOLUTION (hw2)
        return x
        ### END YOUR SOLUTION
    '''
)

CPP = textwrap.dedent(
    """
    #include <vector>
    void Compact(const AlignedArray& a, AlignedArray* out, std::vector<int32_t> shape) {
      // BEGIN YOUR SOLUTION (hw3)
      for (size_t i = 0; i < a.size; i++) { out->ptr[i] = a.ptr[i]; }
      // END YOUR SOLUTION
    }

    __global__ void CompactKernel(const float* a, float* out, size_t size) {
      // BEGIN YOUR SOLUTION (hw3)
      size_t gid = blockIdx.x * blockDim.x + threadIdx.x;
      if (gid < size) out[gid] = a[gid];
      // END YOUR SOLUTION
    }

    __device__ size_t Offset(size_t gid) {
      // BEGIN YOUR SOLUTION (hw3)
      return gid * 2;
      // END YOUR SOLUTION
    }
    """
)


def test_python_regions_are_named_and_stubbed():
    regions = find_regions(PYTHON, "python", "ops.py")
    assert [(r.tag, r.function) for r in regions] == [("hw1", "Op.compute"), ("hw2", "helper")]
    stubbed, _ = stub_text(PYTHON, "python", {"hw1": None}, "ops.py")
    compile(stubbed, "ops.py", "exec")
    assert "b = a + 1" not in stubbed and "raise NotImplementedError()" in stubbed
    assert "return x" in stubbed, "regions of other tags are kept"
    assert "### BEGIN YOUR SOLUTION (hw1)" in stubbed, "markers stay for the student"
    assert '"""Docstring stays."""' in stubbed


def test_stub_note_for_earlier_homework():
    stubbed, _ = stub_text(PYTHON, "python", {"hw2": "bring your hw2 solution"}, "ops.py")
    assert "raise NotImplementedError('bring your hw2 solution')" in stubbed


def test_cpp_regions_throw_and_kernels_are_emptied():
    regions = find_regions(CPP, "cpp", "k.cu")
    assert [(r.function, r.kind) for r in regions] == [
        ("Compact", "throw"),
        ("CompactKernel", "empty"),
        ("Offset", "empty-return"),
    ]
    stubbed, _ = stub_text(CPP, "cpp", {"hw3": None}, "k.cu")
    assert 'throw std::runtime_error("Compact: not implemented (hw3)");' in stubbed
    assert "#include <stdexcept>" in stubbed
    assert "out[gid] = a[gid]" not in stubbed and "return {};" in stubbed
    assert stubbed.count("{") == stubbed.count("}")


@pytest.mark.parametrize(
    "source, message",
    [
        ("def f():\n    ### BEGIN YOUR SOLUTION (hw1)\n    return 1\n", "unterminated"),
        ("def f():\n    return 1\n    ### END YOUR SOLUTION\n", "without a BEGIN"),
        (
            "def f():\n    ### BEGIN YOUR SOLUTION (hw1)\n    ### BEGIN YOUR SOLUTION (hw1)\n"
            "    return 1\n    ### END YOUR SOLUTION\n    ### END YOUR SOLUTION\n",
            "nested",
        ),
        (
            "def f():\n    ### BEGIN YOUR SOLUTION (hw9)\n    return 1\n"
            "    ### END YOUR SOLUTION\n",
            "unknown homework tag",
        ),
        (
            "def f():\n    ### BEGIN YOUR SOLUTION\n    return 1\n    ### END YOUR SOLUTION\n",
            "must name its homework",
        ),
        (
            "def f():\n    x = 1\n    ### BEGIN YOUR SOLUTION (hw1)\n    return x\n"
            "    ### END YOUR SOLUTION\n",
            "complete body",
        ),
    ],
    ids=["unterminated", "unmatched-end", "nested", "unknown-tag", "no-tag", "partial-body"],
)
def test_malformed_markers_name_file_and_line(source, message):
    with pytest.raises(MarkerError, match=message) as error:
        find_regions(source, "python", "bad.py")
    assert str(error.value).startswith("bad.py:"), "the error names file:line"


def test_cpp_region_is_the_rest_of_a_function_body():
    # Provided statements (argument checks) may come first; the region ends the body.
    source = "int f(int n) {\n  if (n < 0) { throw 1; }\n  int x = n;\n"
    source += "  // BEGIN YOUR SOLUTION (hw3)\n  return x;\n  // END YOUR SOLUTION\n}\n"
    (region,) = find_regions(source, "cpp", "ok.cc")
    assert (region.function, region.kind) == ("f", "throw")
    stubbed, _ = stub_text(source, "cpp", {"hw3": None}, "ok.cc")
    assert "if (n < 0) { throw 1; }" in stubbed and "return x;" not in stubbed
    after = "int f() {\n  // BEGIN YOUR SOLUTION (hw3)\n  int x = 1;\n  // END YOUR SOLUTION\n"
    after += "  return x;\n}\n"
    with pytest.raises(MarkerError, match="must end its function's body"):
        find_regions(after, "cpp", "bad.cc")
    midway = "int f() {\n  int x = g(1,\n  // BEGIN YOUR SOLUTION (hw3)\n  2);\n"
    midway += "  // END YOUR SOLUTION\n}\n"
    with pytest.raises(MarkerError, match="opening brace or after complete statements"):
        find_regions(midway, "cpp", "bad.cc")


CPP_REFERENCE_ONLY = textwrap.dedent(
    """
    #include <vector>
    void Provided() {}

    // BEGIN REFERENCE ONLY (hw3)
    // The reference's helper.
    inline float Twice(float x) { return 2 * x; }
    // END REFERENCE ONLY

    void EwiseTwice(const float* a, float* out, int n) {
      if (n < 0) throw 1;
      // BEGIN YOUR SOLUTION (hw3)
      for (int i = 0; i < n; ++i) out[i] = Twice(a[i]);
      // END YOUR SOLUTION
    }
    """
)


def test_reference_only_block_leaves_the_stubbed_release_and_stays_in_the_filled_one():
    (block,) = find_reference_blocks(CPP_REFERENCE_ONLY, "cpp", "k.cc")
    assert (block.tag, block.begin, block.end) == ("hw3", 5, 8)
    stubbed, regions = stub_text(CPP_REFERENCE_ONLY, "cpp", {"hw3": None}, "k.cc")
    assert [r.function for r in regions] == ["EwiseTwice"]
    assert "Twice(float" not in stubbed and "REFERENCE ONLY" not in stubbed
    assert "void Provided() {}\n\nvoid EwiseTwice" in stubbed, "no double blank line left"
    assert "if (n < 0) throw 1;" in stubbed, "provided checks stay"
    filled, _ = stub_text(CPP_REFERENCE_ONLY, "cpp", {}, "k.cc")
    assert filled == CPP_REFERENCE_ONLY
    other, _ = stub_text(CPP_REFERENCE_ONLY, "cpp", {"hw4": "written in hw4"}, "k.cc")
    assert other == CPP_REFERENCE_ONLY, "only the block's own homework removes it"


def test_python_reference_only_block():
    source = textwrap.dedent(
        """
        import math


        ### BEGIN REFERENCE ONLY (hw1)
        def _helper(x):
            return math.sqrt(x)
        ### END REFERENCE ONLY


        def public(x):
            ### BEGIN YOUR SOLUTION (hw1)
            return _helper(x)
            ### END YOUR SOLUTION
        """
    )
    stubbed, _ = stub_text(source, "python", {"hw1": None}, "m.py")
    compile(stubbed, "m.py", "exec")
    assert "_helper" not in stubbed and "REFERENCE ONLY" not in stubbed
    assert stub_text(source, "python", {}, "m.py")[0] == source


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("// BEGIN REFERENCE ONLY (hw3)\nint x;\n", "unterminated REFERENCE ONLY"),
        ("// END REFERENCE ONLY\n", "without a BEGIN"),
        ("// BEGIN REFERENCE ONLY\nint x;\n// END REFERENCE ONLY\n", "must name its homework"),
        ("// BEGIN REFERENCE ONLY (hw99)\nint x;\n// END REFERENCE ONLY\n", "unknown homework"),
        (
            "// BEGIN REFERENCE ONLY (hw3)\n// BEGIN REFERENCE ONLY (hw3)\n"
            "// END REFERENCE ONLY\n// END REFERENCE ONLY\n",
            "nested REFERENCE ONLY",
        ),
        (
            "// BEGIN REFERENCE ONLY (hw3)\nvoid f() {\n  // BEGIN YOUR SOLUTION (hw3)\n"
            "  // END YOUR SOLUTION\n}\n// END REFERENCE ONLY\n",
            "solution region inside the REFERENCE ONLY block",
        ),
        ("// BEGIN REFERENCE ONLY (hw3)\nvoid f() {\n// END REFERENCE ONLY\n}\n", "unbalanced"),
    ],
)
def test_malformed_reference_only_blocks(source, message):
    with pytest.raises(MarkerError, match=message):
        find_regions(source, "cpp", "bad.cc")


def test_every_reference_source_has_valid_markers():
    from autograder.authoring.assignment import REPO_ROOT

    count = 0
    for root in (REPO_ROOT / "library", REPO_ROOT / "assignments"):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                count += len(scan_file(path, str(path.relative_to(REPO_ROOT))))
    assert count > 50, f"only {count} regions found in the reference sources"
