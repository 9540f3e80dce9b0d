// Where the CPU coder's time goes, one thread: Philox4x32-10 alone, Philox plus the
// Box-Muller radii, and the whole scoring kernel (radii, angles, the log-weight terms,
// the argmin), on a 16-bit chunk at d = 1024, with the AVX-512 kernel (default) or the
// AVX2 one (-DRCC_CEILING_AVX2). The first figure is a ceiling for any coder that draws
// its candidates from this generator: benchmarks/rcc.py compares the whole coder with
// PyTorch.
//
// Two cheaper transforms that a new stream format could adopt are timed beside them
// with the same 8-lane AVX2 code (they are not the library's format): Philox4x32-7
// against -10 words, and Box-Muller radii with a division-free log (log1p(f) = f +
// f^2 q(f), q of degree 7, |error| < 2.3e-8) against the library's log_float.
//
//   g++ -O3 -std=c++17 -ffp-contract=off -fopenmp -Inative benchmarks/rcc_ceiling.cpp \
//       -o /tmp/rcc_ceiling && /tmp/rcc_ceiling          # add -DRCC_CEILING_AVX2 for AVX2
//
// It includes the kernel's translation unit, so it times the very code the library runs.
#if defined(RCC_CEILING_AVX2)
#include "rcc/pfr_kernel_avx2.cpp"
#define RCC_CEILING_KERNEL kKernelAvx2
#else
#include "rcc/pfr_kernel_avx512.cpp"
#define RCC_CEILING_KERNEL kKernelAvx512
#endif

#include <algorithm>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <vector>

namespace gencodec {
namespace rcc {
namespace {

// The least thread CPU time of `repeats` runs (CPU time, not wall time: the figures
// hold on a machine shared with other work).
template <class F>
double best_seconds(F f, int repeats = 5) {
  auto now = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now();
    f();
    best = std::min(best, now() - t0);
  }
  return best;
}

// The first two stages of score_group, for every candidate group of the chunk.
template <bool kRadii>
uint32_t stages(uint64_t K, int64_t d, Key key) {
  alignas(64) uint64_t blk[kKernelLanes];
  alignas(64) uint32_t w0[kKernelLanes], w1[kKernelLanes], w2[kKernelLanes], w3[kKernelLanes];
  alignas(64) float r0[kKernelLanes], r1[kKernelLanes];
  uint32_t sink = 0;
  for (uint64_t g = 0; g * kKernelLanes < K; ++g) {
    for (int l = 0; l < kKernelLanes; ++l) blk[l] = ((g * kKernelLanes + l) * d) >> 2;
    for (int64_t t = 0; t < d / 4; ++t) {
      philox_lanes(blk, static_cast<uint64_t>(t), key, w0, w1, w2, w3);
      if (kRadii) {
        radii(w0, w2, r0, r1);
        sink ^= float_bits(r0[t % kKernelLanes]) ^ float_bits(r1[0]);
      } else {
        sink ^= w0[t % kKernelLanes] ^ w1[0] ^ w2[1] ^ w3[2];
      }
    }
  }
  return sink;
}

// Philox4x32-R words of the same blocks as stages<false>, 8 lanes per AVX2 step.
template <int R>
__attribute__((target("avx2"))) uint32_t philox_words(uint64_t K, int64_t d, Key key) {
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53), m1 = _mm256_set1_epi64x(0xCD9E8D57);
  __m256i sink = _mm256_setzero_si256();
  for (uint64_t g = 0; g * 8 < K; ++g) {
    for (int64_t t = 0; t < d / 4; ++t) {  // two 4-lane vectors: 8 lanes
      __m256i a[2][4];
      for (int v = 0; v < 2; ++v) {
        const __m256i x = _mm256_set1_epi64x(static_cast<long long>(((g * 8 + v) * d >> 2) + t));
        a[v][0] = x;
        a[v][1] = _mm256_srli_epi64(x, 32);
        a[v][2] = _mm256_setzero_si256();
        a[v][3] = _mm256_setzero_si256();
      }
      uint32_t k0 = key.k0, k1 = key.k1;
#pragma GCC unroll 10
      for (int r = 0; r < R; ++r) {
        const __m256i k0v = _mm256_set1_epi32(static_cast<int>(k0));
        const __m256i k1v = _mm256_set1_epi32(static_cast<int>(k1));
        for (int v = 0; v < 2; ++v) {
          const __m256i p0 = _mm256_mul_epu32(a[v][0], m0), p1 = _mm256_mul_epu32(a[v][2], m1);
          a[v][0] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), a[v][1]), k0v);
          a[v][2] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), a[v][3]), k1v);
          a[v][1] = p1;
          a[v][3] = p0;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
      }
      for (int v = 0; v < 2; ++v)
        sink = _mm256_xor_si256(sink, _mm256_xor_si256(_mm256_xor_si256(a[v][0], a[v][1]),
                                                       _mm256_xor_si256(a[v][2], a[v][3])));
    }
  }
  alignas(32) uint32_t out[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), sink);
  return out[0] ^ out[5];
}

// log of a uniform_open value without a division: x = 2^e (1 + f), f in
// [sqrt(1/2) - 1, sqrt(2) - 1), log1p(f) = f + f^2 q(f) (least-squares fit).
inline float log_no_division(float x) {
  const uint32_t ix = float_bits(x) - 0x3F3504F3u;
  const int32_t e = static_cast<int32_t>(ix) >> 23;
  const float f = bits_float((ix & 0x007FFFFFu) + 0x3F3504F3u) - 1.0f;
  float q = 0.090043135f;
  q = q * f - 0.14257967f;
  q = q * f + 0.14806493f;
  q = q * f - 0.1657503f;
  q = q * f + 0.19973102f;
  q = q * f - 0.2500161f;
  q = q * f + 0.3333366f;
  q = q * f - 0.49999994f;
  return (f + f * f * q) + 0.6931471805599453f * static_cast<float>(e);
}

