// portarun's QMatMul for XLA on CPUs: y[R, N] = x[R, K] @ dequantize(W), W read as int8 or packed int4.
//
// Why a custom call: XLA:CPU does not fuse a convert into a dot, so a float dot over an int8 weight first
// writes a float copy of it, and its s8 x s8 dot (YNNPACK) runs at about half fp32's bytes per second.
// This kernel reads each weight byte once, widens it to float in registers and accumulates in float32
// (weight-only quantization: the activations stay float), which at batch 1 is bound by memory bandwidth,
// the point of quantizing. Built by portarun at first use with the machine's compiler (-march=native);
// see native.py.
//
// Layout (written by fusion._store_native): W [T, G, S, 64] int8, T tiles of 64 output columns
// (N zero-padded to T * 64), G blocks of K of B rows each (per channel: G = 1, B = K rounded up), S = B
// rows for 8-bit weights, B / 2 bytes for 4-bit ones whose low nibble holds row k and high nibble row
// k + B / 2 of the block, each nibble in offset binary (w + 8, so 0..15). scale [G, T * 64] float32; zero [G, T * 64] int8 or empty; x
// [R, G * B] float32 (zero-padded along K); y [R, N] float32. Shapes are checked, not trusted: an
// artifact is a file.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kTile = 64;  // output columns per tile: one 64-byte line of int8 weights per row of K
// Bytes ahead of the row being read to prefetch: the weight streams once from DRAM, and the hardware
// prefetcher restarts at every 4 KB page of a stream
// (a chained decode-shaped microbenchmark: 3-4% faster, within this 2-core machine's noise)
constexpr int64_t kPrefetch = 2048;

#if defined(__AVX512F__)
// acc[0:64] += the four 16-float vectors of one row's partial sums.
inline void AddTo(float* acc, const __m512 (&v)[4]) {
  for (int j = 0; j < 4; ++j) _mm512_storeu_ps(acc + 16 * j, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * j), v[j]));
}
#endif

// acc[0:64] += sum over rows k of x[k] * w[k, 0:64], w int8 rows of 64 with a stride of 64 bytes.
inline void RowsInt8(const float* x, const int8_t* w, int64_t rows, float* acc) {
#if defined(__AVX512F__)
  __m512 a[4], b[4];  // rows k and k + 1: eight independent FMA chains
  for (int j = 0; j < 4; ++j) a[j] = b[j] = _mm512_setzero_ps();
  auto widen = [](const int8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p))); };
  int64_t k = 0;
  for (; k + 1 < rows; k += 2) {
    const __m512 x0 = _mm512_set1_ps(x[k]), x1 = _mm512_set1_ps(x[k + 1]);
    const int8_t* p = w + k * kTile;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + 64), _MM_HINT_T0);
    for (int j = 0; j < 4; ++j) {
      a[j] = _mm512_fmadd_ps(x0, widen(p + 16 * j), a[j]);
      b[j] = _mm512_fmadd_ps(x1, widen(p + kTile + 16 * j), b[j]);
    }
  }
  for (; k < rows; ++k) {
    const __m512 x0 = _mm512_set1_ps(x[k]);
    const int8_t* p = w + k * kTile;
    for (int j = 0; j < 4; ++j) a[j] = _mm512_fmadd_ps(x0, widen(p + 16 * j), a[j]);
  }
  for (int j = 0; j < 4; ++j) a[j] = _mm512_add_ps(a[j], b[j]);
  AddTo(acc, a);
#elif defined(__AVX2__)
  __m256 a[8];
  for (auto& v : a) v = _mm256_setzero_ps();
  for (int64_t k = 0; k < rows; ++k) {
    const __m256 xk = _mm256_set1_ps(x[k]);
    const int8_t* p = w + k * kTile;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
    for (int j = 0; j < 8; ++j)
      a[j] = _mm256_fmadd_ps(xk, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(p + 8 * j)))), a[j]);
  }
  for (int j = 0; j < 8; ++j) _mm256_storeu_ps(acc + 8 * j, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * j), a[j]));
