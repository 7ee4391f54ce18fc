// The one list of the kernels a compiled backend registers with Python (an "X-macro" list).
//
// It mirrors KERNELS in needle/backend_ndarray/ndarray_backend_numpy.py, the executable spec,
// and tests/test_kernel_contract.py checks every backend against that table. Each entry names
// a kernel and the C++ spelling of its name; a backend decides what an entry turns into by
// defining these macros, inside its PYBIND11_MODULE, before it includes this file:
//
//   NEEDLE_KERNEL(name, Function, ARGS)    a kernel that is one function of that name (fill,
//                                          compact, ewise_setitem, scalar_setitem, reduce_*,
//                                          matmul); ARGS are its pybind11::arg names
//   NEEDLE_BINARY_KERNEL(name, Name)       the pair ewise_<name>(a, b, out) and
//                                          scalar_<name>(a, val, out)
//   NEEDLE_UNARY_KERNEL(name, Name)        ewise_<name>(a, out)
//   NEEDLE_OPTIONAL_KERNEL(name, Function, ARGS)
//                                          a fast path a backend may leave out: one that does
//                                          not define this macro registers nothing
//
// The CPU backend registers its functions Ewise<Name> and Scalar<Name> (homework 3 writes
// them), the CUDA backend its templates EwiseBinary<<Name>Op>, ScalarBinary<<Name>Op> and
// EwiseUnary<<Name>Op>, instantiated with the functor that holds the scalar math. So adding an
// element-wise kernel is one line here plus that scalar math in each backend (see
// docs/adding-a-kernel.md). The argument names below are the ones of the numpy backend; the
// NEEDLE_ARGS_* macros may be used by the backend's macros. Everything is undefined again at
// the end of this file.

#ifndef NEEDLE_KERNEL
#error "define NEEDLE_KERNEL(name, Function, ARGS) before including kernel_list.h"
#endif
#ifndef NEEDLE_BINARY_KERNEL
#error "define NEEDLE_BINARY_KERNEL(name, Name) before including kernel_list.h"
#endif
#ifndef NEEDLE_UNARY_KERNEL
#error "define NEEDLE_UNARY_KERNEL(name, Name) before including kernel_list.h"
#endif
#ifndef NEEDLE_OPTIONAL_KERNEL
#define NEEDLE_OPTIONAL_KERNEL(name, Function, ARGS)
#endif

#define NEEDLE_ARGS_FILL pybind11::arg("out"), pybind11::arg("val")
#define NEEDLE_ARGS_STRIDED \
  pybind11::arg("a"), pybind11::arg("out"), pybind11::arg("shape"), pybind11::arg("strides"), \
      pybind11::arg("offset")
#define NEEDLE_ARGS_STRIDED_FILL                                                             \
  pybind11::arg("size"), pybind11::arg("val"), pybind11::arg("out"), pybind11::arg("shape"), \
      pybind11::arg("strides"), pybind11::arg("offset")
#define NEEDLE_ARGS_ZIP pybind11::arg("a"), pybind11::arg("b"), pybind11::arg("out")
#define NEEDLE_ARGS_SCALAR pybind11::arg("a"), pybind11::arg("val"), pybind11::arg("out")
#define NEEDLE_ARGS_MAP pybind11::arg("a"), pybind11::arg("out")
#define NEEDLE_ARGS_REDUCE pybind11::arg("a"), pybind11::arg("out"), pybind11::arg("reduce_size")
#define NEEDLE_ARGS_ZIP_STRIDED                                                           \
  pybind11::arg("a"), pybind11::arg("b"), pybind11::arg("out"), pybind11::arg("shape"), \
      pybind11::arg("strides"), pybind11::arg("offset")
#define NEEDLE_ARGS_MATMUL                                                                \
  pybind11::arg("a"), pybind11::arg("b"), pybind11::arg("out"), pybind11::arg("m"), \
      pybind11::arg("n"), pybind11::arg("p")
#define NEEDLE_ARGS_MATMUL_STRIDED                                                              \
  pybind11::arg("a"), pybind11::arg("b"), pybind11::arg("out"), pybind11::arg("shape"),       \
      pybind11::arg("strides"), pybind11::arg("offset"), pybind11::arg("split"), pybind11::arg("p")

