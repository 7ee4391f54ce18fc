// Threads and SIMD dispatch for the C++ CPU backend (provided code, not a homework part).
//
// Threads: a small pool of std::threads that the kernels use to split big loops. The calling
// thread always does a share of the work, so with one thread nothing is handed to the pool at
// all. The thread count comes from NEEDLE_NUM_THREADS, else OMP_NUM_THREADS, else the number
// of hardware threads, and can be changed at run time with set_num_threads(n).
//
// SIMD: the module is compiled for the baseline x86-64 ISA (SSE2), so it loads on any x86-64
// machine. Hot loops are additionally compiled for AVX2+FMA with a function attribute
// (NEEDLE_TARGET_AVX2) and chosen at run time when the CPU supports them
// (cpu_has_avx2_fma()). No -march=native: the build machine's CPU does not matter.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define NEEDLE_X86_DISPATCH 1
// Functions marked with this are compiled for AVX2+FMA whatever the build flags say; call them
// only when cpu_has_avx2_fma() is true.
#define NEEDLE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define NEEDLE_X86_DISPATCH 0
#define NEEDLE_TARGET_AVX2
#endif

#if defined(__GNUC__) || defined(__clang__)
// Forces a generic loop body into each ISA-specific wrapper, where it is then vectorised with
// that wrapper's instruction set.
#define NEEDLE_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define NEEDLE_ALWAYS_INLINE inline
#endif