#else
  for (int64_t k = 0; k < rows; ++k)
    for (int64_t n = 0; n < kTile; ++n) acc[n] += x[k] * static_cast<float>(w[k * kTile + n]);
#endif
}

// The same for 4-bit weights: byte (k, n) holds row k in its low nibble and row k + half in its high one.
// ``total`` is sum_k x[k] over the block's 2 * half rows (the AVX2 path's offset correction).
inline void RowsInt4(const float* x, const int8_t* w, int64_t half, [[maybe_unused]] float total, float* acc) {
#if defined(__AVX512F__)
  const __m512 nibbles = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);  // u - 8
  __m512 a[4], b[4];  // low and high nibbles: eight independent FMA chains
  for (int j = 0; j < 4; ++j) a[j] = b[j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < half; ++k) {
    const __m512 lo = _mm512_set1_ps(x[k]), hi = _mm512_set1_ps(x[k + half]);
    const int8_t* p = w + k * kTile;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
    for (int j = 0; j < 4; ++j) {
      // a 16-entry table lookup turns a nibble into its float in one permute (which reads only an index's
      // low 4 bits): 3 vector ops per 16 weights fewer than shift + sign-extend + convert, and on 2 cores
      // the conversions, not the memory, bounded the 4-bit kernel (measured: tools/bench_xla_qmatmul.py)
      const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(p + 16 * j)));
      a[j] = _mm512_fmadd_ps(lo, _mm512_permutexvar_ps(v, nibbles), a[j]);
      b[j] = _mm512_fmadd_ps(hi, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), nibbles), b[j]);
    }
  }
  for (int j = 0; j < 4; ++j) a[j] = _mm512_add_ps(a[j], b[j]);
  AddTo(acc, a);
#elif defined(__AVX2__)
  // nibbles are stored as u = w + 8 (one mask or shift each, no sign-extending shifts), and
  // sum_k x[k] * w[k] = sum_k x[k] * u[k] - 8 * sum_k x[k] is subtracted once at the end
  __m256 a[8];
  for (auto& v : a) v = _mm256_setzero_ps();
  const __m256i low_bits = _mm256_set1_epi32(15);
  for (int64_t k = 0; k < half; ++k) {
    const __m256 lo = _mm256_set1_ps(x[k]), hi = _mm256_set1_ps(x[k + half]);
    const int8_t* p = w + k * kTile;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
    for (int j = 0; j < 8; ++j) {
      const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(p + 8 * j)));
      a[j] = _mm256_fmadd_ps(lo, _mm256_cvtepi32_ps(_mm256_and_si256(b, low_bits)), a[j]);
      a[j] = _mm256_fmadd_ps(hi, _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4)), a[j]);
    }
  }
  const __m256 bias = _mm256_set1_ps(8.0f * total);
  for (int j = 0; j < 8; ++j)
    _mm256_storeu_ps(acc + 8 * j, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * j), _mm256_sub_ps(a[j], bias)));
#else
  for (int64_t k = 0; k < half; ++k)
    for (int64_t n = 0; n < kTile; ++n) {
      const int v = static_cast<uint8_t>(w[k * kTile + n]);
      acc[n] += x[k] * static_cast<float>((v & 15) - 8) + x[k + half] * static_cast<float>((v >> 4) - 8);
    }
#endif
}

constexpr int kSpins = 1 << 14;

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

struct Problem {
  const float* x;
  const int8_t* w;
  const float* scale;
  const int8_t* zero;  // nullptr: symmetric
  const float* sums;   // [rows, groups]: sum of x over each block of K (zero points, 4-bit offsets), else empty
  float* y;
  int64_t rows, groups, block, stored, tiles, n;
  bool packed;
};

// Rows of x that share one widening of the weights (prefill, batches): at batch 1 a step reads each
// weight once and is bound by memory; with many rows it is bound by compute, and widening a weight once
// for kRowBlock rows instead of once per row is most of that compute.
constexpr int kRowBlock = 4;

