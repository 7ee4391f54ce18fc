// needle's CUDA backend: flat float32 buffers in GPU memory and the kernels NDArray calls.
//
// Like the CPU backend, this module knows nothing about shapes beyond what a kernel needs: all
// layout logic (views, broadcasting, permutations) stays in Python's NDArray, which hands us
// flat buffers (`Array`) plus, for the three strided kernels, a shape, strides counted in
// ELEMENTS (possibly zero or negative) and an offset. The numpy backend
// (needle/backend_ndarray/ndarray_backend_numpy.py) is the executable spec: every function here
// means exactly what the function of the same name means there.
//
// How the GPU work is organised:
//   - every kernel launches on the default stream, so kernels run in the order they are issued
//     and a later cudaMemcpy (to_numpy) waits for them; Python never sees a half-written result;
//   - element-wise kernels use one thread per element with a grid-stride loop, so any size works
//     with a capped grid (and size 0 is a grid of one block that does nothing);
//   - every CUDA call is checked; a failure raises RuntimeError with CUDA's own error text.
//     Kernel launches are checked with cudaGetLastError() right after the launch; errors that
//     happen while a kernel runs surface at the next synchronising call (to_numpy, synchronize);
//   - arguments are validated on the host before anything touches the GPU (a strided view that
//     reaches outside its buffer raises ValueError instead of corrupting GPU memory).
//
// Teaching markers. Student code (hw3) lives between `// BEGIN YOUR SOLUTION (hw3)` and
// `// END YOUR SOLUTION`, and each region is the complete body of one function. The release tool
// (autograder/markers.py) stubs a region by this rule:
//   - a region inside a __global__ or __device__ function is emptied (device code cannot throw;
//     a non-void __device__ function also gets `return {};`);
//   - a region anywhere else (host code) becomes
//     `throw std::runtime_error("<function>: not implemented (hw3)");`.
// Provided to students (no markers): CudaArray, fill, ewise_add/scalar_add (worked examples of a
// kernel and its launch), the compact launcher, to_numpy/from_numpy, device_count/synchronize,
// the argument checks and the scalar functors. Students write every other kernel and launcher.
//
// The module registers the kernels from the shared list kernel_list.h (the CPU backend includes it
// too): entry NEEDLE_BINARY_KERNEL(mul, Mul) registers EwiseBinary<MulOp> and
// ScalarBinary<MulOp> as ewise_mul and scalar_mul, NEEDLE_UNARY_KERNEL(log, Log) registers
// EwiseUnary<LogOp> as ewise_log.

#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace needle {
namespace cuda {

namespace py = pybind11;

typedef float scalar_t;
constexpr size_t kElemSize = sizeof(scalar_t);

constexpr int kBaseThreadNum = 256;  // threads per block of 1-D launches (8 warps)
constexpr int kTile = 4;             // exported as __tile_size__ (NDArray's matmul hint)
constexpr int kMaxVecSize = 16;      // most dimensions a strided view may have
[[maybe_unused]] constexpr int kWarpSize = 32;  // (only solution code uses it)
// 1-D grids are capped at this many blocks; the grid-stride loops cover larger sizes. 65535
// blocks of 256 threads is far more than an H100 keeps resident (132 SMs x 8 blocks).
constexpr size_t kMaxGridBlocks = 65535;

// ---- Error handling --------------------------------------------------------------------------

// Raise RuntimeError("<context>: <CUDA error name>: <CUDA error text>") when a call failed.
void CheckCuda(cudaError_t status, const std::string& context) {
  if (status == cudaSuccess) return;
  // The runtime also remembers the error for the next cudaGetLastError(); clear it so that the
  // check after an unrelated, later kernel launch does not report this failure a second time.
  cudaGetLastError();
  throw std::runtime_error(context + ": " + cudaGetErrorName(status) + ": " +
                           cudaGetErrorString(status));
}

// Call right after a kernel launch: a bad launch configuration (or an error left by an earlier
// asynchronous kernel) is reported here rather than at some later, unrelated call.
void CheckLaunch(const std::string& kernel_name) {
  CheckCuda(cudaGetLastError(), kernel_name + ": kernel launch failed");
}

// ---- GPU memory --------------------------------------------------------------------------------

// A flat buffer of `size` float32 values in GPU memory (cudaMalloc, never managed memory).
// Contents are undefined until written. The Python object owns the memory.
struct CudaArray {
  explicit CudaArray(size_t size) : size(size) {
    if (size == 0) return;  // nothing to allocate; ptr stays null and no kernel dereferences it
    CheckCuda(cudaMalloc(&ptr, size * kElemSize),
              "Array(" + std::to_string(size) + "): cudaMalloc of " +
                  std::to_string(size * kElemSize) + " bytes");
  }
  ~CudaArray() {
    // Destructors must not throw; a failure here (e.g. the runtime unloading at interpreter
    // exit) is cleared so that it is not blamed on the next kernel launch.
    if (ptr != nullptr && cudaFree(ptr) != cudaSuccess) cudaGetLastError();
  }
  CudaArray(const CudaArray&) = delete;
  CudaArray& operator=(const CudaArray&) = delete;

  size_t ptr_as_int() const { return reinterpret_cast<size_t>(ptr); }

