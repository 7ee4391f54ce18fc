// A small CPU emulator of the CUDA runtime, for running needle's CUDA kernels on machines
// without a GPU (library/tests/test_backend_cuda.py builds ndarray_backend_cuda.cu against it
// in its slow test). It is a test tool: nothing in the real module uses it.
//
// Every CUDA thread is a fiber (ucontext). The threads of a block run one at a time, switching
// only at __syncthreads() and at warp shuffles; blocks run one after another, alternately in
// forward and reverse thread order. This finds wrong index maths (with wrong results or, under
// AddressSanitizer, out-of-bounds reports), missing barriers (a thread reading a shared tile
// before the others wrote it sees stale values), barriers or shuffles that only part of a
// block or warp reaches (reported as errors), and invalid launch configurations. Fresh device
// memory is filled with NaN bit patterns, so reading unwritten memory shows in results. It does
// not model timing, memory coalescing or races between blocks.
//
// Use: compile the .cu file as C++ with `kernel<<<grid, block>>>(args)` rewritten to
// `emu::Launch(grid, block, kernel, args)` and with this header as <cuda_runtime.h>.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

using std::isnan;

struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
};
struct cudaDeviceProp {
  char name[256];
};

namespace emu {
// The built-in variables of the thread that is running now.
inline dim3 thread_idx, block_idx, block_dim, grid_dim;
inline cudaError_t last_error = cudaSuccess;
inline long launches = 0;

// Scheduler state: one fiber (context, stack) per thread of the current block.
enum State { kRunnable, kBlockWait, kWarpWait, kDone };
struct Fiber {
  ucontext_t context;
  State state;
  unsigned int linear;
};
inline ucontext_t scheduler;
inline Fiber* current = nullptr;
inline std::vector<Fiber> fibers;
inline std::vector<std::vector<char>> stacks;
inline std::function<void()> body;
inline std::vector<float> shuffle_slots;
inline bool reverse_order = false;

[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "CUDA EMULATOR ERROR: %s\n", what.c_str());
  std::abort();
}

inline void Yield(State state) {
  current->state = state;
  swapcontext(&current->context, &scheduler);
}

inline void Entry() {
  body();
  current->state = kDone;
  swapcontext(&current->context, &scheduler);
}

inline void SetThreadIdx(unsigned int linear) {
  thread_idx = dim3(linear % block_dim.x, linear / block_dim.x % block_dim.y,
                    linear / (block_dim.x * block_dim.y));
}

// Run every thread of one block to completion: each pass runs every runnable thread until it
// waits or exits; then a warp whose 32 threads all wait at a shuffle, or else a block whose
// threads all wait at __syncthreads(), is released.
inline void RunBlock(unsigned int threads) {
  constexpr size_t kStack = 128 * 1024;
  if (stacks.size() < threads) stacks.resize(threads, std::vector<char>(kStack));
  fibers.assign(threads, Fiber{});
  shuffle_slots.assign(threads, 0.0f);
  for (unsigned int t = 0; t < threads; ++t) {
    Fiber& f = fibers[t];
    f.linear = t;
    f.state = kRunnable;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stacks[t].data();
    f.context.uc_stack.ss_size = kStack;
    f.context.uc_link = nullptr;
    makecontext(&f.context, Entry, 0);
  }
  reverse_order = !reverse_order;
  while (true) {
    for (unsigned int k = 0; k < threads; ++k) {
      const unsigned int t = reverse_order ? threads - 1 - k : k;
      if (fibers[t].state != kRunnable) continue;
      current = &fibers[t];
      SetThreadIdx(t);
      swapcontext(&scheduler, &fibers[t].context);
    }
    size_t done = 0, block_wait = 0;
    bool released = false;
    for (unsigned int w = 0; w * 32 < threads; ++w) {
      const unsigned int end = std::min(threads, w * 32 + 32);
      size_t warp_wait = 0;
      for (unsigned int t = w * 32; t < end; ++t) warp_wait += fibers[t].state == kWarpWait;
      if (warp_wait == 0) continue;
      if (warp_wait != end - w * 32) Fail("warp shuffle reached by only part of a warp");
      for (unsigned int t = w * 32; t < end; ++t) fibers[t].state = kRunnable;
      released = true;
    }
    if (released) continue;
    for (const Fiber& f : fibers) {
      done += f.state == kDone;
      block_wait += f.state == kBlockWait;
    }
    if (done == threads) break;
    if (done != 0) Fail("__syncthreads() reached while some threads of the block had exited");
    if (block_wait != threads) Fail("deadlock");
    for (Fiber& f : fibers) f.state = kRunnable;
  }
}

// kernel<<<grid, block>>>(args...): checks the configuration like the CUDA runtime (an invalid
// one sets the error that cudaGetLastError() returns), then runs the blocks one by one.
template <typename... Params, typename... Args>
void Launch(dim3 grid, dim3 block, void (*kernel)(Params...), Args&&... args) {
  ++launches;
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 ||
      grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 || block.z > 64) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  block_dim = block;
  grid_dim = grid;
  body = [&]() { kernel(args...); };
  for (unsigned int z = 0; z < grid.z; ++z)
    for (unsigned int y = 0; y < grid.y; ++y)
      for (unsigned int x = 0; x < grid.x; ++x) {
        block_idx = dim3(x, y, z);
        RunBlock(static_cast<unsigned int>(threads));
      }
  body = nullptr;
}

// Exchange values within a warp: every lane posts its value, waits for the whole warp, reads
// the source lane's value and waits again before any slot can be overwritten.
inline float Shuffle(float value, unsigned int source_lane) {
  const unsigned int me = current->linear;
  const unsigned int base = me / 32 * 32;
  shuffle_slots[me] = value;
  Yield(kWarpWait);
  const float result = shuffle_slots[base + source_lane % 32];
  Yield(kWarpWait);  // nobody overwrites a slot before every lane has read
  return result;
}
}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
constexpr int warpSize = 32;

inline void __syncthreads() { emu::Yield(emu::kBlockWait); }
inline float __shfl_xor_sync(unsigned int mask, float value, int lane_mask) {
  if (mask != 0xffffffffu) emu::Fail("partial shuffle masks are not emulated");
  return emu::Shuffle(value, (emu::current->linear % 32) ^ static_cast<unsigned int>(lane_mask));
}
inline float __shfl_down_sync(unsigned int mask, float value, unsigned int delta) {
  if (mask != 0xffffffffu) emu::Fail("partial shuffle masks are not emulated");
  const unsigned int lane = emu::current->linear % 32;
  return emu::Shuffle(value, lane + delta < 32 ? lane + delta : lane);
}

// ---- The runtime API calls the backend uses; device memory is host memory. ----
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
  }
  return "cudaErrorUnknown";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}
inline cudaError_t Record(cudaError_t e) {
  if (e != cudaSuccess) emu::last_error = e;
  return e;
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (bytes > (size_t(1) << 36)) return Record(cudaErrorMemoryAllocation);
  void* p = std::malloc(bytes == 0 ? 1 : bytes);
  if (p == nullptr) return Record(cudaErrorMemoryAllocation);
  std::memset(p, 0xff, bytes);  // NaN garbage: reading unwritten memory shows up in results
  *ptr = p;
  return cudaSuccess;
}
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
inline cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes != 0 && (dst == nullptr || src == nullptr)) return Record(cudaErrorInvalidValue);
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::snprintf(p->name, sizeof(p->name), "CPU emulator");
  return cudaSuccess;
}