#if defined(__AVX512F__)
// acc[i][0:64] += sum over rows k of xs[i][k] * w[k, 0:64] for kRowBlock rows of x at once.
inline void BlockInt8(const float* const* xs, const int8_t* w, int64_t rows, float (*acc)[kTile]) {
  __m512 a[kRowBlock][4];
  for (auto& row : a)
    for (auto& v : row) v = _mm512_setzero_ps();
  for (int64_t k = 0; k < rows; ++k) {
    const int8_t* p = w + k * kTile;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
    __m512 wv[4];
    for (int j = 0; j < 4; ++j)
      wv[j] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(p + 16 * j))));
    for (int i = 0; i < kRowBlock; ++i) {
      const __m512 xk = _mm512_set1_ps(xs[i][k]);
      for (int j = 0; j < 4; ++j) a[i][j] = _mm512_fmadd_ps(xk, wv[j], a[i][j]);
    }
  }
  for (int i = 0; i < kRowBlock; ++i) AddTo(acc[i], a[i]);
}

inline void BlockInt4(const float* const* xs, const int8_t* w, int64_t half, float (*acc)[kTile]) {
  const __m512 nibbles = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  __m512 a[kRowBlock][4];
  for (auto& row : a)
    for (auto& v : row) v = _mm512_setzero_ps();
  for (int64_t k = 0; k < half; ++k) {
    const int8_t* p = w + k * kTile;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
    __m512 lo[4], hi[4];
    for (int j = 0; j < 4; ++j) {
      const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(p + 16 * j)));
      lo[j] = _mm512_permutexvar_ps(b, nibbles);
      hi[j] = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), nibbles);
    }
    for (int i = 0; i < kRowBlock; ++i) {
      const __m512 xl = _mm512_set1_ps(xs[i][k]), xh = _mm512_set1_ps(xs[i][k + half]);
      for (int j = 0; j < 4; ++j) a[i][j] = _mm512_fmadd_ps(xh, hi[j], _mm512_fmadd_ps(xl, lo[j], a[i][j]));
    }
  }
  for (int i = 0; i < kRowBlock; ++i) AddTo(acc[i], a[i]);
}
#endif

// Output columns [tile * 64, tile * 64 + 64) for every row of x, kRowBlock rows at a time.
void OneTile(const Problem& p, int64_t tile) {
  const int64_t width = p.tiles * kTile, first = tile * kTile;
  const int64_t count = std::min(kTile, p.n - first);
  const int8_t* wt = p.w + tile * p.groups * p.stored * kTile;
  for (int64_t r = 0; r < p.rows; r += kRowBlock) {
    const int block_rows = static_cast<int>(std::min<int64_t>(kRowBlock, p.rows - r));
    float out[kRowBlock][kTile] = {};
    for (int64_t g = 0; g < p.groups; ++g) {
      float acc[kRowBlock][kTile] = {};
      const float* xs[kRowBlock];
      for (int i = 0; i < kRowBlock; ++i)  // past the last row: a copy of it, computed and dropped
        xs[i] = p.x + (r + std::min(i, block_rows - 1)) * p.groups * p.block + g * p.block;
      const int8_t* wg = wt + g * p.stored * kTile;
#if defined(__AVX512F__)
      if (block_rows > 1) {
        if (p.packed) BlockInt4(xs, wg, p.stored, acc);
        else BlockInt8(xs, wg, p.stored, acc);
      } else
#endif
      for (int i = 0; i < block_rows; ++i) {
        if (p.packed) RowsInt4(xs[i], wg, p.stored, p.sums[(r + i) * p.groups + g], acc[i]);
        else RowsInt8(xs[i], wg, p.stored, acc[i]);
      }
      const float* s = p.scale + g * width + first;
      const int8_t* z = p.zero ? p.zero + g * width + first : nullptr;
      for (int i = 0; i < block_rows; ++i) {
        if (z) {  // sum_k x[k] * (w[k, n] - z[n]) = acc[n] - z[n] * sum_k x[k]
          const float total = p.sums[(r + i) * p.groups + g];
          for (int64_t j = 0; j < kTile; ++j) out[i][j] += (acc[i][j] - static_cast<float>(z[j]) * total) * s[j];
        } else {
          for (int64_t j = 0; j < kTile; ++j) out[i][j] += acc[i][j] * s[j];
        }
      }
    }
    for (int i = 0; i < block_rows; ++i) std::memcpy(p.y + (r + i) * p.n + first, out[i], count * sizeof(float));
  }
}

