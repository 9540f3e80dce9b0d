// PFR encoder and decoder on the CPU: arrival times, OpenMP across candidate groups,
// the instruction-set dispatch of the scoring kernel, the dimension permutation and
// the chunks of a step (pfr_step.cpp codes whole steps).
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
  const int64_t padded = padded_dims(d);
  cf.quad.assign(padded, 0.0f);
  cf.lin.assign(padded, 0.0f);
  for (int64_t i = 0; i < d; ++i) {
    cf.quad[i] = quad_coeff(s_q[i], s_p[i]);
    cf.lin[i] = lin_coeff(mu_q[i], s_q[i], mu_p[i], s_p[i]);
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

}  // namespace

// GENCODEC_RCC_KERNEL=generic|avx2|avx512 forces a kernel (tests compare them).
const CpuKernel& select_cpu_kernel() {
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

const char* cpu_kernel_name() { return select_cpu_kernel().name; }

// Exp(1) draws of candidates 4q ... 4q+3 into t (not yet summed).
static inline void exponentials(Key key, uint64_t K, int64_t q, uint64_t* t) {
  uint32_t w[4];
  philox_block(static_cast<uint64_t>(q), kDomainArrival, key, w[0], w[1], w[2], w[3]);
  for (int r = 0; r < 4; ++r) {
    const uint64_t j = 4 * static_cast<uint64_t>(q) + r;
    if (j < K) t[j] = exponential_fixed(w[r]);
  }
}

static inline void prefix_sums(uint64_t K, uint64_t* t) {
  uint64_t sum = 0;
  for (uint64_t j = 0; j < K; ++j) {
    sum += t[j];
    t[j] = sum;
  }
}

std::vector<uint64_t> arrival_times(Key key, uint64_t K) {
  std::vector<uint64_t> t(K);
  const int64_t blocks = static_cast<int64_t>((K + 3) / 4);
#pragma omp parallel for schedule(static) if (blocks > 4096)
  for (int64_t q = 0; q < blocks; ++q) exponentials(key, K, q, t.data());
  prefix_sums(K, t.data());
  return t;
}

void arrival_times_serial(Key key, uint64_t K, uint64_t* out) {
  const int64_t blocks = static_cast<int64_t>((K + 3) / 4);
  for (int64_t q = 0; q < blocks; ++q) exponentials(key, K, q, out);
  prefix_sums(K, out);
}

void normals_range(const CpuKernel& kernel, Key key, uint64_t start, int64_t count, float* out,
                   std::vector<float>& buffer) {
  if (count <= 0) return;
  const uint64_t first = start / kNormalsPerBlock;
  const uint64_t last = (start + static_cast<uint64_t>(count) - 1) / kNormalsPerBlock;
  const int64_t blocks = static_cast<int64_t>(last - first + 1);
  buffer.resize(static_cast<size_t>(kNormalsPerBlock * blocks));
  kernel.normals(key, first, blocks, buffer.data());
  std::copy_n(buffer.data() + (start - kNormalsPerBlock * first), count, out);
}

void normals_cpu(Key key, uint64_t start, int64_t count, float* out) {
  if (count <= 0) return;
  const CpuKernel& kernel = select_cpu_kernel();
  constexpr int64_t kPiece = 1 << 16;  // normals per piece (pieces in parallel)
  const int64_t pieces = (count + kPiece - 1) / kPiece;
#pragma omp parallel if (pieces > 1)
  {
    std::vector<float> buffer;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pieces; ++p) {
      const int64_t n = std::min(kPiece, count - p * kPiece);
      normals_range(kernel, key, start + static_cast<uint64_t>(p * kPiece), n, out + p * kPiece,
                    buffer);
    }
  }
}

void check_chunk_bits(int k) {
  if (k < kMinChunkBits || k > kMaxChunkBits) {
    throw std::invalid_argument("chunk_bits must be in [" + std::to_string(kMinChunkBits) + ", " +
                                std::to_string(kMaxChunkBits) + "], got " + std::to_string(k));
  }
}

