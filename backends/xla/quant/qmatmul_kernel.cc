// portarun's QMatMul for XLA on CPUs: y[R, N] = x[R, K] @ dequantize(W), W read as int8 or packed int4.
//
// Why a custom call: XLA:CPU does not fuse a convert into a dot, so a float dot over an int8 weight first
// writes a float copy of it, and its s8 x s8 dot (YNNPACK) runs at about half fp32's bytes per second.
// This kernel reads each weight byte once: an 8-bit weight is widened to float in registers and accumulated
// in float32, a 4-bit one goes through an exact integer dot with x written as two 16-bit digits per block
// (see QuadsInt4; weight-only quantization either way: the activations stay float). At batch 1 that is
// bound by memory bandwidth, the point of quantizing. Built by portarun at first use with the machine's
// compiler (-march=native); see native.py.
//
// Layout (written by fusion._store_native): W [T, G, S, 64] int8, T tiles of 64 output columns
// (N zero-padded to T * 64), G blocks of K of B rows each (per channel: G = 1, B = K rounded up), S = B
// rows for 8-bit weights, B / 2 rows of bytes for 4-bit ones (B a multiple of 4), each nibble in offset
// binary (w + 8, so 0..15) and laid out in quads of 4 rows (fusion._quad_tiles; described above QuadsInt4).
// scale [G, T * 64] float32; zero [G, T * 64] int8 or empty; x [R, G * B] float32 (zero-padded along K);
// y [R, N] float32. Shapes are checked, not trusted: an artifact is a file.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
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

constexpr int kSpins = 1 << 14;
constexpr int64_t kBytesPerThread = int64_t{1} << 17;

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
  const float* sums;   // [rows, groups]: sum of x over each block of K (8-bit zero points), else empty
  const int16_t* grid;       // 4-bit: [rows * 2, groups * block] x as two 16-bit digits per block
  const float* grid_step;    // 4-bit: [rows * 2, groups] each digit's grid step
  const int64_t* grid_sum;   // 4-bit: [rows * 2, groups] the sum of each digit over the block
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

#endif

// 4-bit weights: an integer dot over each block's activations written as two 16-bit digits.
//
// Why not widen to float as the 8-bit path does: at 4 bits per weight the widening (zero-extend, shift, a
// table permute and an FMA per 16 weights), not the memory, bound that kernel on a 2-core AVX-512 machine
// (10 GB/s read, half the 8-bit path's bytes per second; tools/bench_xla_qmatmul.py). Here each row's block
// of x is written x = d1 * t + d2 * t / 65534 + e with t = max|x| / 32767, d1 = round(x / t) and d2 the
// rest on a grid 65534 times finer, so |e| <= max|x| / 2^31: below float32's rounding of the block's largest
// value, so the activations stay float in all but name. sum_k d[k] * u[k, n] is exact in int32 for each digit
// (vpdpwssd: 32 products per instruction), and the float result is
// s_w[n] * sum over the digits of step * (that sum - (8 + z[n]) * sum_k d[k]).
// The two digits are two "virtual rows" of x: the kernel's row blocking serves both.
//
// Layout of one tile's block (written by fusion._quad_tiles): quads of 4 rows of K, 128 bytes each:
// column group c (16 columns), column i, pair j at byte 32 c + 2 i + j, its low nibble row 4 q + j and its
// high nibble row 4 q + 2 + j, each u = w + 8 in 0..15. Zero-extending 32 bytes to words gives, per 32-bit
// lane i, the rows (4q, 4q + 1) in the low nibbles and (4q + 2, 4q + 3) in the high ones: the pairs a
// 16-bit dot product multiplies by the broadcast activations (d[4q], d[4q + 1]) and (d[4q + 2], d[4q + 3]).
constexpr int64_t kQuadBytes = 2 * kTile;
// quads per int32 accumulation: 1024 quads x 4 rows x 32767 x 15 < 2^31, so the sum cannot overflow for any
// block size; longer blocks (per-channel weights) add their chunks in int64
constexpr int64_t kChunkQuads = 1024;

inline int32_t Pair(const int16_t* d) {  // two adjacent int16 activations as one 32-bit lane
  int32_t v;
  std::memcpy(&v, d, sizeof v);
  return v;
}

