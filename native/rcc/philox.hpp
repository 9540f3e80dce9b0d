// Shared randomness for reverse-channel coding: Philox4x32-10 (Salmon et al. 2011,
// "Parallel random numbers: as easy as 1, 2, 3", the Random123 generator), the key
// derivation from (seed, step, chunk), and the transforms to standard normals and
// exponentials. Everything here is compiled by both the C++ compiler and nvcc and
// uses only integer operations and IEEE-754 +, -, *, / and sqrt (no library
// log/sin/cos, no fused multiply-add: CMake builds with -ffp-contract=off and
// --fmad=false), so CPU and GPU produce the same bits for the same key and counter.
//
// Bitstream format (changing anything here changes every coded index; the golden
// vectors in tests/rcc/test_philox.py pin it):
//   key64(seed, step, chunk) = mix(mix(mix(seed) ^ step) ^ chunk), with mix the
//     splitmix64 finaliser; the Philox key is {low 32 bits, high 32 bits}.
//   Philox counter of block b (64-bit) in domain D: {lo32(b), hi32(b), D, 0}.
//   Domains: 0 candidate normals, 1 arrival-time exponentials, 2 dimension permutation.
//   Normal number n (64-bit) = Box-Muller on block n/4 of domain 0: words (0,1) give
//     normals 4b, 4b+1 (r cos t, r sin t), words (2,3) give 4b+2, 4b+3; the radius
//     word u gives r = sqrt(-2 log((u>>9 + 1/2) / 2^23)), the angle word a gives
//     t = 2 pi (a + 1/2) / 2^32 (reduced exactly to a quadrant and |x| <= pi/4).
//   Candidate j of a chunk with d dimensions = normals j*d ... j*d + d - 1.
//   Exponential number j = -log((u>>9 + 1/2) / 2^23) with u = word j%4 of block j/4
//     of domain 1, in fixed point: floor(value * 2^32) as an unsigned 64-bit integer,
//     so the arrival times (prefix sums) are exact integers on every platform.
//   Permutation of n dimensions (pfr_cpu.cpp): Fisher-Yates with key64(seed, step, 0)
//     in domain 2; draw m (for i = n-1-m) is the 64-bit r = words 2(m%2) | 2(m%2)+1 << 32
//     of block m/2, and i swaps with floor(r (i+1) / 2^64).
//   The float operation sequences of log_float, rotate and term4 (pfr.hpp) are part
//     of the format too: they fix the last bits of every normal and score.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define RCC_HD __host__ __device__ __forceinline__
#else
#define RCC_HD inline __attribute__((always_inline))
#endif

namespace gencodec {
namespace rcc {

constexpr uint32_t kDomainNormal = 0;
constexpr uint32_t kDomainArrival = 1;
constexpr uint32_t kDomainPermutation = 2;

// splitmix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mixer.
RCC_HD uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

RCC_HD uint64_t derive_key(uint64_t seed, uint64_t step, uint64_t chunk) {
  return splitmix64(splitmix64(splitmix64(seed) ^ step) ^ chunk);
}

struct Key {
  uint32_t k0, k1;
};

RCC_HD Key split_key(uint64_t key64) {
  return Key{static_cast<uint32_t>(key64), static_cast<uint32_t>(key64 >> 32)};
}

// Philox4x32-10 on the counter (c0, c1, c2, c3), in place, with key k.
RCC_HD void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, Key k) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  uint32_t k0 = k.k0, k1 = k.k1;
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 10
#endif
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(M1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
}

// The four words of block `block` in `domain`.
RCC_HD void philox_block(uint64_t block, uint32_t domain, Key k, uint32_t& w0, uint32_t& w1,
                         uint32_t& w2, uint32_t& w3) {
  w0 = static_cast<uint32_t>(block);
  w1 = static_cast<uint32_t>(block >> 32);
  w2 = domain;
  w3 = 0u;
  philox4x32_10(w0, w1, w2, w3, k);
}

// The bits of a value as another type of the same size (memcpy: a register move on
// both compilers, and no aliasing questions).
template <class To, class From>
RCC_HD To bit_cast(From x) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To y;
  memcpy(&y, &x, sizeof y);
  return y;
}

RCC_HD uint32_t float_bits(float f) { return bit_cast<uint32_t>(f); }
RCC_HD float bits_float(uint32_t u) { return bit_cast<float>(u); }
RCC_HD uint64_t double_bits(double f) { return bit_cast<uint64_t>(f); }
RCC_HD double bits_double(uint64_t u) { return bit_cast<double>(u); }

// (w>>9 + 1/2) / 2^23: a uniform in [2^-24, 1 - 2^-24], exact in float (24 bits),
// never 0 or 1, the same on every IEEE platform.
RCC_HD float uniform_open(uint32_t w) {
  return (static_cast<float>(static_cast<int32_t>(w >> 9)) + 0.5f) * 0x1p-23f;
}