// Radii (-2 log u, then sqrt) of pseudo-random words, with either log, 8 lanes at a time.
template <bool kNoDivision>
__attribute__((target("avx2"))) float radii_of(uint64_t words) {
  alignas(32) float r[8];
  float sink = 0.0f;
  for (uint64_t w = 0; w < words; w += 8) {
#pragma omp simd
    for (int l = 0; l < 8; ++l) {
      const uint32_t u = static_cast<uint32_t>(w + l) * 0x9E3779B9u;
      const float x = uniform_open(u);
      r[l] = -2.0f * (kNoDivision ? log_no_division(x) : log_float(x));
    }
    _mm256_store_ps(r, _mm256_sqrt_ps(_mm256_load_ps(r)));
    sink += r[w % 8];
  }
  return sink;
}

}  // namespace
}  // namespace rcc
}  // namespace gencodec

int main() {
  using namespace gencodec::rcc;
#if defined(RCC_CEILING_AVX2)
  if (!__builtin_cpu_supports("avx2")) {
    std::printf("this CPU has no AVX2: nothing to measure\n");
    return 0;
  }
#else
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq")) {
    std::printf("this CPU has no AVX-512: build with -DRCC_CEILING_AVX2\n");
    return 0;
  }
#endif
  const int64_t d = 1024;
  const uint64_t K = uint64_t{1} << 16;
  const Key key{0x1234u, 0x5678u};
  std::vector<float> c(d, 0.02f), e(d, 1.98f), b(d);
  for (int64_t i = 0; i < d; ++i) b[i] = 0.01f * static_cast<float>((i * 7919) % 13 - 6);
  std::vector<uint64_t> arrival(K);
  for (uint64_t j = 0; j < K; ++j) arrival[j] = (j + 1) << 32;
  const ScoreArgs args{c.data(), e.data(), b.data(), d, key, arrival.data(), K};

  volatile uint32_t sink = 0;
  const double n = static_cast<double>(K) * static_cast<double>(d);
  const double t_philox = best_seconds([&] { sink = sink ^ stages<false>(K, d, key); });
  const double t_radii = best_seconds([&] { sink = sink ^ stages<true>(K, d, key); });
  Best best{};
  const double t_all = best_seconds([&] {
    best = Best{1e300, 0};
    RCC_CEILING_KERNEL.score(args, 0, K, best);
  });
  std::printf("one thread, k = 16, d = %lld (%.3g normals per chunk)\n", static_cast<long long>(d), n);
  std::printf("  %-34s %12s %10s\n", "stage", "normals/s", "ns/normal");
  std::printf("  %-34s %12.3e %10.3f\n", "Philox4x32-10 words", n / t_philox, 1e9 * t_philox / n);
  std::printf("  %-34s %12.3e %10.3f\n", "+ Box-Muller radii (log, sqrt)", n / t_radii, 1e9 * t_radii / n);
  std::printf("  %-34s %12.3e %10.3f\n", "whole kernel (+ angles, score)", n / t_all, 1e9 * t_all / n);
  std::printf("  (selected index %llu)\n", static_cast<unsigned long long>(best.index));

  // Candidate transforms of a new format (same AVX2 code for both sides of each pair).
  volatile float fsink = 0.0f;
  const double t_p10 = best_seconds([&] { sink = sink ^ philox_words<10>(K, d, key); });
  const double t_p7 = best_seconds([&] { sink = sink ^ philox_words<7>(K, d, key); });
  const uint64_t words = static_cast<uint64_t>(n) / 2;  // one radius per two normals
  const double t_log = best_seconds([&] { fsink = fsink + radii_of<false>(words); });
  const double t_nodiv = best_seconds([&] { fsink = fsink + radii_of<true>(words); });
  double worst = 0.0;
  for (uint32_t u = 0; u < (1u << 23); ++u) {
    const double x = (static_cast<double>(u) + 0.5) * 0x1p-23;
    worst = std::max(worst, std::fabs(static_cast<double>(log_no_division(static_cast<float>(x))) -
                                       std::log(x)));
  }
  std::printf("  %-34s %12s %10s\n", "candidate transforms (AVX2 code)", "normals/s", "ns/normal");
  std::printf("  %-34s %12.3e %10.3f\n", "Philox4x32-10 words", n / t_p10, 1e9 * t_p10 / n);
  std::printf("  %-34s %12.3e %10.3f\n", "Philox4x32-7 words", n / t_p7, 1e9 * t_p7 / n);
  std::printf("  %-34s %12.3e %10.3f\n", "radii, log_float (division)", n / t_log, 1e9 * t_log / n);
  std::printf("  %-34s %12.3e %10.3f\n", "radii, division-free log", n / t_nodiv,
              1e9 * t_nodiv / n);
  const double saved = (t_p10 - t_p7) + (t_log - t_nodiv);
  std::printf("  whole kernel with both: about %.3e normals/s (%.2fx), division-free log "
              "|error| <= %.2g over all 2^23 uniforms\n",
              n / (t_all - saved), t_all / (t_all - saved), worst);
  return 0;
}