// acc[i][0:64] = sum over the quads [q0, q1) of d[i][k] * u[k, 0:64] for R rows of activations.
template <int R>
inline void QuadsInt4(const int16_t* const* d, const uint8_t* w, int64_t q0, int64_t q1, int32_t (*acc)[kTile]) {
#if defined(__AVX512BW__)
  __m512i a[R][4];
  for (auto& row : a)
    for (auto& v : row) v = _mm512_setzero_si512();
  const __m512i low = _mm512_set1_epi16(15);
  for (int64_t q = q0; q < q1; ++q) {
    const uint8_t* p = w + q * kQuadBytes;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + 64), _MM_HINT_T0);
    __m512i lo[4], hi[4];
    for (int c = 0; c < 4; ++c) {
      const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c)));
      lo[c] = _mm512_and_si512(v, low);
      hi[c] = _mm512_srli_epi16(v, 4);
    }
    for (int i = 0; i < R; ++i) {
      const __m512i xl = _mm512_set1_epi32(Pair(d[i] + 4 * q)), xh = _mm512_set1_epi32(Pair(d[i] + 4 * q + 2));
      for (int c = 0; c < 4; ++c) {
#if defined(__AVX512VNNI__)
        a[i][c] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(a[i][c], lo[c], xl), hi[c], xh);
#else
        a[i][c] = _mm512_add_epi32(a[i][c], _mm512_add_epi32(_mm512_madd_epi16(lo[c], xl), _mm512_madd_epi16(hi[c], xh)));
#endif
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < 4; ++c) _mm512_storeu_si512(acc[i] + 16 * c, a[i][c]);
#elif defined(__AVX2__)
  // 16 ymm registers: a pair of rows (one row's two digits) and half the tile's columns at a time, so each
  // widened weight serves both digits (the second half re-reads the block from L1)
  const __m256i low = _mm256_set1_epi16(15);
  for (int i = 0; i < R; i += 2) {
    const int16_t* d0 = d[i];
    const int16_t* d1 = d[std::min(i + 1, R - 1)];
    for (int half = 0; half < 2; ++half) {
      __m256i a0[4], a1[4];
      for (int h = 0; h < 4; ++h) a0[h] = a1[h] = _mm256_setzero_si256();
      for (int64_t q = q0; q < q1; ++q) {
        const uint8_t* p = w + q * kQuadBytes + 64 * half;
        if (half == 0) {  // the quad's two lines, once
          _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + 64), _MM_HINT_T0);
        }
        const __m256i xl0 = _mm256_set1_epi32(Pair(d0 + 4 * q)), xh0 = _mm256_set1_epi32(Pair(d0 + 4 * q + 2));
        const __m256i xl1 = _mm256_set1_epi32(Pair(d1 + 4 * q)), xh1 = _mm256_set1_epi32(Pair(d1 + 4 * q + 2));
        for (int h = 0; h < 4; ++h) {  // 16 bytes: 8 columns
          const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h)));
          const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_srli_epi16(v, 4);
          a0[h] = _mm256_add_epi32(a0[h], _mm256_add_epi32(_mm256_madd_epi16(lo, xl0), _mm256_madd_epi16(hi, xh0)));
          a1[h] = _mm256_add_epi32(a1[h], _mm256_add_epi32(_mm256_madd_epi16(lo, xl1), _mm256_madd_epi16(hi, xh1)));
        }
      }
      for (int h = 0; h < 4; ++h) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc[i] + 32 * half + 8 * h), a0[h]);
        if (i + 1 < R) _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc[i + 1] + 32 * half + 8 * h), a1[h]);
      }
    }
  }
#else
  for (int i = 0; i < R; ++i) std::memset(acc[i], 0, sizeof(acc[i]));
  for (int i = 0; i < R; ++i)
    for (int64_t q = q0; q < q1; ++q) {
      const uint8_t* p = w + q * kQuadBytes;
      const int16_t* x = d[i] + 4 * q;
      for (int64_t n = 0; n < kTile; ++n)
        for (int j = 0; j < 2; ++j) {
          const int v = p[32 * (n / 16) + 2 * (n % 16) + j];
          acc[i][n] += x[j] * (v & 15) + x[2 + j] * (v >> 4);
        }
    }
#endif
}

constexpr int kDigits = 2;
constexpr double kFiner = 65534.0;  // the second digit's grid step: the first's / kFiner

