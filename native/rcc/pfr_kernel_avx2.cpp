// CPU scoring kernel for AVX2: Philox on 4 chains of 4 lanes with 32x32->64 multiplies
// (vpmuludq), the normals looked up in the quantile table with scalar loads and scored
// while the words are still in registers. No FMA is ever emitted (-ffp-contract=off),
// so the results equal the portable kernel's bit for bit. Standard headers come
// before the target pragma.
#include "rcc/pfr.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2")

namespace gencodec {
namespace rcc {
namespace {

constexpr int kKernelLanes = 16;  // candidates scored together: 4 chains of 4

// Four lanes per vector, one 32-bit word in the low half of each 64-bit lane (the
// high halves carry garbage that vpmuludq ignores): no repacking inside the rounds.
// kChains vectors go through the rounds together (round-major), so that independent
// chains hide the multiply latency; four fit the 16 registers with the constants.
constexpr int kChains = 4;

// Low halves of two 4 x 64-bit vectors as 8 x 32 bits, in lane order.
inline __m256i pack_low(__m256i a, __m256i b) {
  const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  const __m256i lo = _mm256_permutevar8x32_epi32(a, idx), hi = _mm256_permutevar8x32_epi32(b, idx);
  return _mm256_blend_epi32(lo, hi, 0xF0);
}

// The rounds on kChains vectors of four counters (words in the low 32 bits of each
// 64-bit lane), in place.
inline void philox_rounds(Key key, __m256i* c0, __m256i* c1, __m256i* c2, __m256i* c3) {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  uint32_t k0 = key.k0, k1 = key.k1;
#pragma GCC unroll 10
  for (int r = 0; r < kPhiloxRounds; ++r) {
    const __m256i k0v = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i k1v = _mm256_set1_epi32(static_cast<int>(k1));
#pragma GCC unroll 4
    for (int v = 0; v < kChains; ++v) {
      const __m256i p0 = _mm256_mul_epu32(c0[v], m0);
      const __m256i p1 = _mm256_mul_epu32(c2[v], m1);
      c0[v] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[v]), k0v);
      c2[v] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[v]), k1v);
      c1[v] = p1;
      c3[v] = p0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

inline void philox_lanes(const uint64_t* blk, uint64_t t, Key key, uint32_t* w0, uint32_t* w1,
                         uint32_t* w2, uint32_t* w3, uint32_t domain = kDomainNormal) {
  static_assert(kKernelLanes % (4 * kChains) == 0, "lanes come in groups of 4 * kChains");
  const __m256i tt = _mm256_set1_epi64x(static_cast<long long>(t));
  for (int g = 0; g < kKernelLanes; g += 4 * kChains) {
    __m256i c0[kChains], c1[kChains], c2[kChains], c3[kChains];
    for (int v = 0; v < kChains; ++v) {
      c0[v] = _mm256_add_epi64(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + g + 4 * v)), tt);
      c1[v] = _mm256_srli_epi64(c0[v], 32);
      c2[v] = _mm256_set1_epi64x(domain);
      c3[v] = _mm256_setzero_si256();
    }
    philox_rounds(key, c0, c1, c2, c3);
    for (int v = 0; v < kChains; v += 2) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0 + g + 4 * v), pack_low(c0[v], c0[v + 1]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1 + g + 4 * v), pack_low(c1[v], c1[v + 1]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w2 + g + 4 * v), pack_low(c2[v], c2[v + 1]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w3 + g + 4 * v), pack_low(c3[v], c3[v + 1]));
    }
  }
}

// term (pfr.hpp) on eight lanes: n (A n + B), the same operations in the same order.
inline __m256 term8(__m256 n, const float* A, const float* B, int i) {
  return _mm256_mul_ps(n, _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(A[i]), n),
                                        _mm256_set1_ps(B[i])));
}

// Normals of the low and high halves of eight words, looked up with scalar loads
// inserted into two vectors. On Zen 3 this beat vgatherdps: benchmarks/rcc_ceiling.cpp
// (-DRCC_CEILING_AVX2, one thread, runs alternated) put the whole kernel at a median of
// 0.72 ns per normal (26 runs) against 0.85 with two gathers per word vector (18 runs).
// Each 64-bit extract carries two lanes' words, four 14-bit indices.
inline float entry(const float* table, uint64_t p, int shift) {
  return table[(p >> shift) & kNormalMask];
}
inline __m128 four(const float* table, uint64_t p, uint64_t q, int shift) {
  __m128 v = _mm_set_ss(entry(table, p, shift));
  v = _mm_insert_ps(v, _mm_set_ss(entry(table, p, shift + 32)), 0x10);
  v = _mm_insert_ps(v, _mm_set_ss(entry(table, q, shift)), 0x20);
  return _mm_insert_ps(v, _mm_set_ss(entry(table, q, shift + 32)), 0x30);
}
inline void normals(const float* table, __m256i w, __m256* low, __m256* high) {
  const __m128i a = _mm256_castsi256_si128(w), b = _mm256_extracti128_si256(w, 1);
  uint64_t p0 = static_cast<uint64_t>(_mm_cvtsi128_si64(a));
  uint64_t p1 = static_cast<uint64_t>(_mm_extract_epi64(a, 1));
  uint64_t p2 = static_cast<uint64_t>(_mm_cvtsi128_si64(b));
  uint64_t p3 = static_cast<uint64_t>(_mm_extract_epi64(b, 1));
  // Opaque to the optimiser: otherwise GCC re-vectorises the index arithmetic and
  // extracts every index with vpextrd (two uops each on Zen 3).
  __asm__("" : "+r"(p0), "+r"(p1), "+r"(p2), "+r"(p3));
  *low = _mm256_set_m128(four(table, p2, p3, 0), four(table, p0, p1, 0));
  *high = _mm256_set_m128(four(table, p2, p3, 16), four(table, p0, p1, 16));
}