// Tiles claimed from one counter by the calling thread and by tasks on XLA's intra-op pool. A task that
// starts after the work is gone finds the counter spent and returns, so the caller waits only for tiles
// (never for tasks: the pool may be busy with other thunks) and the state outlives every task.
struct Shared {
  std::atomic<int64_t> next{0}, done{0};
  int64_t total = 0, per = 1;
  std::vector<float> sums;
  Problem problem;
  std::mutex mutex;
  std::condition_variable finished;
};

void Drain(const std::shared_ptr<Shared>& s) {
  for (;;) {
    const int64_t start = s->next.fetch_add(s->per);
    if (start >= s->total) return;
    const int64_t stop = std::min(s->total, start + s->per);
    for (int64_t t = start; t < stop; ++t) OneTile(s->problem, t);
    if (s->done.fetch_add(stop - start) + (stop - start) == s->total) {
      std::lock_guard<std::mutex> lock(s->mutex);
      s->finished.notify_all();
    }
  }
}

ffi::Error QMatMul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::S8> w,
                   ffi::Buffer<ffi::F32> scale, ffi::Buffer<ffi::S8> zero, ffi::ResultBuffer<ffi::F32> y,
                   int64_t bits, int64_t block) {
  const auto xd = x.dimensions(), wd = w.dimensions(), sd = scale.dimensions(), yd = y->dimensions();
  if (xd.size() != 2 || wd.size() != 4 || sd.size() != 2 || yd.size() != 2 || (bits != 8 && bits != 4))
    return ffi::Error::InvalidArgument("portarun_qmatmul: operand ranks or bits do not match the layout");
  const int64_t tiles = wd[0], groups = wd[1], stored = wd[2], rows = xd[0], n = yd[1];
  const bool packed = bits == 4;
  if (wd[3] != kTile || block <= 0 || stored != (packed ? block / 2 : block) || (packed && block % 2) ||
      xd[1] != groups * block || yd[0] != rows || sd[0] != groups || sd[1] != tiles * kTile ||
      n > tiles * kTile || n <= (tiles - 1) * kTile ||
      (zero.element_count() != 0 && (zero.dimensions().size() != 2 || zero.dimensions()[0] != groups ||
                                     zero.dimensions()[1] != tiles * kTile)))
    return ffi::Error::InvalidArgument("portarun_qmatmul: operand shapes do not match the tiled layout");
  auto shared = std::make_shared<Shared>();
  // each row's sum over each block of K where a zero point or 4-bit offset needs it: once per call, not
  // once per tile
  if (zero.element_count() != 0 || packed) {
    shared->sums.resize(rows * groups);
    for (int64_t i = 0; i < rows * groups; ++i) {  // in double: the 4-bit offset subtracts 8 times it
      double total = 0;
      for (int64_t k = 0; k < block; ++k) total += x.typed_data()[i * block + k];
      shared->sums[i] = static_cast<float>(total);
    }
  }
  shared->problem = Problem{x.typed_data(), w.typed_data(), scale.typed_data(),
                            zero.element_count() ? zero.typed_data() : nullptr, shared->sums.data(),
                            y->typed_data(), rows, groups, block, stored, tiles, n, packed};
  shared->total = tiles;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  shared->per = std::max<int64_t>(1, tiles / (4 * threads));  // a few claims per thread balance the load
  const int64_t helpers = std::min(threads, (tiles + shared->per - 1) / shared->per) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([shared] { Drain(shared); });
  Drain(shared);
  // the last tiles are in flight on the other threads: spin briefly (a helper finishes within
  // microseconds at decode sizes), then sleep on the condition variable
  for (int spin = 0; spin < kSpins && shared->done.load(std::memory_order_acquire) != shared->total; ++spin) Pause();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == shared->total; });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(PortarunQMatMul, QMatMul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("bits")
                                  .Attr<int64_t>("block"));

// The layout this build computes with, for provenance: which vector instructions -march=native gave it.
extern "C" const char* PortarunQMatMulIsa() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#else
  return "scalar";
#endif
}