// Output columns [tile * 64, tile * 64 + 64) of a 4-bit weight for every row of x: two rows (four virtual
// rows: their digits) at a time.
void OneTileInt4(const Problem& p, int64_t tile) {
  const int64_t width = p.tiles * kTile, first = tile * kTile;
  const int64_t count = std::min(kTile, p.n - first);
  const uint8_t* wt = reinterpret_cast<const uint8_t*>(p.w) + tile * p.groups * p.stored * kTile;
  const int64_t quads = p.block / 4;
  constexpr int kRows = 2, kVirtual = kRows * kDigits;
  for (int64_t r = 0; r < p.rows; r += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, p.rows - r));
    const int virtual_rows = rows * kDigits;
    float out[kRows][kTile] = {};
    for (int64_t g = 0; g < p.groups; ++g) {
      const int16_t* d[kVirtual];
      for (int v = 0; v < kVirtual; ++v)
        d[v] = p.grid + ((r * kDigits + std::min(v, virtual_rows - 1)) * p.groups + g) * p.block;
      const uint8_t* wg = wt + g * p.stored * kTile;
      const float* s = p.scale + g * width + first;
      const int8_t* z = p.zero ? p.zero + g * width + first : nullptr;
      int32_t acc[kVirtual][kTile];
      int64_t total[kVirtual][kTile];
      const bool chunked = quads > kChunkQuads;  // longer blocks (per channel): int32 chunks added in int64
      for (int64_t q0 = 0; q0 < quads; q0 += kChunkQuads) {
        const int64_t q1 = std::min(quads, q0 + kChunkQuads);
        if (virtual_rows > kDigits) QuadsInt4<kVirtual>(d, wg, q0, q1, acc);
        else QuadsInt4<kDigits>(d, wg, q0, q1, acc);
        if (chunked)
          for (int v = 0; v < virtual_rows; ++v)
            for (int64_t j = 0; j < kTile; ++j) total[v][j] = (q0 ? total[v][j] : 0) + acc[v][j];
      }
      for (int i = 0; i < rows; ++i)
        for (int digit = 0; digit < kDigits; ++digit) {
          const int v = i * kDigits + digit;
          const int64_t at = (r * kDigits + v) * p.groups + g;
          const float step = p.grid_step[at];  // NaN where the block of x held NaN or an infinity
          const int64_t digits = p.grid_sum[at];
          for (int64_t j = 0; j < kTile; ++j) {
            const int64_t offset = 8 + (z ? z[j] : 0);
            // sum_k d[k] * (w[k, j] - z[j]) = acc - offset * sum_k d[k]: it fits in int32 where the block
            // does, so there the difference modulo 2^32 (unsigned: defined wrap-around) is exact
            const float exact = chunked ? static_cast<float>(total[v][j] - offset * digits)
                                        : static_cast<float>(static_cast<int32_t>(
                                              static_cast<uint32_t>(acc[v][j]) -
                                              static_cast<uint32_t>(offset) * static_cast<uint32_t>(digits)));
            out[i][j] += exact * (step * s[j]);
          }
        }
    }
    for (int i = 0; i < rows; ++i) std::memcpy(p.y + (r + i) * p.n + first, out[i], count * sizeof(float));
  }
}

// Each row's blocks of x as two 16-bit digits (see above): the digits, their grid steps and their sums,
// digit k of row r being virtual row r * kDigits + k. A block holding NaN or an infinity gets NaN steps, so
// every output it reaches is NaN (an infinity too: NaN, as the ORT digits lowering gives); an all-zero block
// gets steps 0. In double: 32767 / max of a subnormal max overflows a float, and the rest is exact.
void ToGrid(const float* x, int64_t rows, int64_t groups, int64_t block, int16_t* grid, float* step, int64_t* sum) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      const float* xb = x + (r * groups + g) * block;
      int16_t* d1 = grid + ((r * kDigits) * groups + g) * block;
      int16_t* d2 = grid + ((r * kDigits + 1) * groups + g) * block;
      const int64_t at1 = (r * kDigits) * groups + g, at2 = (r * kDigits + 1) * groups + g;
      double largest = 0;
      bool finite = true;
      for (int64_t k = 0; k < block; ++k) {
        const double a = std::fabs(static_cast<double>(xb[k]));
        finite = finite && a <= static_cast<double>(std::numeric_limits<float>::max());
        largest = std::max(largest, a);
      }
      int64_t total1 = 0, total2 = 0;
      if (!finite || largest == 0) {
        std::memset(d1, 0, block * sizeof(int16_t));
        std::memset(d2, 0, block * sizeof(int16_t));
        step[at1] = step[at2] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
      } else {
        const double t1 = largest / 32767.0, t2 = t1 / kFiner;
        for (int64_t k = 0; k < block; ++k) {
          const double v = static_cast<double>(xb[k]);
          const double first = std::max(-32767.0, std::min(32767.0, std::nearbyint(v / t1)));
          const double second = std::max(-32767.0, std::min(32767.0, std::nearbyint((v - first * t1) / t2)));
          d1[k] = static_cast<int16_t>(first);
          d2[k] = static_cast<int16_t>(second);
          total1 += d1[k];
          total2 += d2[k];
        }
        step[at1] = static_cast<float>(t1);
        step[at2] = static_cast<float>(t2);
      }
      sum[at1] = total1;
      sum[at2] = total2;
    }
}

