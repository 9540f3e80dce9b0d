// Where the CPU coder's time goes, one thread: Philox4x32-7 words alone, plus the
// normals from the quantile table, and the whole scoring kernel (words, normals, the
// log-weight terms, the argmin), on a 16-bit chunk at d = 1024, with the AVX-512
// kernel (default) or the AVX2 one (-DRCC_CEILING_AVX2). Every figure is per normal,
// eight normals per Philox block (PFR format 2, native/rcc/philox.hpp). The first is a
// ceiling for any coder that draws its candidates from this generator:
// benchmarks/rcc.py compares the whole coder with PyTorch. The second stage runs the
// portable lane code (words through memory, as the decoder draws them); the AVX2
// scoring kernel keeps the words in registers and loads the table entries straight
// from them, so its whole figure can be below the second.
//
// Beside them, with the same 8-lane AVX2 code, the words of Philox4x32-10 (format 1's
// generator) against -7, the price of the rounds the format saved.
//
// With -DRCC_CEILING_AVX2, two more bounds from the AVX2 kernel's own loop
// (score_group_with) with stand-ins that draw no normal distribution: a generator of
// one multiply per vector in place of the Philox rounds (what any cheaper generator
// could gain with this table), and that generator with the words' halves scaled to
// floats in place of the table lookups (what remains for the terms and the argmin: the
// most any new transform could gain).
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

// The first stages of the scoring kernel for every candidate group of the chunk:
// the Philox words of the candidates' rows, then (kTable) their normals.
template <bool kTable>
uint32_t stages(uint64_t K, int64_t d, Key key) {
  alignas(64) uint64_t row[kKernelLanes];
  alignas(64) uint32_t w0[kKernelLanes], w1[kKernelLanes], w2[kKernelLanes], w3[kKernelLanes];
  alignas(64) float n[8][kKernelLanes];
  const uint32_t* const w[4] = {w0, w1, w2, w3};
  const float* table = normal_table();
  uint32_t sink = 0;
  for (uint64_t g = 0; g * kKernelLanes < K; ++g) {
    for (int l = 0; l < kKernelLanes; ++l) row[l] = (g * kKernelLanes + l) << 32;
    for (int64_t t = 0; t < d / 8; ++t) {
      philox_lanes(row, static_cast<uint64_t>(t), key, w0, w1, w2, w3);
      if (kTable) {
        table_normals(table, w, n);
        sink ^= float_bits(n[t % 8][t % kKernelLanes]) ^ float_bits(n[7][0]);
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
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  __m256i sink = _mm256_setzero_si256();
  for (uint64_t g = 0; g * 8 < K; ++g) {
    for (int64_t t = 0; t < d / 8; ++t) {  // two 4-lane vectors: 8 lanes
      __m256i a[2][4];
      for (int v = 0; v < 2; ++v) {
        const uint64_t j = g * 8 + 4 * v;
        a[v][0] = _mm256_set1_epi64x(t);
        a[v][1] = _mm256_setr_epi64x(j, j + 1, j + 2, j + 3);
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
        k0 += kPhiloxW0;
        k1 += kPhiloxW1;
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

#if defined(RCC_CEILING_AVX2)
#pragma GCC push_options
#pragma GCC target("avx2")
// Stand-ins for the bounds only: neither is random enough or normal.
struct StandInWords {
  static void rounds(Key, __m256i* c0, __m256i* c1, __m256i* c2, __m256i* c3) {
    const __m256i m = _mm256_set1_epi64x(static_cast<long long>(0x9E3779B97F4A7C15ull));
    for (int v = 0; v < kChains; ++v) {
      const __m256i x = _mm256_mul_epu32(_mm256_add_epi64(c0[v], c1[v]), m);
      c0[v] = x;
      c1[v] = _mm256_srli_epi64(x, 32);
      c2[v] = _mm256_xor_si256(x, m);
      c3[v] = _mm256_add_epi64(x, m);
    }
  }
};
struct StandInNormals {
  static void of(const float*, __m256i w, __m256* low, __m256* high) {
    const __m256 scale = _mm256_set1_ps(1.0f / 8192.0f);
    const __m256i mask = _mm256_set1_epi32(static_cast<int>(kNormalMask));
    *low = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(w, mask)), scale);
    *high = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(w, 18)), scale);
  }
};

// The AVX2 kernel's loop over every candidate group with the given parts.
template <class Words, class Normals>
void score_with(const ScoreArgs& a, Best& best) {
  for (uint64_t g = 0; g * kKernelLanes < a.K; ++g) score_group_with<Words, Normals>(a, g, best);
}
#pragma GCC pop_options
#endif

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
  std::vector<float> quad(d, 0.0396f), lin(d);  // s_q = 1, s_p = 0.98, small mean shifts
  for (int64_t i = 0; i < d; ++i) lin[i] = 0.0196f * static_cast<float>((i * 7919) % 13 - 6);
  std::vector<uint64_t> arrival(K);
  for (uint64_t j = 0; j < K; ++j) arrival[j] = (j + 1) << 32;
  const ScoreArgs args{quad.data(), lin.data(), d, key, arrival.data(), K, normal_table()};

  volatile uint32_t sink = 0;
  const double n = static_cast<double>(K) * static_cast<double>(d);
  const double t_words = best_seconds([&] { sink = sink ^ stages<false>(K, d, key); });
  const double t_table = best_seconds([&] { sink = sink ^ stages<true>(K, d, key); });
  Best best{};
  const double t_all = best_seconds([&] {
    best = Best{1e300, 0};
    RCC_CEILING_KERNEL.score(args, 0, K, best);
  });
  std::printf("one thread, k = 16, d = %lld (%.3g normals per chunk), %s kernel\n",
              static_cast<long long>(d), n, RCC_CEILING_KERNEL.name);
  std::printf("  %-36s %12s %10s\n", "stage", "normals/s", "ns/normal");
  auto row = [n](const char* what, double t) {
    std::printf("  %-36s %12.3e %10.3f\n", what, n / t, 1e9 * t / n);
  };
  row("Philox4x32-7 words", t_words);
  row("+ normals (lane code, the decoder's)", t_table);
  row("whole kernel (+ terms, argmin)", t_all);
  std::printf("  (selected index %llu)\n", static_cast<unsigned long long>(best.index));
#if defined(RCC_CEILING_AVX2)
  const double t_gen = best_seconds([&] {
    Best b{1e300, 0};
    score_with<StandInWords, TableNormals>(args, b);
    sink = sink ^ static_cast<uint32_t>(b.index);
  });
  const double t_both = best_seconds([&] {
    Best b{1e300, 0};
    score_with<StandInWords, StandInNormals>(args, b);
    sink = sink ^ static_cast<uint32_t>(b.index);
  });
  std::printf("  %-36s %12s %10s %8s\n", "bounds: the kernel's loop with", "normals/s",
              "ns/normal", "speed-up");
  auto bound = [&](const char* what, double t) {
    std::printf("  %-36s %12.3e %10.3f %7.2fx\n", what, n / t, 1e9 * t / n, t_all / t);
  };
  bound("a stand-in generator", t_gen);
  bound("a stand-in generator and transform", t_both);
#endif

  const double t_p10 = best_seconds([&] { sink = sink ^ philox_words<10>(K, d, key); });
  const double t_p7 = best_seconds([&] { sink = sink ^ philox_words<7>(K, d, key); });
  std::printf("  %-36s %12s %10s\n", "generators (8-lane AVX2 code)", "normals/s", "ns/normal");
  row("Philox4x32-10 words (format 1)", t_p10);
  row("Philox4x32-7 words (format 2)", t_p7);
  return 0;
}