// Natural log of a positive normal float, |error| about 1 ulp: x = 2^e m with m in
// [sqrt(1/2), sqrt(2)) (exact, through the bits), then log m = 2 atanh(f) with
// f = (m - 1)/(m + 1), |f| <= 0.1716, as 2f (1 + s/3 + s^2/5 + s^3/7 + s^4/9), s = f^2
// (truncation below 1e-9), and e log 2 added in two parts (Cephes' split of log 2).
RCC_HD float log_float(float x) {
  const uint32_t ix = float_bits(x) - 0x3F3504F3u;
  const int32_t e = static_cast<int32_t>(ix) >> 23;
  const float m = bits_float((ix & 0x007FFFFFu) + 0x3F3504F3u);
  const float f = (m - 1.0f) / (m + 1.0f);
  const float s = f * f;
  float p = 0.11111111f;  // 1/9
  p = p * s + 0.14285715f;  // 1/7
  p = p * s + 0.2f;
  p = p * s + 0.33333334f;  // 1/3
  const float f2 = f + f;
  const float fe = static_cast<float>(e);
  float r = f2 * s * p + -2.12194440e-4f * fe;
  r = r + f2;
  return r + 0.693359375f * fe;
}

// Natural log of a positive normal double (|error| about 1 ulp): exact reduction to
// m in [sqrt(1/2), sqrt(2)), then 2 atanh((m-1)/(m+1)) as a series in s = f^2.
RCC_HD double log_double(double x) {
  const uint64_t ix = double_bits(x) - 0x3FE6A09E667F3BCDull;
  const int64_t e = static_cast<int64_t>(ix) >> 52;
  const double m = bits_double((ix & 0x000FFFFFFFFFFFFFull) + 0x3FE6A09E667F3BCDull);
  const double f = (m - 1.0) / (m + 1.0);
  const double s = f * f;
  double p = 1.0 / 21.0;
  p = p * s + 1.0 / 19.0;
  p = p * s + 1.0 / 17.0;
  p = p * s + 1.0 / 15.0;
  p = p * s + 1.0 / 13.0;
  p = p * s + 1.0 / 11.0;
  p = p * s + 1.0 / 9.0;
  p = p * s + 1.0 / 7.0;
  p = p * s + 1.0 / 5.0;
  p = p * s + 1.0 / 3.0;
  const double f2 = f + f;
  const double logm = f2 + f2 * s * p;
  const double de = static_cast<double>(e);
  return de * 6.93147180369123816490e-01 + (de * 1.90821492927058770002e-10 + logm);
}

// The square of the Box-Muller radius from a radius word: -2 log u.
RCC_HD float radius_squared(uint32_t wr) { return -2.0f * log_float(uniform_open(wr)); }

// IEEE-754 square root (correctly rounded on every platform). The vectorised CPU
// kernels call their instruction set's sqrt instead, which rounds the same way.
RCC_HD float sqrt_float(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return std::sqrt(x);
#endif
}

// Box-Muller given the radius r and the angle word: out0 = r cos t, out1 = r sin t
// with t = 2 pi (wa + 1/2) / 2^32 = q pi/2 + x, |x| <= pi/4, reduced in integers.
RCC_HD void rotate(float r, uint32_t wa, float& out0, float& out1) {
  const uint32_t s = wa + 0x20000000u;
  const uint32_t q = s >> 30;
  const int32_t v = 2 * (static_cast<int32_t>((s & 0x3FFFFFFFu) >> 6) - 0x800000) + 1;
  const float x = static_cast<float>(v) * 0x1.921fb6p-25f;  // (pi/2) / 2^25 in float
  const float z = x * x;
  float sn = -1.9515295891e-4f;
  sn = sn * z + 8.3321608736e-3f;
  sn = sn * z - 1.6666654611e-1f;
  sn = sn * z * x + x;
  float cs = 2.443315711809948e-5f;
  cs = cs * z - 1.388731625493765e-3f;
  cs = cs * z + 4.166664568298827e-2f;
  cs = cs * z * z - 0.5f * z + 1.0f;
  const bool swap = (q & 1u) != 0u;
  const float c = swap ? sn : cs;
  const float sv = swap ? cs : sn;
  const uint32_t sign_c = ((q + 1u) & 2u) << 30;
  const uint32_t sign_s = (q & 2u) << 30;
  out0 = r * bits_float(float_bits(c) ^ sign_c);
  out1 = r * bits_float(float_bits(sv) ^ sign_s);
}

// Box-Muller on one radius word and one angle word.
RCC_HD void box_muller(uint32_t wr, uint32_t wa, float& out0, float& out1) {
  rotate(sqrt_float(radius_squared(wr)), wa, out0, out1);
}

// The four normals of block `block` (normals 4*block ... 4*block + 3).
RCC_HD void normal_block(uint64_t block, Key k, float& n0, float& n1, float& n2, float& n3) {
  uint32_t w0, w1, w2, w3;
  philox_block(block, kDomainNormal, k, w0, w1, w2, w3);
  box_muller(w0, w1, n0, n1);
  box_muller(w2, w3, n2, n3);
}

// One Exp(1) draw from a word, in fixed point with 32 fraction bits.
RCC_HD uint64_t exponential_fixed(uint32_t w) {
  const float e = -log_float(uniform_open(w));
  return static_cast<uint64_t>(static_cast<double>(e) * 4294967296.0);
}

// Score offset of an arrival time given as a fixed-point integer sum (each draw is
// at least -log(1 - 2^-24) > 2^-24, so the sum is at least 2^8):
// log T = log(sum) - 32 log 2, the constant dropped (it cancels in the argmin).
RCC_HD double log_arrival(uint64_t fixed_sum) { return log_double(static_cast<double>(fixed_sum)); }

}  // namespace rcc
}  // namespace gencodec