// Output columns [tile * 64, tile * 64 + 64) of an 8-bit weight for every row of x, kRowBlock rows at a time.
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
      if (block_rows > 1) BlockInt8(xs, wg, p.stored, acc);
      else
#endif
      for (int i = 0; i < block_rows; ++i) RowsInt8(xs[i], wg, p.stored, acc[i]);
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
  std::vector<float> sums, grid_step;
  std::vector<int16_t> grid;
  std::vector<int64_t> grid_sum;
  Problem problem;
  std::mutex mutex;
  std::condition_variable finished;
};

void Drain(const std::shared_ptr<Shared>& s) {
  for (;;) {
    const int64_t start = s->next.fetch_add(s->per);
    if (start >= s->total) return;
    const int64_t stop = std::min(s->total, start + s->per);
    for (int64_t t = start; t < stop; ++t) {
      if (s->problem.packed) OneTileInt4(s->problem, t);
      else OneTile(s->problem, t);
    }
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
  if (wd[3] != kTile || block <= 0 || stored != (packed ? block / 2 : block) || (packed && block % 4) ||
      xd[1] != groups * block || yd[0] != rows || sd[0] != groups || sd[1] != tiles * kTile ||
      n > tiles * kTile || n <= (tiles - 1) * kTile ||
      (zero.element_count() != 0 && (zero.dimensions().size() != 2 || zero.dimensions()[0] != groups ||
                                     zero.dimensions()[1] != tiles * kTile)))
    return ffi::Error::InvalidArgument("portarun_qmatmul: operand shapes do not match the tiled layout");
  auto shared = std::make_shared<Shared>();
  // once per call, not once per tile: each row's sum over each block of K where an 8-bit zero point needs
  // it, and each row's blocks as 16-bit digits for a 4-bit weight
  if (packed) {
    shared->grid.resize(rows * kDigits * groups * block);
    shared->grid_step.resize(rows * kDigits * groups);
    shared->grid_sum.resize(rows * kDigits * groups);
    ToGrid(x.typed_data(), rows, groups, block, shared->grid.data(), shared->grid_step.data(), shared->grid_sum.data());
  } else if (zero.element_count() != 0) {
    shared->sums.resize(rows * groups);
    for (int64_t i = 0; i < rows * groups; ++i) {  // in double: the zero point multiplies it
      double total = 0;
      for (int64_t k = 0; k < block; ++k) total += x.typed_data()[i * block + k];
      shared->sums[i] = static_cast<float>(total);
    }
  }
  shared->problem = Problem{x.typed_data(), w.typed_data(), scale.typed_data(),
                            zero.element_count() ? zero.typed_data() : nullptr, shared->sums.data(),
                            shared->grid.data(), shared->grid_step.data(), shared->grid_sum.data(),
                            y->typed_data(), rows, groups, block, stored, tiles, n, packed};
  shared->total = tiles;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  shared->per = std::max<int64_t>(1, tiles / (4 * threads));  // a few claims per thread balance the load
  // a helper pays only for enough bytes: handing work to XLA's pool costs the caller 8-15 us (waking an
  // idle thread; measured on a 2-vCPU VM). 128 KB per thread was the fastest of 64 KB-512 KB for
  // decoder-small's 33 matmuls at batch 1, interleaved in one process on a 2-vCPU EPYC: int4 2.28 ms vs
  // 2.80 ms at 512 KB, int8 3.55 vs 3.94 ms (the 768x768 and 2048x768 layers gain a second thread)
  const int64_t bytes = w.element_count() + scale.element_count() * 4;
  const int64_t workers = std::clamp<int64_t>(bytes / kBytesPerThread, 1, threads);
  const int64_t helpers = std::min(workers, (tiles + shared->per - 1) / shared->per) - 1;
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