uint64_t pfr_argmin_cpu(const CpuKernel& kernel, const ScoreArgs& a, int threads) {
  const uint64_t lanes = static_cast<uint64_t>(kernel.lanes);
  const uint64_t groups = (a.K + lanes - 1) / lanes;
  Best best{std::numeric_limits<double>::infinity(), std::numeric_limits<uint64_t>::max()};
  if (threads <= 1 || groups * static_cast<uint64_t>(a.d) <= 4096) {
    kernel.score(a, 0, groups * lanes, best);
    return best.index < a.K ? best.index : a.K;
  }
#pragma omp parallel num_threads(threads)
  {
    Best mine{std::numeric_limits<double>::infinity(), std::numeric_limits<uint64_t>::max()};
    // Contiguous pieces handed out dynamically, so a busy core does not hold up the rest.
    const uint64_t piece =
        std::max<uint64_t>(1, groups / (16 * static_cast<uint64_t>(omp_get_num_threads())));
    const int64_t pieces = static_cast<int64_t>((groups + piece - 1) / piece);
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < pieces; ++p) {
      const uint64_t g0 = static_cast<uint64_t>(p) * piece;
      kernel.score(a, g0 * lanes, std::min(groups, g0 + piece) * lanes, mine);
    }
#pragma omp critical(gencodec_rcc_best)
    if (better(mine.score, mine.index, best.score, best.index)) best = mine;
  }
  return best.index < a.K ? best.index : a.K;
}

uint64_t pfr_encode_cpu(const ChunkCoeffs& cf, Key key, int k) {
  check_chunk_bits(k);
  const uint64_t K = uint64_t{1} << k;
  const std::vector<uint64_t> arrival = arrival_times(key, K);
  const ScoreArgs args{cf.quad.data(), cf.lin.data(), cf.d, key, arrival.data(), K,
                       normal_table()};
  const uint64_t index = pfr_argmin_cpu(select_cpu_kernel(), args, omp_get_max_threads());
  if (index >= K) throw std::runtime_error("PFR found no finite score (non-finite coefficients?)");
  return index;
}

void candidate_sample(const double* mu_p, const double* s_p, int64_t d, const float* normals,
                      float* out) {
  for (int64_t i = 0; i < d; ++i) {
    out[i] = static_cast<float>(mu_p[i] + s_p[i] * static_cast<double>(normals[i]));
  }
}

template <class T>
static void permutation_into(int64_t n, uint64_t seed, uint64_t step, T* p) {
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(i);
  const Key key = split_key(derive_key(seed, step, 0));
  // Draw m (for i = n-1-m): 64 bits r from words 2(m%2), 2(m%2)+1 of block m/2, and i
  // swaps with j = floor(r (i+1) / 2^64). The draws of a batch come first, so the
  // swaps can prefetch the random positions they will touch.
  constexpr int64_t kBatch = 512, kAhead = 16;
  const int64_t draws = n - 1;
  const CpuKernel& kernel = select_cpu_kernel();
  T js[kBatch];
  uint32_t w[2 * kBatch];  // the words of the batch's kBatch / 2 blocks
  for (int64_t m0 = 0; m0 < draws; m0 += kBatch) {
    const int64_t count = std::min(kBatch, draws - m0);
    kernel.words(key, kDomainPermutation, static_cast<uint64_t>(m0) >> 1, (count + 1) / 2, w);
    for (int64_t q = 0; q < count; ++q) {
      const uint64_t r =
          static_cast<uint64_t>(w[2 * q]) | (static_cast<uint64_t>(w[2 * q + 1]) << 32);
      const uint64_t bound = static_cast<uint64_t>(n - (m0 + q));  // i + 1
      js[q] = static_cast<T>((static_cast<unsigned __int128>(r) * bound) >> 64);
    }
    for (int64_t q = 0; q < count; ++q) {
      if (q + kAhead < count) __builtin_prefetch(p + js[q + kAhead], 1);
      std::swap(p[n - 1 - (m0 + q)], p[js[q]]);
    }
  }
}

std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t step) {
  if (n < 0) throw std::invalid_argument("permutation size must be >= 0, got " + std::to_string(n));
  std::vector<int64_t> p(static_cast<size_t>(n));
  permutation_into(n, seed, step, p.data());
  return p;
}

StepChunks::StepChunks(int64_t n_dims_, int64_t n_chunks_, uint64_t seed, uint64_t step)
    : n_dims(n_dims_), n_chunks(n_chunks_) {
  if (n_dims < 1 || n_dims > int64_t{UINT32_MAX}) {
    throw std::invalid_argument("a step has 1 ... 2^32 - 1 dimensions, got " +
                                std::to_string(n_dims));
  }
  if (n_chunks < 1 || n_chunks > n_dims) {
    throw std::invalid_argument("cannot split " + std::to_string(n_dims) + " dimensions into " +
                                std::to_string(n_chunks) +
                                " chunks: every chunk needs at least 1 dimension");
  }
  perm.resize(static_cast<size_t>(n_dims));
  permutation_into(n_dims, seed, step, perm.data());
}

}  // namespace rcc
}  // namespace gencodec
