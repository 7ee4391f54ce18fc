"""The marker parser and stubber (autograder.authoring.markers) on small sources."""

from __future__ import annotations

import textwrap

import pytest

from autograder.authoring.markers import MarkerError, find_regions, scan_file, stub_text

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


def test_cpp_region_must_be_a_function_body():
    source = "int f() {\n  int x = 1;\n  // BEGIN YOUR SOLUTION (hw3)\n  return x;\n"
    source += "  // END YOUR SOLUTION\n}\n"
    with pytest.raises(MarkerError, match="opening brace"):
        find_regions(source, "cpp", "bad.cc")


def test_every_reference_source_has_valid_markers():
    from autograder.authoring.assignment import REPO_ROOT

    count = 0
    for root in (REPO_ROOT / "library", REPO_ROOT / "assignments"):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                count += len(scan_file(path, str(path.relative_to(REPO_ROOT))))
    assert count > 50, f"only {count} regions found in the reference sources"
