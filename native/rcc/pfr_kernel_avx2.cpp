// CPU scoring kernel for AVX2: Philox on 4 chains of 4 lanes with 32x32->64 multiplies
// (vpmuludq). No FMA is ever emitted (-ffp-contract=off), so the results equal the
// portable kernel's bit for bit. Standard headers come before the target pragma.
#include "rcc/pfr.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2")

namespace gencodec {
namespace rcc {
namespace {

constexpr int kKernelLanes = 32;  // candidates scored together (tuned per ISA)

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

inline void philox_lanes(const uint64_t* blk, uint64_t t, Key key, uint32_t* w0, uint32_t* w1,
                         uint32_t* w2, uint32_t* w3, uint32_t domain = kDomainNormal) {
  static_assert(kKernelLanes % (4 * kChains) == 0, "lanes come in groups of 4 * kChains");
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53), m1 = _mm256_set1_epi64x(0xCD9E8D57);
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
    uint32_t k0 = key.k0, k1 = key.k1;
#pragma GCC unroll 10
    for (int r = 0; r < 10; ++r) {
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
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    for (int v = 0; v < kChains; v += 2) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0 + g + 4 * v), pack_low(c0[v], c0[v + 1]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1 + g + 4 * v), pack_low(c1[v], c1[v + 1]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w2 + g + 4 * v), pack_low(c2[v], c2[v + 1]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w3 + g + 4 * v), pack_low(c3[v], c3[v + 1]));
    }
  }
}

inline void sqrt_lanes(float* x) {
  for (int l = 0; l < kKernelLanes; l += 8)
    _mm256_storeu_ps(x + l, _mm256_sqrt_ps(_mm256_loadu_ps(x + l)));
}

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