  scalar_t* ptr = nullptr;
  size_t size;
};

// ---- Launch configurations and kernel helpers ------------------------------------------------

struct CudaDims {
  dim3 block, grid;
};

// A 1-D launch with (up to) one thread per element, for kernels that loop with a grid stride.
// The grid is never empty (launching zero blocks is an error); with size 0 the kernels' loops
// simply do nothing.
CudaDims CudaOneDim(size_t size) {
  const size_t blocks = (size + kBaseThreadNum - 1) / kBaseThreadNum;
  CudaDims dims;
  dims.block = dim3(kBaseThreadNum, 1, 1);
  dims.grid = dim3(static_cast<unsigned int>(std::clamp<size_t>(blocks, 1, kMaxGridBlocks)), 1, 1);
  return dims;
}

// This thread's index in a 1-D grid, and the number of threads in the grid. Computed in size_t:
// blockIdx.x * blockDim.x in 32-bit unsigned arithmetic would wrap for large grids.
__device__ __forceinline__ size_t GlobalThreadIndex() {
  return static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t GridThreadCount() {
  return static_cast<size_t>(gridDim.x) * blockDim.x;
}

// Shapes and strides travel to the kernels by value, inside the kernel's parameter block: a
// fixed-size struct needs no cudaMalloc/cudaMemcpy and every thread reads it for free.
struct CudaVec {
  uint32_t size;
  int64_t data[kMaxVecSize];
};

CudaVec VecToCuda(const std::vector<int64_t>& values) {
  if (values.size() > static_cast<size_t>(kMaxVecSize)) {
    throw std::invalid_argument("the CUDA backend supports at most " +
                                std::to_string(kMaxVecSize) + " dimensions, got " +
                                std::to_string(values.size()));
  }
  CudaVec vec;
  vec.size = static_cast<uint32_t>(values.size());
  for (size_t i = 0; i < values.size(); ++i) vec.data[i] = values[i];
  return vec;
}

// ---- Argument checks (host side, before any GPU work) -----------------------------------------

// Which elements of a buffer a strided view touches: first/last are the lowest and highest
// element positions (meaningful only when num_elements > 0).
struct ViewExtent {
  size_t num_elements;
  int64_t first;
  int64_t last;
};

// Check that the view (shape, strides, offset) lies inside a buffer of buffer_size elements.
// An out-of-bounds view would make a kernel read or write outside its allocation, which on a
// GPU is at best a crash that breaks the CUDA context for the rest of the process.
ViewExtent CheckView(const std::string& op, size_t buffer_size, const std::vector<int64_t>& shape,
                     const std::vector<int64_t>& strides, size_t offset) {
  if (shape.size() != strides.size()) {
    throw std::invalid_argument(op + ": shape has " + std::to_string(shape.size()) +
                                " dimensions but strides has " + std::to_string(strides.size()));
  }
  ViewExtent extent{1, static_cast<int64_t>(offset), static_cast<int64_t>(offset)};
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) {
      throw std::invalid_argument(op + ": negative dimension " + std::to_string(shape[d]));
    }
    extent.num_elements *= static_cast<size_t>(shape[d]);
    const int64_t reach = (shape[d] - 1) * strides[d];  // from index 0 to the last index
    if (reach < 0) {
      extent.first += reach;
    } else {
      extent.last += reach;
    }
  }
  if (extent.num_elements == 0) return extent;  // an empty view touches nothing
  if (extent.first < 0 || extent.last >= static_cast<int64_t>(buffer_size)) {
    throw std::invalid_argument(op + ": the strided view reaches elements " +
                                std::to_string(extent.first) + ".." + std::to_string(extent.last) +
                                " of a buffer of " + std::to_string(buffer_size) + " elements");
  }
  return extent;
}

void CheckSize(const std::string& op, const char* name, size_t size, size_t expected) {
  if (size != expected) {
    throw std::invalid_argument(op + ": " + name + " has " + std::to_string(size) +
                                " elements, expected " + std::to_string(expected));
  }
}

void CheckAtLeast(const std::string& op, const char* name, size_t size, size_t needed) {
  if (size < needed) {
    throw std::invalid_argument(op + ": " + name + " has " + std::to_string(size) +
                                " elements, needs at least " + std::to_string(needed));
  }
}

// ---- fill (provided) ------------------------------------------------------------------------

__global__ void FillKernel(scalar_t* out, scalar_t val, size_t size) {
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) out[i] = val;
}

// out[i] = val for every element.
void Fill(CudaArray* out, scalar_t val) {
  CudaDims dim = CudaOneDim(out->size);
  FillKernel<<<dim.grid, dim.block>>>(out->ptr, val, out->size);
  CheckLaunch("fill");
}

// ---- compact and setitem ----------------------------------------------------------------------
//
// The i-th element (in row-major order) of a view with shape (s_0, ..., s_{k-1}) sits at
//   offset + sum_d idx_d * strides[d]
// where idx_d are the digits of i in the mixed radix given by the shape (idx_{k-1} varies
// fastest). On a GPU there is no "next index" loop: each thread decodes its own i directly.

// Position in the buffer of element number `index` of the view (shape, strides, offset).
__device__ int64_t StridedPosition(size_t index, const CudaVec& shape, const CudaVec& strides,
                                   size_t offset) {
  // BEGIN YOUR SOLUTION (hw3)
  int64_t position = static_cast<int64_t>(offset);
  // Peel digits off from the last (fastest) dimension. The loop runs over the fixed capacity
  // with a guard, so the compiler unrolls it and indexes shape/strides with constants.
#pragma unroll
  for (int d = kMaxVecSize - 1; d >= 0; --d) {
    if (d < static_cast<int>(shape.size)) {
      const size_t extent = static_cast<size_t>(shape.data[d]);
      const size_t quotient = index / extent;
      position += static_cast<int64_t>(index - quotient * extent) * strides.data[d];
      index = quotient;
    }
  }
  return position;
  // END YOUR SOLUTION
}

