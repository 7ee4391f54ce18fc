"""hw3's hidden probes: sound on the reference, and graded end to end in the local sandbox.

Fast tests run the probe functions in this process (the views unit needs only the numpy
device; the kernel units run where the reference C++ backend is built). The slow tests grade
submissions made from the blank and the reference-filled releases with the real engine: the
reference gets full marks on the CPU units, the blank release 0, and mixed submissions exactly
the points of their correct parts (one unit per accepted file, and one unit per C++ kernel or
small kernel group: a wrong comparison costs only that comparison's unit, a kernel that crashes
its process only its own unit).

CUDA units: without a GPU where the probes run, every CUDA probe raises ``NotGradable``, and
the grader reports those units as not graded on this machine (no points, never a pass).
"""

from __future__ import annotations

import numpy as np
import pytest

from autograder.authoring.bundle import Homework
from autograder.authoring.markers import find_regions, stub_line
from autograder.engine.grading import Grader
from autograder.engine.kit import probes_of
from autograder.engine.paths import REPO_ROOT
from autograder.engine.probes import load_suite
from autograder.engine.runner import AnswerWriter
from autograder.engine.sandbox import local_sandbox
from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw3

PROBES = REPO_ROOT / "autograder" / "probes" / "hw3.py"
NDARRAY = "needle/backend_ndarray/ndarray.py"
CPU = "src/ndarray_backend_cpu.cc"
CUDA = "src/ndarray_backend_cuda.cu"


def _cpu_units():
    from autograder.authoring.assignment import load

    return [unit for unit in load("hw3").points if unit.startswith("ndarray_cpu_")]


CPU_UNITS = _cpu_units()


@pytest.fixture(scope="module")
def suite():
    return load_suite(PROBES)


def run_in_process(function):
    """A probe's answer, encoded exactly as the sandboxed runner would send it."""
    value = function()
    AnswerWriter.__new__(AnswerWriter).encode(value)  # raises on anything but plain data
    return value


# ---- fast: the probe module itself -------------------------------------------------------------


def test_every_unit_has_probes_and_units_match_the_toml(suite):
    from autograder.authoring.assignment import load

    points = load("hw3").points
    assert suite.units == list(points), "probe units must be the toml's units, in its order"
    for unit, cases in suite.cases.items():
        assert len(cases) >= 1, unit
        if "cuda" in unit:  # CUDA units mirror the CPU ones
            assert unit.replace("cuda", "cpu") in suite.units


