// PFR encoder and decoder on the CPU: arrival times, OpenMP across candidate groups,
// the instruction-set dispatch of the scoring kernel, and the dimension permutation.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "rcc/pfr.hpp"

namespace gencodec {
namespace rcc {

ChunkCoeffs make_coeffs(const double* mu_q, const double* s_q, const double* mu_p,
                        const double* s_p, int64_t d) {
  if (d <= 0)
    throw std::invalid_argument("PFR chunk needs at least 1 dimension, got " + std::to_string(d));
  ChunkCoeffs cf;
  cf.d = d;
  const int64_t padded = (d + 3) / 4 * 4;
  cf.c.assign(padded, 0.0f);
  cf.e.assign(padded, 1.0f);
  cf.b.assign(padded, 0.0f);
  for (int64_t i = 0; i < d; ++i) {
    cf.c[i] = static_cast<float>((s_q[i] - s_p[i]) / s_q[i]);
    cf.e[i] = static_cast<float>((s_q[i] + s_p[i]) / s_q[i]);
    cf.b[i] = static_cast<float>((mu_p[i] - mu_q[i]) / s_q[i]);
  }
  return cf;
}

namespace {

const CpuKernel& detect_kernel() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
    return kKernelAvx512;
  }
  if (__builtin_cpu_supports("avx2")) return kKernelAvx2;
#endif
  return kKernelGeneric;
}

// GENCODEC_RCC_KERNEL=generic|avx2|avx512 forces a kernel (tests compare them).
const CpuKernel& select_kernel() {
  const CpuKernel& best = detect_kernel();
  const char* env = std::getenv("GENCODEC_RCC_KERNEL");
  if (env == nullptr || *env == '\0') return best;
  const std::string want(env);
  if (want == "generic") return kKernelGeneric;
  if (want == "avx2" && (&best == &kKernelAvx2 || &best == &kKernelAvx512)) return kKernelAvx2;
  if (want == best.name) return best;
  throw std::invalid_argument("GENCODEC_RCC_KERNEL=" + want +
                              " is not available here (best: " + best.name + ")");
}

}  // namespace

const char* cpu_kernel_name() { return select_kernel().name; }

std::vector<uint64_t> arrival_times(Key key, uint64_t K) {
  std::vector<uint64_t> t(K);
  const int64_t blocks = static_cast<int64_t>((K + 3) / 4);
#pragma omp parallel for schedule(static) if (blocks > 4096)
  for (int64_t q = 0; q < blocks; ++q) {
    uint32_t w[4];
    philox_block(static_cast<uint64_t>(q), kDomainArrival, key, w[0], w[1], w[2], w[3]);
    for (int r = 0; r < 4; ++r) {
      const uint64_t j = 4 * static_cast<uint64_t>(q) + r;
      if (j < K) t[j] = exponential_fixed(w[r]);
    }
  }
  uint64_t sum = 0;
  for (uint64_t j = 0; j < K; ++j) {
    sum += t[j];
    t[j] = sum;
  }
  return t;
}

void normals_cpu(Key key, uint64_t start, int64_t count, float* out) {
  if (count <= 0) return;
  const uint64_t first = start >> 2, last = (start + static_cast<uint64_t>(count) - 1) >> 2;
  const int64_t blocks = static_cast<int64_t>(last - first + 1);
#pragma omp parallel for schedule(static) if (blocks > 65536)
  for (int64_t q = 0; q < blocks; ++q) {
    const uint64_t blk = first + static_cast<uint64_t>(q);
    float n[4];
    normal_block(blk, key, n[0], n[1], n[2], n[3]);
    for (int r = 0; r < 4; ++r) {
      const uint64_t idx = 4 * blk + r;
      if (idx >= start && idx - start < static_cast<uint64_t>(count)) out[idx - start] = n[r];
    }
  }
}

void check_chunk_bits(int k) {
  if (k < kMinChunkBits || k > kMaxChunkBits) {
    throw std::invalid_argument("chunk_bits must be in [" + std::to_string(kMinChunkBits) + ", " +
                                std::to_string(kMaxChunkBits) + "], got " + std::to_string(k));
  }
}

uint64_t pfr_encode_cpu(const ChunkCoeffs& cf, Key key, int k) {
  check_chunk_bits(k);
  const uint64_t K = uint64_t{1} << k;
  const std::vector<uint64_t> arrival = arrival_times(key, K);
  const ScoreArgs args{cf.c.data(), cf.e.data(), cf.b.data(), cf.d, key, arrival.data(), K};
  const CpuKernel& kernel = select_kernel();
  const uint64_t lanes = static_cast<uint64_t>(kernel.lanes);
  const uint64_t groups = (K + lanes - 1) / lanes;
  Best best{std::numeric_limits<double>::infinity(), std::numeric_limits<uint64_t>::max()};
#pragma omp parallel if (groups * static_cast<uint64_t>(cf.d) > 4096)
  {
    Best mine{std::numeric_limits<double>::infinity(), std::numeric_limits<uint64_t>::max()};
    // Contiguous pieces handed out dynamically, so a busy core does not hold up the rest.
    const uint64_t piece =
        std::max<uint64_t>(1, groups / (16 * static_cast<uint64_t>(omp_get_num_threads())));
    const int64_t pieces = static_cast<int64_t>((groups + piece - 1) / piece);
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < pieces; ++p) {
      const uint64_t g0 = static_cast<uint64_t>(p) * piece;
      kernel.score(args, g0 * lanes, std::min(groups, g0 + piece) * lanes, mine);
    }
#pragma omp critical(gencodec_rcc_best)
    if (better(mine.score, mine.index, best.score, best.index)) best = mine;
  }
  if (best.index >= K)
    throw std::runtime_error("PFR found no finite score (non-finite coefficients?)");
  return best.index;
}

void candidate_sample(const double* mu_p, const double* s_p, int64_t d, const float* normals,
                      float* out) {
  for (int64_t i = 0; i < d; ++i) {
    out[i] = static_cast<float>(mu_p[i] + s_p[i] * static_cast<double>(normals[i]));
  }
}

std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t step) {
  if (n < 0) throw std::invalid_argument("permutation size must be >= 0, got " + std::to_string(n));
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  const Key key = split_key(derive_key(seed, step, 0));
  uint32_t w[4] = {0, 0, 0, 0};
  for (int64_t i = n - 1, m = 0; i >= 1; --i, ++m) {
    // Draw m: 64 bits from words 2(m%2), 2(m%2)+1 of block m/2; j = floor(r (i+1) / 2^64).
    if ((m & 1) == 0) {
      philox_block(static_cast<uint64_t>(m) >> 1, kDomainPermutation, key, w[0], w[1], w[2], w[3]);
    }
    const int h = 2 * static_cast<int>(m & 1);
    const uint64_t r = static_cast<uint64_t>(w[h]) | (static_cast<uint64_t>(w[h + 1]) << 32);
    const uint64_t j = static_cast<uint64_t>(
        (static_cast<unsigned __int128>(r) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(p[i], p[j]);
  }
  return p;
}

}  // namespace rcc
}  // namespace gencodec
