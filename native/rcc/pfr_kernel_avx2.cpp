// CPU scoring kernel for AVX2: Philox on 4 x 4 lanes with 32x32->64 multiplies
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
inline void philox4(__m256i x, Key key, __m256i& c0, __m256i& c1, __m256i& c2, __m256i& c3) {
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53), m1 = _mm256_set1_epi64x(0xCD9E8D57);
  c0 = x;
  c1 = _mm256_srli_epi64(x, 32);
  c2 = _mm256_set1_epi64x(kDomainNormal);
  c3 = _mm256_setzero_si256();
  uint32_t k0 = key.k0, k1 = key.k1;
#pragma GCC unroll 10
  for (int r = 0; r < 10; ++r) {
    const __m256i p0 = _mm256_mul_epu32(c0, m0);
    const __m256i p1 = _mm256_mul_epu32(c2, m1);
    const __m256i k0v = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i k1v = _mm256_set1_epi32(static_cast<int>(k1));
    c0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1), k0v);
    c2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3), k1v);
    c1 = p1;
    c3 = p0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

// Low halves of two 4 x 64-bit vectors as 8 x 32 bits, in lane order.
inline __m256i pack_low(__m256i a, __m256i b) {
  const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  const __m256i lo = _mm256_permutevar8x32_epi32(a, idx), hi = _mm256_permutevar8x32_epi32(b, idx);
  return _mm256_blend_epi32(lo, hi, 0xF0);
}

inline void philox_lanes(const uint64_t* blk, uint64_t t, Key key, uint32_t* w0, uint32_t* w1,
                         uint32_t* w2, uint32_t* w3) {
  const __m256i tt = _mm256_set1_epi64x(static_cast<long long>(t));
  for (int h = 0; h < kKernelLanes; h += 8) {
    __m256i a0, a1, a2, a3, b0, b1, b2, b3;
    philox4(_mm256_add_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + h)), tt),
            key, a0, a1, a2, a3);
    philox4(_mm256_add_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + h + 4)), tt),
            key, b0, b1, b2, b3);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0 + h), pack_low(a0, b0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1 + h), pack_low(a1, b1));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w2 + h), pack_low(a2, b2));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w3 + h), pack_low(a3, b3));
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