// Buffers and strided views.
NEEDLE_KERNEL(fill, Fill, NEEDLE_ARGS_FILL)
NEEDLE_KERNEL(compact, Compact, NEEDLE_ARGS_STRIDED)
NEEDLE_KERNEL(ewise_setitem, EwiseSetitem, NEEDLE_ARGS_STRIDED)
NEEDLE_KERNEL(scalar_setitem, ScalarSetitem, NEEDLE_ARGS_STRIDED_FILL)

// Element-wise: out[i] = f(a[i], b[i]) and f(a[i], val) ...
NEEDLE_BINARY_KERNEL(add, Add)
NEEDLE_BINARY_KERNEL(mul, Mul)
NEEDLE_BINARY_KERNEL(div, Div)
NEEDLE_BINARY_KERNEL(power, Power)
NEEDLE_BINARY_KERNEL(maximum, Maximum)
NEEDLE_BINARY_KERNEL(eq, Eq)
NEEDLE_BINARY_KERNEL(ge, Ge)
// ... and out[i] = f(a[i]).
NEEDLE_UNARY_KERNEL(log, Log)
NEEDLE_UNARY_KERNEL(exp, Exp)
NEEDLE_UNARY_KERNEL(tanh, Tanh)

// Reductions over consecutive blocks, and matrix products.
NEEDLE_KERNEL(reduce_max, ReduceMax, NEEDLE_ARGS_REDUCE)
NEEDLE_KERNEL(reduce_sum, ReduceSum, NEEDLE_ARGS_REDUCE)
NEEDLE_KERNEL(matmul, Matmul, NEEDLE_ARGS_MATMUL)
NEEDLE_OPTIONAL_KERNEL(matmul_tiled, MatmulTiled, NEEDLE_ARGS_MATMUL)

// Element-wise with a strided second operand (a broadcast, usually), so that NDArray need not
// compact it first: out[i] = f(a[i], view of b [i]). Fast paths of the reference CPU backend,
// which defines NEEDLE_STRIDED_ZIP_KERNELS; a backend without them gets the compact + ewise path.
#ifdef NEEDLE_STRIDED_ZIP_KERNELS
NEEDLE_OPTIONAL_KERNEL(ewise_add_strided, EwiseAddStrided, NEEDLE_ARGS_ZIP_STRIDED)
NEEDLE_OPTIONAL_KERNEL(ewise_mul_strided, EwiseMulStrided, NEEDLE_ARGS_ZIP_STRIDED)
NEEDLE_OPTIONAL_KERNEL(ewise_div_strided, EwiseDivStrided, NEEDLE_ARGS_ZIP_STRIDED)
// A matrix product whose first operand is a strided view (a convolution's im2col view).
NEEDLE_OPTIONAL_KERNEL(matmul_strided, MatmulStrided, NEEDLE_ARGS_MATMUL_STRIDED)
// Sums over the leading axis of a row-major (reduce_size, out.size) block, without transposing.
NEEDLE_OPTIONAL_KERNEL(reduce_sum_columns, ReduceSumColumns, NEEDLE_ARGS_REDUCE)
#endif

#undef NEEDLE_KERNEL
#undef NEEDLE_BINARY_KERNEL
#undef NEEDLE_UNARY_KERNEL
#undef NEEDLE_OPTIONAL_KERNEL
#undef NEEDLE_ARGS_FILL
#undef NEEDLE_ARGS_STRIDED
#undef NEEDLE_ARGS_STRIDED_FILL
#undef NEEDLE_ARGS_ZIP
#undef NEEDLE_ARGS_SCALAR
#undef NEEDLE_ARGS_MAP
#undef NEEDLE_ARGS_REDUCE
#undef NEEDLE_ARGS_MATMUL
#undef NEEDLE_ARGS_ZIP_STRIDED
#undef NEEDLE_ARGS_MATMUL_STRIDED
#undef NEEDLE_STRIDED_ZIP_KERNELS