// out[i] = a[StridedPosition(i)] for i < size: gather a strided view into a compact buffer.
__global__ void CompactKernel(const scalar_t* a, scalar_t* out, size_t size, CudaVec shape,
                              CudaVec strides, size_t offset) {
  // BEGIN YOUR SOLUTION (hw3)
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) {
    out[i] = a[StridedPosition(i, shape, strides, offset)];
  }
  // END YOUR SOLUTION
}

// Gather the strided view (shape, strides, offset) of `a` into the compact buffer `out`.
void Compact(const CudaArray& a, CudaArray* out, std::vector<int64_t> shape,
             std::vector<int64_t> strides, size_t offset) {
  const ViewExtent view = CheckView("compact", a.size, shape, strides, offset);
  CheckSize("compact", "out", out->size, view.num_elements);
  CudaDims dim = CudaOneDim(out->size);
  CompactKernel<<<dim.grid, dim.block>>>(a.ptr, out->ptr, out->size, VecToCuda(shape),
                                         VecToCuda(strides), offset);
  CheckLaunch("compact");
}

// out[StridedPosition(i)] = a[i] for i < size: compact in reverse (a scatter).
__global__ void EwiseSetitemKernel(const scalar_t* a, scalar_t* out, size_t size, CudaVec shape,
                                   CudaVec strides, size_t offset) {
  // BEGIN YOUR SOLUTION (hw3)
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) {
    out[StridedPosition(i, shape, strides, offset)] = a[i];
  }
  // END YOUR SOLUTION
}

void LaunchEwiseSetitem(const CudaArray& a, CudaArray* out, size_t size, const CudaVec& shape,
                        const CudaVec& strides, size_t offset) {
  // BEGIN YOUR SOLUTION (hw3)
  CudaDims dim = CudaOneDim(size);
  EwiseSetitemKernel<<<dim.grid, dim.block>>>(a.ptr, out->ptr, size, shape, strides, offset);
  CheckLaunch("ewise_setitem");
  // END YOUR SOLUTION
}

// Scatter the compact buffer `a` into the strided view (shape, strides, offset) of `out`.
// (If the view maps two indices to one position, e.g. a zero stride, which value wins is
// unspecified, as for the numpy backend.)
void EwiseSetitem(const CudaArray& a, CudaArray* out, std::vector<int64_t> shape,
                  std::vector<int64_t> strides, size_t offset) {
  const ViewExtent view = CheckView("ewise_setitem", out->size, shape, strides, offset);
  CheckAtLeast("ewise_setitem", "a", a.size, view.num_elements);
  LaunchEwiseSetitem(a, out, view.num_elements, VecToCuda(shape), VecToCuda(strides), offset);
}

// out[StridedPosition(i)] = val for i < size.
__global__ void ScalarSetitemKernel(size_t size, scalar_t val, scalar_t* out, CudaVec shape,
                                    CudaVec strides, size_t offset) {
  // BEGIN YOUR SOLUTION (hw3)
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) {
    out[StridedPosition(i, shape, strides, offset)] = val;
  }
  // END YOUR SOLUTION
}

void LaunchScalarSetitem(size_t size, scalar_t val, CudaArray* out, const CudaVec& shape,
                         const CudaVec& strides, size_t offset) {
  // BEGIN YOUR SOLUTION (hw3)
  CudaDims dim = CudaOneDim(size);
  ScalarSetitemKernel<<<dim.grid, dim.block>>>(size, val, out->ptr, shape, strides, offset);
  CheckLaunch("scalar_setitem");
  // END YOUR SOLUTION
}

// Set the `size` elements of the strided view (shape, strides, offset) of `out` to `val`.
void ScalarSetitem(size_t size, scalar_t val, CudaArray* out, std::vector<int64_t> shape,
                   std::vector<int64_t> strides, size_t offset) {
  const ViewExtent view = CheckView("scalar_setitem", out->size, shape, strides, offset);
  if (size != view.num_elements) {
    throw std::invalid_argument("scalar_setitem: size is " + std::to_string(size) +
                                " but the view has " + std::to_string(view.num_elements) +
                                " elements");
  }
  LaunchScalarSetitem(size, val, out, VecToCuda(shape), VecToCuda(strides), offset);
}

// ---- Element-wise operations ------------------------------------------------------------------
//
// Addition is the worked example: a kernel and its launch, written out in full. The other
// operations share three kernel templates (binary on two arrays, binary with a scalar, unary),
// instantiated with a functor that holds the scalar math.

__global__ void EwiseAddKernel(const scalar_t* a, const scalar_t* b, scalar_t* out, size_t size) {
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) out[i] = a[i] + b[i];
}

// out[i] = a[i] + b[i]
void EwiseAdd(const CudaArray& a, const CudaArray& b, CudaArray* out) {
  CheckSize("ewise_add", "a", a.size, out->size);
  CheckSize("ewise_add", "b", b.size, out->size);
  CudaDims dim = CudaOneDim(out->size);
  EwiseAddKernel<<<dim.grid, dim.block>>>(a.ptr, b.ptr, out->ptr, out->size);
  CheckLaunch("ewise_add");
}

