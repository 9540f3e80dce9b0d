// Poisson functional representation (PFR) for diagonal Gaussians: the encoder picks,
// among K = 2^k candidates z_j = mu_p + s_p * n_j drawn from p with shared randomness,
//   j* = argmin_j  log T_j - log w_j,   log w_j = log q(z_j) - log p(z_j),
// where T_j are the arrival times of a unit-rate Poisson process (prefix sums of
// Exp(1) draws). Theis & Ahmed (2022); Algorithm 4 of Vonderfecht & Liu (2025), with a
// fixed candidate budget K instead of the stopping rule. The decoder regenerates z_j*.
//
// With a_i = s_p/s_q, b_i = (mu_p - mu_q)/s_q and candidate normals n_i,
//   log w = 1/2 sum_i [n_i^2 - (a_i n_i + b_i)^2] + const
//         = 1/2 sum_i ((1 - a_i) n_i - b_i) ((1 + a_i) n_i + b_i) + const,
// the second form free of cancellation (no |mu| appears, only differences).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "rcc/philox.hpp"

namespace gencodec {
namespace rcc {

constexpr int kMinChunkBits = 1;
constexpr int kMaxChunkBits = 24;

// Throws std::invalid_argument unless kMinChunkBits <= k <= kMaxChunkBits.
void check_chunk_bits(int k);

// Per-dimension coefficients of one chunk, padded to a multiple of 4 dimensions with
// c = 0, e = 1, b = 0 (a zero term).
struct ChunkCoeffs {
  int64_t d = 0;
  std::vector<float> c;  // 1 - a = (s_q - s_p) / s_q
  std::vector<float> e;  // 1 + a = (s_q + s_p) / s_q
  std::vector<float> b;  // (mu_p - mu_q) / s_q
};

ChunkCoeffs make_coeffs(const double* mu_q, const double* s_q, const double* mu_p,
                        const double* s_p, int64_t d);

struct Best {
  double score;
  uint64_t index;
};

RCC_HD bool better(double score, uint64_t index, double best_score, uint64_t best_index) {
  return score < best_score || (score == best_score && index < best_index);
}

// The log-weight terms of four consecutive dimensions, summed in float in this order
// (the caller adds the result to a double accumulator, four dimensions at a time).
RCC_HD float term4(float n0, float n1, float n2, float n3, float c0, float c1, float c2, float c3,
                   float e0, float e1, float e2, float e3, float b0, float b1, float b2, float b3) {
  const float t0 = (c0 * n0 - b0) * (e0 * n0 + b0);
  const float t1 = (c1 * n1 - b1) * (e1 * n1 + b1);
  const float t2 = (c2 * n2 - b2) * (e2 * n2 + b2);
  const float t3 = (c3 * n3 - b3) * (e3 * n3 + b3);
  return ((t0 + t1) + t2) + t3;
}

// Arguments of the CPU scoring kernels.
struct ScoreArgs {
  const float* c;
  const float* e;
  const float* b;
  int64_t d;
  Key key;
  const uint64_t* arrival;  // fixed-point arrival times, one per candidate
  uint64_t K;
};

// Scores candidates [j_begin, j_end) into best; j_begin is a multiple of the kernel's
// lane count (candidates scored together), and candidates >= K are skipped. One
// variant per instruction set, all producing the same bits.
using ScoreFn = void (*)(const ScoreArgs& a, uint64_t j_begin, uint64_t j_end, Best& best);
struct CpuKernel {
  const char* name;
  ScoreFn score;
  int lanes;
};
extern const CpuKernel kKernelGeneric, kKernelAvx2, kKernelAvx512;
const char* cpu_kernel_name();

// Fixed-point arrival times T_0 ... T_{K-1} (inclusive prefix sums) for key.
std::vector<uint64_t> arrival_times(Key key, uint64_t K);

// The normals at counters start ... start + count - 1.
void normals_cpu(Key key, uint64_t start, int64_t count, float* out);

// Encoder: the selected index (in [0, 2^k)).
uint64_t pfr_encode_cpu(const ChunkCoeffs& cf, Key key, int k);

// The sample of candidate `index`: z_i = mu_p_i + s_p_i * n_i (in double, then float).
void candidate_sample(const double* mu_p, const double* s_p, int64_t d, const float* normals,
                      float* out);

// Fisher-Yates permutation of 0 ... n-1 keyed by (seed, step).
std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t step);

#ifdef GENCODEC_WITH_CUDA
// pfr_cuda.cu. Device discovery is cuda_device_count() in build_info.hpp.
uint64_t pfr_encode_cuda(const ChunkCoeffs& cf, Key key, int k);
void normals_cuda(Key key, uint64_t start, int64_t count, float* out);
#endif

}  // namespace rcc
}  // namespace gencodec