// The format's generator and transform: Philox rounds on the counters, normals from the
// quantile table. score_group_with takes others in their place, which only
// benchmarks/rcc_ceiling.cpp does (to bound what a cheaper generator or transform
// could gain); the library always uses these.
struct PhiloxWords {
  static void rounds(Key key, __m256i* c0, __m256i* c1, __m256i* c2, __m256i* c3) {
    philox_rounds(key, c0, c1, c2, c3);
  }
};
struct TableNormals {
  static void of(const float* table, __m256i w, __m256* low, __m256* high) {
    normals(table, w, low, high);
  }
};

// The lane code's score_group with the words kept in registers: Philox on the 16
// candidates' counters {t, j, 0, 0}, then per half group of eight lanes the eight
// normals and the two term4 sums of the block.
template <class Words = PhiloxWords, class Normals = TableNormals>
inline void score_group_with(const ScoreArgs& a, uint64_t g, Best& best) {
  static_assert(kKernelLanes == 4 * kChains, "one Philox pass per group");
  const int64_t blocks = padded_dims(a.d) / kCoeffPad;
  const uint64_t j0 = g * kKernelLanes;
  __m256i rows[kChains];
  for (int v = 0; v < kChains; ++v) {
    const uint64_t j = j0 + 4 * static_cast<uint64_t>(v);
    rows[v] = _mm256_setr_epi64x(static_cast<long long>(j), static_cast<long long>(j + 1),
                                 static_cast<long long>(j + 2), static_cast<long long>(j + 3));
  }
  __m256d acc[kChains];
  for (int v = 0; v < kChains; ++v) acc[v] = _mm256_setzero_pd();
  for (int64_t t = 0; t < blocks; ++t) {
    __m256i c0[kChains], c1[kChains], c2[kChains], c3[kChains];
    const __m256i tt = _mm256_set1_epi64x(t);
    for (int v = 0; v < kChains; ++v) {
      c0[v] = tt;
      c1[v] = rows[v];
      c2[v] = _mm256_set1_epi64x(kDomainNormal);
      c3[v] = _mm256_setzero_si256();
    }
    Words::rounds(a.key, c0, c1, c2, c3);
    const float* A = a.quad + 8 * t;
    const float* B = a.lin + 8 * t;
    for (int h = 0; h < 2; ++h) {  // lanes 0-7, then 8-15
      const __m256i w0 = pack_low(c0[2 * h], c0[2 * h + 1]);
      const __m256i w1 = pack_low(c1[2 * h], c1[2 * h + 1]);
      const __m256i w2 = pack_low(c2[2 * h], c2[2 * h + 1]);
      const __m256i w3 = pack_low(c3[2 * h], c3[2 * h + 1]);
      // Dimensions 8t ... 8t+3 (words 0, 1), then 8t+4 ... 8t+7 (words 2, 3).
      __m256 n0, n1, n2, n3, n4, n5, n6, n7;
      Normals::of(a.table, w0, &n0, &n1);
      Normals::of(a.table, w1, &n2, &n3);
      Normals::of(a.table, w2, &n4, &n5);
      Normals::of(a.table, w3, &n6, &n7);
      const __m256 s0 = _mm256_add_ps(
          _mm256_add_ps(_mm256_add_ps(term8(n0, A, B, 0), term8(n1, A, B, 1)),
                        term8(n2, A, B, 2)),
          term8(n3, A, B, 3));
      const __m256 s1 = _mm256_add_ps(
          _mm256_add_ps(_mm256_add_ps(term8(n4, A, B, 4), term8(n5, A, B, 5)),
                        term8(n6, A, B, 6)),
          term8(n7, A, B, 7));
      // Lanes 8h ... 8h+3 and 8h+4 ... 8h+7, each adding its first sum, then its second.
      __m256d& lo = acc[2 * h];
      __m256d& hi = acc[2 * h + 1];
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(s0)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(s0, 1)));
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(s1)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(s1, 1)));
    }
  }
  alignas(32) double sums[kKernelLanes];
  for (int v = 0; v < kChains; ++v) _mm256_store_pd(sums + 4 * v, acc[v]);
  keep_best(a, j0, kKernelLanes, sums, best);
}

#define RCC_KERNEL_HAS_SCORE_GROUP
inline void score_group(const ScoreArgs& a, uint64_t g, Best& best) { score_group_with(a, g, best); }

#define RCC_KERNEL_NAME kKernelAvx2
#define RCC_KERNEL_ISA "avx2"
#include "rcc/pfr_kernel.inc"
#undef RCC_KERNEL_NAME
#undef RCC_KERNEL_ISA

}  // namespace rcc
}  // namespace gencodec

#pragma GCC pop_options
#else
namespace gencodec {
namespace rcc {
const CpuKernel kKernelAvx2 = kKernelGeneric;
}  // namespace rcc
}  // namespace gencodec
#endif