__global__ void ScalarAddKernel(const scalar_t* a, scalar_t val, scalar_t* out, size_t size) {
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) out[i] = a[i] + val;
}

// out[i] = a[i] + val
void ScalarAdd(const CudaArray& a, scalar_t val, CudaArray* out) {
  CheckSize("scalar_add", "a", a.size, out->size);
  CudaDims dim = CudaOneDim(out->size);
  ScalarAddKernel<<<dim.grid, dim.block>>>(a.ptr, val, out->ptr, out->size);
  CheckLaunch("scalar_add");
}

// The scalar math of each operation (provided). kName names the Python functions
// ewise_<kName> / scalar_<kName> in error messages. The module registers the templates below
// instantiated with these functors, one per line of kernel_list.h: <Name>Op for the entry
// NEEDLE_BINARY_KERNEL(name, Name) or NEEDLE_UNARY_KERNEL(name, Name).
struct AddOp {  // add has its own kernels, the worked examples above (see EwiseBinary<AddOp>)
  static constexpr const char* kName = "add";
  __device__ scalar_t operator()(scalar_t x, scalar_t y) const { return x + y; }
};
struct MulOp {
  static constexpr const char* kName = "mul";
  __device__ scalar_t operator()(scalar_t x, scalar_t y) const { return x * y; }
};
struct DivOp {
  static constexpr const char* kName = "div";
  __device__ scalar_t operator()(scalar_t x, scalar_t y) const { return x / y; }
};
struct PowerOp {
  static constexpr const char* kName = "power";
  __device__ scalar_t operator()(scalar_t x, scalar_t y) const { return powf(x, y); }
};
struct MaximumOp {
  static constexpr const char* kName = "maximum";
  // Like numpy.maximum, a NaN in either input gives NaN.
  __device__ scalar_t operator()(scalar_t x, scalar_t y) const {
    return (x > y || isnan(x)) ? x : y;
  }
};
struct EqOp {
  static constexpr const char* kName = "eq";
  __device__ scalar_t operator()(scalar_t x, scalar_t y) const { return x == y ? 1.0f : 0.0f; }
};
struct GeOp {
  static constexpr const char* kName = "ge";
  __device__ scalar_t operator()(scalar_t x, scalar_t y) const { return x >= y ? 1.0f : 0.0f; }
};
struct LogOp {
  static constexpr const char* kName = "log";
  __device__ scalar_t operator()(scalar_t x) const { return logf(x); }
};
struct ExpOp {
  static constexpr const char* kName = "exp";
  __device__ scalar_t operator()(scalar_t x) const { return expf(x); }
};
struct TanhOp {
  static constexpr const char* kName = "tanh";
  __device__ scalar_t operator()(scalar_t x) const { return tanhf(x); }
};

// out[i] = Op(a[i], b[i]) for i < size.
template <typename Op>
__global__ void EwiseBinaryKernel(const scalar_t* a, const scalar_t* b, scalar_t* out,
                                  size_t size) {
  // BEGIN YOUR SOLUTION (hw3)
  const Op op{};
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) out[i] = op(a[i], b[i]);
  // END YOUR SOLUTION
}

// out[i] = Op(a[i], val) for i < size.
template <typename Op>
__global__ void ScalarBinaryKernel(const scalar_t* a, scalar_t val, scalar_t* out, size_t size) {
  // BEGIN YOUR SOLUTION (hw3)
  const Op op{};
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) out[i] = op(a[i], val);
  // END YOUR SOLUTION
}

// out[i] = Op(a[i]) for i < size.
template <typename Op>
__global__ void EwiseUnaryKernel(const scalar_t* a, scalar_t* out, size_t size) {
  // BEGIN YOUR SOLUTION (hw3)
  const Op op{};
  for (size_t i = GlobalThreadIndex(); i < size; i += GridThreadCount()) out[i] = op(a[i]);
  // END YOUR SOLUTION
}

template <typename Op>
void LaunchEwiseBinary(const CudaArray& a, const CudaArray& b, CudaArray* out) {
  // BEGIN YOUR SOLUTION (hw3)
  CudaDims dim = CudaOneDim(out->size);
  EwiseBinaryKernel<Op><<<dim.grid, dim.block>>>(a.ptr, b.ptr, out->ptr, out->size);
  CheckLaunch(std::string("ewise_") + Op::kName);
  // END YOUR SOLUTION
}

template <typename Op>
void LaunchScalarBinary(const CudaArray& a, scalar_t val, CudaArray* out) {
  // BEGIN YOUR SOLUTION (hw3)
  CudaDims dim = CudaOneDim(out->size);
  ScalarBinaryKernel<Op><<<dim.grid, dim.block>>>(a.ptr, val, out->ptr, out->size);
  CheckLaunch(std::string("scalar_") + Op::kName);
  // END YOUR SOLUTION
}

template <typename Op>
void LaunchEwiseUnary(const CudaArray& a, CudaArray* out) {
  // BEGIN YOUR SOLUTION (hw3)
  CudaDims dim = CudaOneDim(out->size);
  EwiseUnaryKernel<Op><<<dim.grid, dim.block>>>(a.ptr, out->ptr, out->size);
  CheckLaunch(std::string("ewise_") + Op::kName);
  // END YOUR SOLUTION
}