namespace needle {
namespace cpu {

/// True when this CPU (not the build machine) can run the AVX2+FMA code paths, unless
/// NEEDLE_CPU_SIMD=baseline asks for the portable paths (to test them on an AVX2 machine).
inline bool cpu_has_avx2_fma() {
#if NEEDLE_X86_DISPATCH
  static const bool supported = [] {
    const char* choice = std::getenv("NEEDLE_CPU_SIMD");
    if (choice != nullptr && std::string(choice) == "baseline") return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return supported;
#else
  return false;
#endif
}

/// Thread count from the environment: NEEDLE_NUM_THREADS, OMP_NUM_THREADS, hardware threads.
inline int default_num_threads() {
  for (const char* name : {"NEEDLE_NUM_THREADS", "OMP_NUM_THREADS"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') {
      int n = std::atoi(value);
      if (n >= 1) return n;
    }
  }
  unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : static_cast<int>(hardware);
}

/// A fixed set of worker threads that run the tasks of one job at a time.
///
/// run(num_tasks, body) calls body(t) for every t in [0, num_tasks): the caller and the
/// workers take task numbers from a shared atomic counter until none are left, then the caller
/// waits for the stragglers. Every job gets its own counter object, so a worker that wakes up
/// late can never take a task from the next job. An exception thrown by a task (e.g.
/// std::bad_alloc) is re-thrown by run() in the calling thread once all tasks have ended.
class ThreadPool {
 public:
  explicit ThreadPool(int num_threads) { start(num_threads); }
  ~ThreadPool() { stop(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int num_threads) {
    std::lock_guard<std::mutex> submit(submit_mutex_);
    stop();
    start(num_threads);
  }

  void run(int64_t num_tasks, const std::function<void(int64_t)>& body) {
    // Inside a task (nested parallelism), with a single task, or while another Python thread
    // is using the pool (the kernels release the GIL), run everything on the calling thread.
    std::unique_lock<std::mutex> submit(submit_mutex_, std::try_to_lock);
    if (num_tasks <= 1 || workers_.empty() || in_pool_task() || !submit.owns_lock()) {
      for (int64_t t = 0; t < num_tasks; ++t) body(t);
      return;
    }
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->num_tasks = num_tasks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    work_on(*job);
    // The last tasks usually finish within microseconds: poll before going to sleep, since a
    // woken thread can wait a whole scheduler time slice for its core on a busy machine.
    auto all_done = [&] { return job->finished.load() == job->num_tasks; };
    spin_until(all_done);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, all_done);
      job_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  struct Job {
    const std::function<void(int64_t)>* body = nullptr;
    int64_t num_tasks = 0;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> finished{0};
    std::exception_ptr error;  // the first exception a task threw (guarded by error_mutex)
    std::mutex error_mutex;
  };

  /// Polls `ready` for a short while (tens of microseconds); returns whether it became true.
  /// Kernels hand out jobs in quick succession (a matmul packs, computes, packs again, ...), so
  /// a worker that stays awake that long catches the next job without a wake-up.
  template <class Ready>
  static bool spin_until(Ready ready) {
    for (int i = 0; i < kSpinPolls; ++i) {
      if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#else
      std::this_thread::yield();
#endif
    }
    return ready();
  }

  static bool& in_pool_task() {
    static thread_local bool flag = false;
    return flag;
  }

  void work_on(Job& job) {
    in_pool_task() = true;
    int64_t t;
    while ((t = job.next.fetch_add(1)) < job.num_tasks) {
      try {
        (*job.body)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(job.error_mutex);
        if (!job.error) job.error = std::current_exception();
      }
      if (job.finished.fetch_add(1) + 1 == job.num_tasks) {
        std::lock_guard<std::mutex> lock(mutex_);  // pairs with the caller's wait
        done_.notify_all();
      }
    }
    in_pool_task() = false;
  }

  void worker_loop() {
    uint64_t seen = 0;
    while (true) {
      std::shared_ptr<Job> job;
      spin_until([&] { return generation_.load() != seen || stopping_.load(); });
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        job = job_;
      }
      if (job) work_on(*job);
    }
  }

  void start(int num_threads) {
    stopping_ = false;
    for (int i = 1; i < std::max(1, num_threads); ++i) {
      workers_.emplace_back([this] { worker_loop(); });
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one job at a time
  std::mutex mutex_;  // guards job_ and the changes of generation_ and stopping_
  std::condition_variable wake_;
  std::condition_variable done_;
  std::shared_ptr<Job> job_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  static constexpr int kSpinPolls = 1000;  // x86 pause takes 20-50 ns: roughly 20-50 us
};

/// The process-wide pool, created on first use. After fork() the child has none of the
/// parent's threads, so a pool created in another process is abandoned (never joined: its
/// mutexes may have been copied while locked) and a fresh one is started.
inline ThreadPool& thread_pool(int resize_to = 0) {
  static std::mutex guard;
  static ThreadPool* pool = nullptr;
  static pid_t owner = 0;
  static int wanted = 0;
  std::lock_guard<std::mutex> lock(guard);
  if (resize_to > 0) wanted = resize_to;
  if (pool == nullptr || owner != getpid()) {
    // Deliberately leaked: destroying a pool during interpreter shutdown could block.
    pool = new ThreadPool(wanted > 0 ? wanted : default_num_threads());
    owner = getpid();
  } else if (resize_to > 0 && pool->num_threads() != resize_to) {
    pool->resize(resize_to);
  }
  return *pool;
}

inline int get_num_threads() { return thread_pool().num_threads(); }

inline void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  thread_pool(n);
}

/// Calls body(begin, end) on disjoint chunks covering [0, n), in parallel when n is big.
///
/// Uses at most one chunk per thread, and none smaller than min_chunk elements, so small
/// loops stay on the calling thread where a thread hand-off would cost more than it saves.
/// Chunk boundaries are multiples of `align` (e.g. 16 floats = one cache line).
template <class Body>
void parallel_for(int64_t n, int64_t min_chunk, Body&& body, int64_t align = 16) {
  if (n <= 0) return;
  ThreadPool& pool = thread_pool();
  int64_t chunks = std::min<int64_t>(pool.num_threads(), std::max<int64_t>(1, n / min_chunk));
  if (chunks <= 1) {
    body(int64_t{0}, n);
    return;
  }
  int64_t chunk = (n + chunks - 1) / chunks;
  chunk = (chunk + align - 1) / align * align;
  pool.run(chunks, [&](int64_t t) {
    int64_t begin = std::min(n, t * chunk);
    int64_t end = std::min(n, begin + chunk);
    if (begin < end) body(begin, end);
  });
}

}  // namespace cpu
}  // namespace needle