def test_views_probes_answer_with_layouts_that_match_numpy(suite):
    """On the reference, the views unit's answers are numpy's layouts (an oracle that does not
    come from needle)."""
    answers = {
        info.name: run_in_process(function)
        for info, function in probes_of(suite.module, "ndarray_python_ops")
    }
    assert answers["python_reshape_errors"] == ["ValueError", "ValueError"]
    base = np.arange(9 * 7, dtype=np.float32).reshape(9, 7)
    numpy_view = base[2:8, 1:6:2]
    first = answers["python_getitem"][0]
    assert first["shape"] == list(numpy_view.shape)
    assert first["strides"] == [s // 4 for s in numpy_view.strides]
    assert first["offset"] == 2 * 7 + 1
    assert first["shares_memory"] is True
    column = answers["python_broadcast_to"][0]  # (3, 1) -> (3, 5)
    assert column["shape"] == [3, 5] and column["strides"] == [1, 0]
    assert column["shares_memory"] is True


def test_cuda_probes_say_not_gradable_without_a_gpu(suite):
    from needle import backend_ndarray as nd

    if nd.cuda().enabled():
        pytest.skip("this machine has a GPU: the CUDA probes run for real")
    for unit in suite.units:
        if "cuda" not in unit:
            continue
        for info, function in probes_of(suite.module, unit):
            with pytest.raises(Exception) as caught:
                function()
            assert type(caught.value).__name__ == "NotGradable", (info.name, caught.value)
            assert "needs a CUDA GPU" in str(caught.value)


def test_kernel_probes_run_on_the_reference_and_agree_with_numpy(suite):
    from needle import backend_ndarray as nd

    if not nd.cpu().enabled():
        pytest.skip(f"the reference CPU backend is not built here: {nd.cpu().unavailable_reason}")
    for unit in CPU_UNITS:
        for _, function in probes_of(suite.module, unit):
            run_in_process(function)
    # Two oracle spot checks: a matmul and a reduction, recomputed with numpy.
    from autograder.engine.kit import randint

    matmuls = run_in_process(suite.module.cpu_matmul)
    m, n, p = suite.module.MATMULS[3]
    a = randint(m, n, seed=423, low=-4, high=5).astype(np.float32)
    b = randint(n, p, seed=443, low=-4, high=5).astype(np.float32)
    got = matmuls[3]
    np.testing.assert_array_equal(got["head"], (a @ b).reshape(-1)[: suite.module.HEAD])
    assert got["sum"] == pytest.approx(float((a @ b).astype(np.float64).sum()))
    sums = run_in_process(suite.module.cpu_reduce_sum)
    outputs, size = suite.module.REDUCTIONS[1]
    data = randint(outputs * size, seed=401, low=-100, high=100).astype(np.float32)
    np.testing.assert_array_equal(sums[1], data.reshape(outputs, size).sum(axis=1))


# ---- slow: graded end to end (each submission compiles the C++ backend in the sandbox) --------


@pytest.fixture(scope="module")
def hw3():
    return Homework.load("hw3")


@pytest.fixture(scope="module")
def hw3_grader(hw3):
    with Grader(hw3.bundle, local_sandbox()) as grader:
        yield grader


def stub_functions(text: str, names: set[str], source: str) -> str:
    """``text`` (C++) with the regions of the functions ``names`` stubbed, the rest kept."""
    lines = text.splitlines()
    regions = [r for r in find_regions(text, "cpp", source) if r.function in names]
    assert {r.function for r in regions} == names, "a function to stub has no region"
    for region in reversed(regions):
        lines[region.begin : region.end - 1] = stub_line(region)
    return "\n".join(lines) + "\n"


def gpu_here() -> bool:
    from needle import backend_ndarray as nd

    return nd.cuda().enabled()


@pytest.mark.slow
def test_reference_blank_and_mixed_submissions_get_exactly_their_points(hw3, hw3_grader, tmp_path):
    points = hw3.points
    views = {"ndarray_python_ops": points["ndarray_python_ops"]}
    cpu = {unit: points[unit] for unit in CPU_UNITS}
    no_reductions = stub_functions(hw3.reference[CPU].decode(), {"ReduceSum", "ReduceMax"}, CPU)
    reductions = ("ndarray_cpu_reduce_sum", "ndarray_cpu_reduce_max")
    # name -> (files from the reference release, other contents, expected points per unit)
    cases = {
        "reference": ({NDARRAY, CPU, CUDA}, {}, {**views, **cpu}),
        "blank": (set(), {}, {}),
        "views_only": ({NDARRAY}, {}, views),
        "cpu_only": ({CPU}, {}, cpu),
        "cpu_without_reductions": (
            {NDARRAY},
            {CPU: no_reductions.encode()},
            {**views, **cpu, **dict.fromkeys(reductions, 0.0)},
        ),
    }
    paths = [
        make_submission(tmp_path / "subs" / name, hw3, reference_files=files, extra=extra)
        for name, (files, extra, _) in cases.items()
    ]
    results = hw3_grader.grade_batch(paths, tmp_path / "out", jobs=2, progress=False)
    by_name = {r["extra_data"]["submission"]: r for r in results}
    for name, (_, _, expected) in cases.items():
        tests = {t["name"]: t for t in by_name[name]["tests"]}
        for unit in [u for u in points if "cuda" not in u]:
            assert tests[unit]["score"] == pytest.approx(expected.get(unit, 0.0), abs=1e-3), (
                name,
                unit,
                tests[unit]["output"][:500],
            )
        if not gpu_here():  # CUDA units: not graded here, left out of max_score, never passed
            for unit in [u for u in points if "cuda" in u]:
                assert tests[unit]["score"] == 0 and tests[unit]["max_score"] == 0, (name, unit)
                assert "Not graded here: " in tests[unit]["output"], (name, unit)
                assert "needs a CUDA GPU" in tests[unit]["output"], (name, unit)
                assert tests[unit]["extra_data"]["not_graded"], (name, unit)
            gradable = sum(p for u, p in points.items() if "cuda" not in u)
            assert by_name[name]["max_score"] == pytest.approx(gradable), name
    # The blank release compiles (its stubs throw at run time) and says what is missing.
    blank = {t["name"]: t for t in by_name["blank"]["tests"]}
    assert by_name["blank"]["extra_data"]["built"] is True
    assert "not implemented (hw3)" in blank["ndarray_cpu_compact"]["output"]
    mixed = {t["name"]: t for t in by_name["cpu_without_reductions"]["tests"]}
    assert "ReduceSum: not implemented" in mixed["ndarray_cpu_reduce_sum"]["output"]
    assert "ReduceMax: not implemented" in mixed["ndarray_cpu_reduce_max"]["output"]


@pytest.mark.slow
def test_a_cpu_backend_that_does_not_compile_costs_only_the_cpu_units(hw3, hw3_grader, tmp_path):
    broken = hw3.reference[CPU] + b"\nthis is not C++;\n"
    folder = make_submission(
        tmp_path / "broken_cpu", hw3, reference_files={NDARRAY}, extra={CPU: broken}
    )
    result = hw3_grader.grade(folder)
    assert result["extra_data"]["built"] is False
    assert "did not compile" in result["output"]
    scores = {t["name"]: t["score"] for t in result["tests"]}
    assert scores["ndarray_python_ops"] == hw3.points["ndarray_python_ops"]
    assert all(scores[unit] == 0 for unit in CPU_UNITS)


# ---- slow: one wrong kernel costs its own unit only ----------------------------------------------

STRICT_GE = (
    "EwiseZip(a, b, out, [](scalar_t x, scalar_t y) { return x >= y ? 1.0f : 0.0f; });",
    "EwiseZip(a, b, out, [](scalar_t x, scalar_t y) { return x > y ? 1.0f : 0.0f; });",
)
# An out-of-bounds write far past the input: a real SIGSEGV, in ReduceSum only.
SEGFAULT_IN_REDUCE_SUM = (
    '  if (reduce_size == 0) return Fill(out, 0.0f);\n  ReduceContiguous(\n      "reduce_sum"',
    "  *reinterpret_cast<volatile scalar_t*>(a.ptr + (size_t{1} << 40)) = 1.0f;\n"
    '  if (reduce_size == 0) return Fill(out, 0.0f);\n  ReduceContiguous(\n      "reduce_sum"',
)


@pytest.fixture(scope="module")
def one_wrong_kernel(hw3, hw3_grader, tmp_path_factory):
    """Graded: the reference with a strict > in EwiseGe, and with a segfault in ReduceSum."""
    tmp = tmp_path_factory.mktemp("one_wrong_kernel")
    reference = hw3.reference[CPU].decode()
    submissions = {}
    for name, (find, replace) in {"strict_ge": STRICT_GE, "segv": SEGFAULT_IN_REDUCE_SUM}.items():
        assert reference.count(find) == 1, name
        text = reference.replace(find, replace).encode()
        submissions[name] = make_submission(
            tmp / "subs" / name, hw3, reference_files={NDARRAY}, extra={CPU: text}
        )
    results = hw3_grader.grade_batch(
        list(submissions.values()), tmp / "out", jobs=2, progress=False
    )
    return {r["extra_data"]["submission"]: {t["name"]: t for t in r["tests"]} for r in results}


def _lost(hw3, tests):
    return {
        unit: (tests[unit]["score"], points)
        for unit, points in hw3.points.items()
        if "cuda" not in unit and tests[unit]["score"] < points - 1e-6
    }


@pytest.mark.slow
def test_one_wrong_comparison_costs_only_its_unit(hw3, one_wrong_kernel):
    tests = one_wrong_kernel["strict_ge"]
    lost = _lost(hw3, tests)
    assert set(lost) == {"ndarray_cpu_ops_ge"}, lost
    # ewise_ge is wrong on the ties, scalar_ge is right: half of the unit.
    assert tests["ndarray_cpu_ops_ge"]["score"] == pytest.approx(
        hw3.points["ndarray_cpu_ops_ge"] / 2, abs=1e-3
    )


@pytest.mark.slow
def test_a_segfault_in_reduce_sum_does_not_cost_reduce_max(hw3, one_wrong_kernel):
    tests = one_wrong_kernel["segv"]
    assert set(_lost(hw3, tests)) == {"ndarray_cpu_reduce_sum"}
    assert tests["ndarray_cpu_reduce_sum"]["score"] == 0
    assert tests["ndarray_cpu_reduce_max"]["score"] == hw3.points["ndarray_cpu_reduce_max"]