// The functions Python calls (ewise_mul, scalar_mul, ..., ewise_log, ...): check, then launch.
template <typename Op>
void EwiseBinary(const CudaArray& a, const CudaArray& b, CudaArray* out) {
  const std::string name = std::string("ewise_") + Op::kName;
  CheckSize(name, "a", a.size, out->size);
  CheckSize(name, "b", b.size, out->size);
  LaunchEwiseBinary<Op>(a, b, out);
}

template <typename Op>
void ScalarBinary(const CudaArray& a, scalar_t val, CudaArray* out) {
  CheckSize(std::string("scalar_") + Op::kName, "a", a.size, out->size);
  LaunchScalarBinary<Op>(a, val, out);
}

template <typename Op>
void EwiseUnary(const CudaArray& a, CudaArray* out) {
  CheckSize(std::string("ewise_") + Op::kName, "a", a.size, out->size);
  LaunchEwiseUnary<Op>(a, out);
}

// Addition runs the worked examples EwiseAdd / ScalarAdd rather than the templates.
template <>
void EwiseBinary<AddOp>(const CudaArray& a, const CudaArray& b, CudaArray* out) {
  EwiseAdd(a, b, out);
}

template <>
void ScalarBinary<AddOp>(const CudaArray& a, scalar_t val, CudaArray* out) {
  ScalarAdd(a, val, out);
}

// ---- Matrix multiplication ---------------------------------------------------------------------
//
// out (m x p) = a (m x n) @ b (n x p), all compact row-major, any sizes.
//
// Tiling. Each thread block computes one 64 x 64 tile of `out`. It walks along the shared
// dimension in steps of 16: the block's 256 threads cooperatively copy a 64 x 16 slab of `a` and
// a 16 x 64 slab of `b` into shared memory (each global value is read once per block instead of
// once per output it contributes to), wait at a barrier, multiply the slabs, and wait again
// before the next copy overwrites them. Entries outside the matrices are loaded as zeros, so
// ragged edges need no special case in the multiply loop.
//
// Register blocking. The 256 threads form a 16 x 16 grid; thread (ty, tx) owns the 4 x 4 outputs
// at tile rows ty + 16 i and tile columns tx + 16 j (i, j = 0..3), accumulated in registers.
// For each k of the slab a thread loads 4 values of the `a` slab and 4 of the `b` slab into
// registers and does 16 multiply-adds: 2 FMAs per shared-memory load instead of 1/2 for one
// output per thread. The interleaved (ty + 16 i) layout makes the threads of a warp read either
// the same shared word (a broadcast) or 16 consecutive words, so reads have no bank conflicts,
// and the final stores of a half-warp go to 16 consecutive floats of `out`.
//
// Shared layout. The `a` slab is stored transposed (a_tile[k][row]) so the 4 values a thread
// needs for one k are in one row of the array. Its rows are padded to 66 floats: while copying,
// a warp writes 16 k's x 2 rows, and with a row length of 66 = 2 (mod 32) those 32 writes fall
// into 32 different banks (with 64 they would all hit 2 banks).

constexpr int kMatmulTileRows = 64;     // rows of `out` per block
constexpr int kMatmulTileCols = 64;     // columns of `out` per block
constexpr int kMatmulTileDepth = 16;    // step along the shared dimension n
constexpr int kMatmulThreadRows = 4;    // outputs per thread, vertically
constexpr int kMatmulThreadCols = 4;    // outputs per thread, horizontally
constexpr int kMatmulThreadsY = kMatmulTileRows / kMatmulThreadRows;  // 16
constexpr int kMatmulThreadsX = kMatmulTileCols / kMatmulThreadCols;  // 16
constexpr int kMatmulThreads = kMatmulThreadsY * kMatmulThreadsX;     // 256
static_assert(kMatmulTileRows * kMatmulTileDepth % kMatmulThreads == 0, "a slab per thread");
static_assert(kMatmulTileDepth * kMatmulTileCols % kMatmulThreads == 0, "b slab per thread");

