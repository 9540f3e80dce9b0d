// Where the CPU coder's time goes, one thread, AVX-512 kernel: Philox4x32-10 alone,
// Philox plus the Box-Muller radii, and the whole scoring kernel (radii, angles, the
// log-weight terms, the argmin), on a 16-bit chunk at d = 1024. The first figure is a
// ceiling for any coder that draws its candidates from this generator: benchmarks/rcc.py
// compares the whole coder with PyTorch.
//
//   g++ -O3 -std=c++17 -ffp-contract=off -fopenmp -Inative benchmarks/rcc_ceiling.cpp \
//       -o /tmp/rcc_ceiling && /tmp/rcc_ceiling
//
// It includes the kernel's translation unit, so it times the very code the library runs.
#include "rcc/pfr_kernel_avx512.cpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace gencodec {
namespace rcc {
namespace {

template <class F>
double best_seconds(F f, int repeats = 5) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
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

}  // namespace
}  // namespace rcc
}  // namespace gencodec

int main() {
  using namespace gencodec::rcc;
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq")) {
    std::printf("this CPU has no AVX-512: nothing to measure\n");
    return 0;
  }
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
    kKernelAvx512.score(args, 0, K, best);
  });
  std::printf("one thread, k = 16, d = %lld (%.3g normals per chunk)\n", static_cast<long long>(d), n);
  std::printf("  %-34s %12s %10s\n", "stage", "normals/s", "ns/normal");
  std::printf("  %-34s %12.3e %10.3f\n", "Philox4x32-10 words", n / t_philox, 1e9 * t_philox / n);
  std::printf("  %-34s %12.3e %10.3f\n", "+ Box-Muller radii (log, sqrt)", n / t_radii, 1e9 * t_radii / n);
  std::printf("  %-34s %12.3e %10.3f\n", "whole kernel (+ angles, score)", n / t_all, 1e9 * t_all / n);
  std::printf("  (selected index %llu)\n", static_cast<unsigned long long>(best.index));
  return 0;
}
