// Shared randomness for reverse-channel coding: Philox4x32-7 (Salmon et al. 2011,
// "Parallel random numbers: as easy as 1, 2, 3", the Random123 generator at 7 rounds,
// which passes BigCrush), the key derivation from (seed, step, chunk), standard
// normals from a quantile table and exponentials. Everything here is compiled by both
// the C++ compiler and nvcc and uses only integer operations and IEEE-754 +, -, *, /
// and sqrt (no library log/sin/cos, no fused multiply-add: CMake builds with
// -ffp-contract=off and --fmad=false), so CPU and GPU produce the same bits for the
// same key and counter.
//
// Bitstream format, PFR format 2 (changing anything here changes every coded index;
// the golden vectors in tests/rcc/test_philox.py pin it). Format 1 (gencodec before
// December 2026) drew Philox4x32-10 words and Box-Muller normals; it is not decoded.
//   key64(seed, step, chunk) = mix(mix(mix(seed) ^ step) ^ chunk), with mix the
//     splitmix64 finaliser; the Philox key is {low 32 bits, high 32 bits}.
//   Philox counter of block b (64-bit) in domain D: {lo32(b), hi32(b), D, 0}.
//   Domains: 0 candidate normals, 1 arrival-time exponentials, 2 dimension permutation.
//   Normal number n (64-bit) = Q[h], h the low 14 bits of the 16-bit half n%2 (low
//     half first) of word (n/2)%4 of block n/8 of domain 0, and Q[i] =
//     Phi^-1((i + 1/2) / 2^14) rounded to float (normal_quantile below: AS241 in double
//     with log_double): 2^14 equally likely values, |n| <= 4.009, mean exactly 0 (Q is
//     antisymmetric). 14 bits keep the table at 64 KiB, close to the cores' fastest
//     caches: the CPU kernels read it for every normal.
//   Candidate j of a chunk with d dimensions = normals j*2^35 ... j*2^35 + d - 1: its
//     own row of blocks j*2^32 + t (counter {t, j, 0, 0}), dimensions 8t ... 8t+7 in
//     block t, so every candidate starts on a block (d <= 2^35).
//   Exponential number j = -log((u>>9 + 1/2) / 2^23) with u = word j%4 of block j/4
//     of domain 1, in fixed point: floor(value * 2^32) as an unsigned 64-bit integer,
//     so the arrival times (prefix sums) are exact integers on every platform.
//   Permutation of n dimensions (pfr_cpu.cpp): Fisher-Yates with key64(seed, step, 0)
//     in domain 2; draw m (for i = n-1-m) is the 64-bit r = words 2(m%2) | 2(m%2)+1 << 32
//     of block m/2, and i swaps with floor(r (i+1) / 2^64).
//   The operation sequences of log_float, and of quad_coeff, lin_coeff, term and term4
//     (pfr.hpp), are part of the format too: they fix the last bits of every
//     exponential and score.
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

// Rounds of the format's Philox4x32 (Random123 recommends 10 and finds 7 the fewest
// that pass BigCrush; the library's coder is faster by the rounds saved).
constexpr int kPhiloxRounds = 7;
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

// Philox4x32-R on the counter (c0, c1, c2, c3), in place, with key k.
template <int R>
RCC_HD void philox4x32_rounds(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, Key k) {
  uint32_t k0 = k.k0, k1 = k.k1;
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 10
#endif
  for (int r = 0; r < R; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// The format's generator: Philox4x32-7.
RCC_HD void philox4x32(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, Key k) {
  philox4x32_rounds<kPhiloxRounds>(c0, c1, c2, c3, k);
}

// The four words of block `block` in `domain`.
RCC_HD void philox_block(uint64_t block, uint32_t domain, Key k, uint32_t& w0, uint32_t& w1,
                         uint32_t& w2, uint32_t& w3) {
  w0 = static_cast<uint32_t>(block);
  w1 = static_cast<uint32_t>(block >> 32);
  w2 = domain;
  w3 = 0u;
  philox4x32(w0, w1, w2, w3, k);
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

// The version of the format above (kFormatVersion, gencodec.rcc.FORMAT_VERSION): what
// a DiffC payload written by this library needs to be decoded.
constexpr int kFormatVersion = 2;

// --- normals ---------------------------------------------------------------------
constexpr int kNormalBits = 14;                        // bits per normal
constexpr uint32_t kNormalLevels = 1u << kNormalBits;  // entries of the quantile table
constexpr uint32_t kNormalMask = kNormalLevels - 1;    // the bits of a half that count
constexpr int kNormalsPerBlock = 8;                    // two per 32-bit word
constexpr int kCandidateShift = 35;                    // candidate j starts at normal j << 35

// The first normal of candidate j (a row of blocks of its own).
RCC_HD uint64_t candidate_start(uint64_t j) { return j << kCandidateShift; }

// Phi^-1(p) for p in [2^-15, 1 - 2^-15] in double: Wichura's AS241 (PPND16, relative
// error about 1e-16), with log_double, so that the table is the same on every IEEE
// platform. Exactly antisymmetric: p and 1 - p give q and -q.
RCC_HD double normal_quantile(double p) {
  const double q = p - 0.5;
  if (q >= -0.425 && q <= 0.425) {
    const double r = 0.180625 - q * q;
    const double num =
        ((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) *
                 r + 45921.953931549871457) * r + 13731.693765509461125) * r +
          1971.5909503065514427) * r + 133.14166789178437745) * r + 3.387132872796366608;
    const double den =
        ((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) *
                 r + 21213.794301586595867) * r + 5394.1960214247511077) * r +
          687.1870074920579083) * r + 42.313330701600911252) * r + 1.0;
    return q * num / den;
  }
  // The tails, r = sqrt(-log(min(p, 1 - p))) <= 3.22 here (AS241's branch r <= 5).
  const double r = sqrt(-log_double(q < 0.0 ? p : 1.0 - p)) - 1.6;
  const double num =
      ((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r +
           0.24178072517745061177) * r + 1.27045825245236838258) * r +
         3.64784832476320460504) * r + 5.7694972214606914055) * r + 4.6303378461565452959) * r +
      1.42343711074968357734;
  const double den =
      ((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r +
           0.0151986665636164571966) * r + 0.14810397642748007459) * r +
         0.68976733498510000455) * r + 1.6763848301838038494) * r + 2.05319162663775882187) * r +
      1.0;
  const double x = num / den;
  return q < 0.0 ? -x : x;
}

// Entry i of the quantile table: Phi^-1((i + 1/2) / 2^14) in float.
RCC_HD float normal_table_entry(uint32_t i) {
  return static_cast<float>(
      normal_quantile((static_cast<double>(i) + 0.5) / static_cast<double>(kNormalLevels)));
}

// The eight normals of block `block` (normals 8*block ... 8*block + 7), from the
// quantile table (kNormalLevels floats, normal_table_entry).
RCC_HD void normal_block(uint64_t block, Key k, const float* table, float* n) {
  uint32_t w[4];
  philox_block(block, kDomainNormal, k, w[0], w[1], w[2], w[3]);
  for (int r = 0; r < 4; ++r) {
    n[2 * r] = table[w[r] & kNormalMask];
    n[2 * r + 1] = table[(w[r] >> 16) & kNormalMask];
  }
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