// Launched as a 1-D grid of kMatmulThreads-thread blocks; each block loops over output tiles
// (blockIdx.x, blockIdx.x + gridDim.x, ...), so any m and p fit in the grid limits.
__global__ void __launch_bounds__(kMatmulThreads)
    MatmulKernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                 scalar_t* __restrict__ out, size_t m, size_t n, size_t p) {
  // BEGIN YOUR SOLUTION (hw3)
  constexpr int kATilePitch = kMatmulTileRows + 2;  // padded row length, see above
  __shared__ scalar_t a_tile[kMatmulTileDepth][kATilePitch];  // a_tile[k][row]
  __shared__ scalar_t b_tile[kMatmulTileDepth][kMatmulTileCols];  // b_tile[k][col]

  const int tid = threadIdx.x;
  const int ty = tid / kMatmulThreadsX;
  const int tx = tid % kMatmulThreadsX;
  const size_t tiles_across = (p + kMatmulTileCols - 1) / kMatmulTileCols;
  const size_t num_tiles = (m + kMatmulTileRows - 1) / kMatmulTileRows * tiles_across;

  // The loop bounds depend only on blockIdx, so every thread of a block reaches each barrier.
  for (size_t tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
    const size_t row0 = tile / tiles_across * kMatmulTileRows;
    const size_t col0 = tile % tiles_across * kMatmulTileCols;

    scalar_t acc[kMatmulThreadRows][kMatmulThreadCols];
#pragma unroll
    for (int i = 0; i < kMatmulThreadRows; ++i) {
#pragma unroll
      for (int j = 0; j < kMatmulThreadCols; ++j) acc[i][j] = 0.0f;
    }

    for (size_t k0 = 0; k0 < n; k0 += kMatmulTileDepth) {
      // Copy the 64 x 16 slab a[row0.., k0..]: consecutive threads take consecutive k's of a
      // row, so a half-warp reads 16 neighbouring floats of `a` (a coalesced access).
#pragma unroll
      for (int s = 0; s < kMatmulTileRows * kMatmulTileDepth / kMatmulThreads; ++s) {
        const int idx = tid + s * kMatmulThreads;
        const int r = idx / kMatmulTileDepth;
        const int k = idx % kMatmulTileDepth;
        const size_t row = row0 + r;
        const size_t col = k0 + k;
        a_tile[k][r] = (row < m && col < n) ? a[row * n + col] : 0.0f;
      }
      // Copy the 16 x 64 slab b[k0.., col0..]: a warp reads 32 neighbouring floats of a row.
#pragma unroll
      for (int s = 0; s < kMatmulTileDepth * kMatmulTileCols / kMatmulThreads; ++s) {
        const int idx = tid + s * kMatmulThreads;
        const int k = idx / kMatmulTileCols;
        const int c = idx % kMatmulTileCols;
        const size_t row = k0 + k;
        const size_t col = col0 + c;
        b_tile[k][c] = (row < n && col < p) ? b[row * p + col] : 0.0f;
      }
      __syncthreads();  // the slabs are complete before anyone reads them

#pragma unroll
      for (int k = 0; k < kMatmulTileDepth; ++k) {
        scalar_t a_frag[kMatmulThreadRows];
        scalar_t b_frag[kMatmulThreadCols];
#pragma unroll
        for (int i = 0; i < kMatmulThreadRows; ++i) a_frag[i] = a_tile[k][ty + i * kMatmulThreadsY];
#pragma unroll
        for (int j = 0; j < kMatmulThreadCols; ++j) b_frag[j] = b_tile[k][tx + j * kMatmulThreadsX];
#pragma unroll
        for (int i = 0; i < kMatmulThreadRows; ++i) {
#pragma unroll
          for (int j = 0; j < kMatmulThreadCols; ++j) acc[i][j] += a_frag[i] * b_frag[j];
        }
      }
      __syncthreads();  // everyone is done with the slabs before the next copy overwrites them
    }

#pragma unroll
    for (int i = 0; i < kMatmulThreadRows; ++i) {
      const size_t row = row0 + ty + i * kMatmulThreadsY;
#pragma unroll
      for (int j = 0; j < kMatmulThreadCols; ++j) {
        const size_t col = col0 + tx + j * kMatmulThreadsX;
        if (row < m && col < p) out[row * p + col] = acc[i][j];
      }
    }
  }
  // END YOUR SOLUTION
}

void LaunchMatmul(const CudaArray& a, const CudaArray& b, CudaArray* out, size_t m, size_t n,
                  size_t p) {
  // BEGIN YOUR SOLUTION (hw3)
  if (m == 0 || p == 0) return;  // no outputs (n == 0 is fine: the kernel writes zeros)
  const size_t num_tiles = ((m + kMatmulTileRows - 1) / kMatmulTileRows) *
                           ((p + kMatmulTileCols - 1) / kMatmulTileCols);
  const unsigned int blocks =
      static_cast<unsigned int>(std::min<size_t>(num_tiles, static_cast<size_t>(INT32_MAX)));
  MatmulKernel<<<blocks, kMatmulThreads>>>(a.ptr, b.ptr, out->ptr, m, n, p);
  CheckLaunch("matmul");
  // END YOUR SOLUTION
}

// out (m x p) = a (m x n) @ b (n x p); the buffers may be longer than the matrices.
void Matmul(const CudaArray& a, const CudaArray& b, CudaArray* out, size_t m, size_t n,
            size_t p) {
  CheckAtLeast("matmul", "a", a.size, m * n);
  CheckAtLeast("matmul", "b", b.size, n * p);
  CheckAtLeast("matmul", "out", out->size, m * p);
  LaunchMatmul(a, b, out, m, n, p);
}

// ---- Reductions -------------------------------------------------------------------------------
//
// out[i] = reduce(a[i * reduce_size], ..., a[i * reduce_size + reduce_size - 1]).
//
// Short rows (< 32 elements): one thread per output walks its row. Longer rows: one warp per
// row; its 32 lanes read 32 neighbouring elements at a time (coalesced), each keeps a running
// result, and the lanes then combine their results with register shuffles. When there are few
// long rows (say, the sum of a whole 10^8-element array), a warp per row would leave most of the
// GPU idle, so each row is first cut into segments of 4096 elements, one warp per
// segment writing a partial result to a temporary buffer, which is then reduced the same way.

struct SumReduce {
  __device__ static scalar_t Identity() { return 0.0f; }
  __device__ static scalar_t Combine(scalar_t x, scalar_t y) { return x + y; }
};
struct MaxReduce {
  __device__ static scalar_t Identity() { return -INFINITY; }
  // Like numpy.max, a NaN anywhere in the row gives NaN.
  __device__ static scalar_t Combine(scalar_t x, scalar_t y) {
    return (x > y || isnan(x)) ? x : y;
  }
};

