// CPU scoring kernel for AVX-512 (F, VL, BW, DQ): Philox on 2 x 8 lanes with 32x32->64
// multiplies (vpmuludq) and three-way xors (vpternlogd). No FMA is ever emitted
// (-ffp-contract=off), so the results equal the portable kernel's bit for bit.
// Standard headers come before the target pragma so that nothing shared is compiled
// for AVX-512; everything defined under it has internal linkage or a unique name.
// GCC 12 warns about its own _mm512_undefined_* inside the intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "rcc/pfr.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")

namespace gencodec {
namespace rcc {
namespace {

constexpr int kKernelLanes = 64;  // candidates scored together (tuned per ISA)

// Eight lanes per vector, one 32-bit word in the low half of each 64-bit lane (the
// high halves carry garbage that vpmuludq ignores), so a round is two multiplies,
// two half swaps (vpshufd) and two three-way xors per eight lanes, with no repacking.
// Four independent vectors go through the rounds together (instruction-level
// parallelism for the dependency chain of the rounds).
constexpr int kChains = 4;

inline void philox_chains(const __m512i* x, Key key, uint32_t domain, __m512i (*c)[4]) {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  for (int v = 0; v < kChains; ++v) {
    c[v][0] = x[v];
    c[v][1] = _mm512_srli_epi64(x[v], 32);
    c[v][2] = _mm512_set1_epi64(domain);
    c[v][3] = _mm512_setzero_si512();
  }
  uint32_t k0 = key.k0, k1 = key.k1;
#pragma GCC unroll 10
  for (int r = 0; r < kPhiloxRounds; ++r) {
    const __m512i k0v = _mm512_set1_epi32(static_cast<int>(k0));
    const __m512i k1v = _mm512_set1_epi32(static_cast<int>(k1));
#pragma GCC unroll 4
    for (int v = 0; v < kChains; ++v) {
      const __m512i p0 = _mm512_mul_epu32(c[v][0], m0);
      const __m512i p1 = _mm512_mul_epu32(c[v][2], m1);
      c[v][0] =
          _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p1, _MM_PERM_CDAB), c[v][1], k0v, 0x96);
      c[v][2] =
          _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p0, _MM_PERM_CDAB), c[v][3], k1v, 0x96);
      c[v][1] = p1;
      c[v][3] = p0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// Words of blocks blk[l] + t for all lanes, packed back to 32-bit lanes.
inline void philox_lanes(const uint64_t* blk, uint64_t t, Key key, uint32_t* w0, uint32_t* w1,
                         uint32_t* w2, uint32_t* w3, uint32_t domain = kDomainNormal) {
  static_assert(kKernelLanes % (8 * kChains) == 0, "lanes come in groups of 8 * kChains");
  const __m512i tt = _mm512_set1_epi64(static_cast<long long>(t));
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  uint32_t* w[4] = {w0, w1, w2, w3};
  for (int g = 0; g < kKernelLanes; g += 8 * kChains) {
    __m512i x[kChains], c[kChains][4];
    for (int v = 0; v < kChains; ++v)
      x[v] = _mm512_add_epi64(_mm512_loadu_si512(blk + g + 8 * v), tt);
    philox_chains(x, key, domain, c);
    for (int v = 0; v < kChains; v += 2) {
      for (int i = 0; i < 4; ++i) {
        _mm512_storeu_si512(w[i] + g + 8 * v,
                            _mm512_permutex2var_epi32(c[v][i], even, c[v + 1][i]));
      }
    }
  }
}

#define RCC_KERNEL_NAME kKernelAvx512
#define RCC_KERNEL_ISA "avx512"
#include "rcc/pfr_kernel.inc"
#undef RCC_KERNEL_NAME
#undef RCC_KERNEL_ISA

}  // namespace rcc
}  // namespace gencodec

#pragma GCC pop_options
#else
namespace gencodec {
namespace rcc {
const CpuKernel kKernelAvx512 = kKernelGeneric;
}  // namespace rcc
}  // namespace gencodec
#endif