// One thread per output: out[row] = reduce(a[row * reduce_size + k] for k < reduce_size).
template <typename Reduce>
__global__ void ReduceRowsPerThreadKernel(const scalar_t* a, scalar_t* out, size_t reduce_size,
                                          size_t num_rows) {
  // BEGIN YOUR SOLUTION (hw3)
  for (size_t row = GlobalThreadIndex(); row < num_rows; row += GridThreadCount()) {
    const scalar_t* values = a + row * reduce_size;
    scalar_t result = Reduce::Identity();
    for (size_t k = 0; k < reduce_size; ++k) result = Reduce::Combine(result, values[k]);
    out[row] = result;
  }
  // END YOUR SOLUTION
}

// One warp per segment. The rows of `a` have reduce_size elements; each row is cut into
// segments_per_row segments of segment_length elements (the last one may be shorter), and
// out[row * segments_per_row + s] = reduce(segment s of row `row`). With segments_per_row == 1
// and segment_length == reduce_size this is a plain warp-per-row reduction.
// The block size must be a multiple of 32 so that all 32 lanes of a warp work on one segment.
template <typename Reduce>
__global__ void ReduceSegmentsPerWarpKernel(const scalar_t* a, scalar_t* out, size_t reduce_size,
                                            size_t segment_length, size_t segments_per_row,
                                            size_t num_segments) {
  // BEGIN YOUR SOLUTION (hw3)
  const unsigned int lane = threadIdx.x % kWarpSize;
  const size_t warp_count = GridThreadCount() / kWarpSize;
  // The loop bound is the same for the 32 lanes of a warp, so all of them reach the shuffles.
  for (size_t segment = GlobalThreadIndex() / kWarpSize; segment < num_segments;
       segment += warp_count) {
    const size_t row = segment / segments_per_row;
    const size_t start = (segment - row * segments_per_row) * segment_length;
    const size_t segment_end = start + segment_length;
    const size_t stop = segment_end < reduce_size ? segment_end : reduce_size;
    const scalar_t* values = a + row * reduce_size;

    scalar_t result = Reduce::Identity();
    for (size_t k = start + lane; k < stop; k += kWarpSize) {
      result = Reduce::Combine(result, values[k]);
    }
    // Butterfly: after the steps 16, 8, 4, 2, 1 every lane holds the result of all 32.
#pragma unroll
    for (int step = kWarpSize / 2; step > 0; step /= 2) {
      result = Reduce::Combine(result, __shfl_xor_sync(0xffffffffu, result, step));
    }
    if (lane == 0) out[segment] = result;
  }
  // END YOUR SOLUTION
}

template <typename Reduce>
void LaunchReduce(const CudaArray& a, CudaArray* out, size_t reduce_size) {
  // BEGIN YOUR SOLUTION (hw3)
  constexpr size_t kReduceWarpMin = kWarpSize;  // rows at least this long get a warp each
  constexpr size_t kReduceFewRows = 1024;       // fewer rows than this: split long rows
  constexpr size_t kReduceSegment = 4096;       // elements per warp when splitting
  constexpr size_t kWarpsPerBlock = kBaseThreadNum / kWarpSize;
  const size_t num_rows = out->size;
  if (num_rows == 0) return;
  auto launch_warps = [](const scalar_t* input, scalar_t* output, size_t row_length,
                         size_t segment_length, size_t segments_per_row, size_t num_segments) {
    const size_t blocks = (num_segments + kWarpsPerBlock - 1) / kWarpsPerBlock;
    const dim3 grid(static_cast<unsigned int>(std::clamp<size_t>(blocks, 1, kMaxGridBlocks)));
    ReduceSegmentsPerWarpKernel<Reduce><<<grid, kBaseThreadNum>>>(
        input, output, row_length, segment_length, segments_per_row, num_segments);
    CheckLaunch("reduce (one warp per segment)");
  };

  // Few long rows: replace each row by the partial results of its segments until the rows are
  // short (one pass takes 10^8 elements to ~24000 partials, a second pass to 6).
  const scalar_t* input = a.ptr;
  size_t row_length = reduce_size;
  std::vector<std::unique_ptr<CudaArray>> partials;
  while (num_rows < kReduceFewRows && row_length > kReduceSegment) {
    const size_t segments_per_row = (row_length + kReduceSegment - 1) / kReduceSegment;
    partials.push_back(std::make_unique<CudaArray>(num_rows * segments_per_row));
    launch_warps(input, partials.back()->ptr, row_length, kReduceSegment, segments_per_row,
                 num_rows * segments_per_row);
    input = partials.back()->ptr;
    row_length = segments_per_row;
  }

  if (row_length < kReduceWarpMin) {
    CudaDims dim = CudaOneDim(num_rows);
    ReduceRowsPerThreadKernel<Reduce><<<dim.grid, dim.block>>>(input, out->ptr, row_length,
                                                                num_rows);
    CheckLaunch("reduce (one thread per row)");
  } else {
    launch_warps(input, out->ptr, row_length, row_length, 1, num_rows);
  }
  // The temporary buffers are freed when `partials` goes out of scope; wait for the kernels
  // that read them first, so no kernel can ever see freed memory.
  if (!partials.empty()) CheckCuda(cudaDeviceSynchronize(), "reduce: cudaDeviceSynchronize");
  // END YOUR SOLUTION
}

// out[i] = sum of the i-th block of reduce_size consecutive elements of a (0 for empty blocks).
void ReduceSum(const CudaArray& a, CudaArray* out, size_t reduce_size) {
  CheckAtLeast("reduce_sum", "a", a.size, out->size * reduce_size);
  LaunchReduce<SumReduce>(a, out, reduce_size);
}

// out[i] = max of the i-th block of reduce_size consecutive elements of a.
void ReduceMax(const CudaArray& a, CudaArray* out, size_t reduce_size) {
  CheckAtLeast("reduce_max", "a", a.size, out->size * reduce_size);
  if (reduce_size == 0 && out->size > 0) {
    throw std::invalid_argument("reduce_max: the maximum of an empty block is undefined");
  }
  LaunchReduce<MaxReduce>(a, out, reduce_size);
}

// ---- Host <-> device copies and device queries (provided) ----------------------------------

// A new numpy array holding the strided view (shape, strides, offset) of `a`.
py::array_t<scalar_t> ToNumpy(const CudaArray& a, std::vector<int64_t> shape,
                              std::vector<int64_t> strides, size_t offset) {
  const ViewExtent view = CheckView("to_numpy", a.size, shape, strides, offset);
  std::vector<py::ssize_t> numpy_shape(shape.begin(), shape.end());
  if (view.num_elements == 0) return py::array_t<scalar_t>(numpy_shape);

  // Copy only the span of the buffer that the view touches, then let numpy apply the strides.
  const size_t span = static_cast<size_t>(view.last - view.first + 1);
  py::array_t<scalar_t> host(static_cast<py::ssize_t>(span));
  CheckCuda(cudaMemcpy(host.mutable_data(), a.ptr + view.first, span * kElemSize,
                       cudaMemcpyDeviceToHost),
            "to_numpy: cudaMemcpy from the device");
  std::vector<py::ssize_t> numpy_strides;  // numpy counts strides in bytes
  bool row_major = true;
  int64_t expected_stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    numpy_strides.insert(numpy_strides.begin(), strides[d] * static_cast<int64_t>(kElemSize));
    if (shape[d] != 1 && strides[d] != expected_stride) row_major = false;
    expected_stride *= shape[d];
  }
  // `strided` is a view into `host` and keeps it alive.
  py::array_t<scalar_t> strided(numpy_shape, numpy_strides,
                                host.data() + (static_cast<int64_t>(offset) - view.first), host);
  if (row_major) return strided;  // the copied span is exactly the view, in order
  return py::array_t<scalar_t>(strided.attr("copy")());
}

// Copy the values of a numpy array (row-major order, converted to float32) into `out`.
void FromNumpy(py::array_t<scalar_t, py::array::c_style | py::array::forcecast> a,
               CudaArray* out) {
  CheckSize("from_numpy", "the numpy array", static_cast<size_t>(a.size()), out->size);
  if (out->size == 0) return;
  CheckCuda(cudaMemcpy(out->ptr, a.data(), out->size * kElemSize, cudaMemcpyHostToDevice),
            "from_numpy: cudaMemcpy to the device");
}

// The number of CUDA devices; 0 when there is no GPU or no driver (never raises), so that
// importing this module and asking works on any machine.
int DeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // "no device" / "no driver" is an answer here, not an error to keep
    return 0;
  }
  return count;
}

// The name of the current CUDA device, e.g. "NVIDIA H100 80GB HBM3".
std::string DeviceName() {
  int device = 0;
  CheckCuda(cudaGetDevice(&device), "device_name: cudaGetDevice");
  cudaDeviceProp properties;
  CheckCuda(cudaGetDeviceProperties(&properties, device), "device_name: cudaGetDeviceProperties");
  return properties.name;
}

// Wait for all queued GPU work; raises RuntimeError if any of it failed.
void Synchronize() { CheckCuda(cudaDeviceSynchronize(), "synchronize: cudaDeviceSynchronize"); }

}  // namespace cuda
}  // namespace needle

PYBIND11_MODULE(ndarray_backend_cuda, m) {
  namespace py = pybind11;
  using namespace needle;
  using namespace cuda;
  using py::arg;

  m.doc() = "needle's CUDA kernel backend (float32 buffers in GPU memory)";
  m.attr("__device_name__") = "cuda";
  m.attr("__tile_size__") = kTile;

  py::class_<CudaArray>(m, "Array", "A flat float32 buffer in GPU memory (cudaMalloc).")
      .def(py::init<size_t>(), arg("size"))
      .def_readonly("size", &CudaArray::size)
      .def("ptr", &CudaArray::ptr_as_int, "The device address of the first element.");

  m.def("device_count", DeviceCount, "Number of CUDA devices (0 without a GPU or driver).");
  m.def("device_name", DeviceName, "Name of the current CUDA device.");
  m.def("synchronize", Synchronize, "Wait for all queued GPU work (raises on failures).");

  m.def("to_numpy", ToNumpy, arg("a"), arg("shape"), arg("strides"), arg("offset"));
  m.def("from_numpy", FromNumpy, arg("a"), arg("out"));

  // The kernels, from the shared list (kernel_list.h).
#define NEEDLE_KERNEL(name, Function, ARGS) m.def(#name, Function, ARGS);
#define NEEDLE_BINARY_KERNEL(name, Name)                     \
  m.def("ewise_" #name, EwiseBinary<Name##Op>, NEEDLE_ARGS_ZIP); \
  m.def("scalar_" #name, ScalarBinary<Name##Op>, NEEDLE_ARGS_SCALAR);
#define NEEDLE_UNARY_KERNEL(name, Name) m.def("ewise_" #name, EwiseUnary<Name##Op>, NEEDLE_ARGS_MAP);
#include "kernel_list.h"
}
