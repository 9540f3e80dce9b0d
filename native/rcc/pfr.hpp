// Poisson functional representation (PFR) for diagonal Gaussians: the encoder picks,
// among K = 2^k candidates z_j = mu_p + s_p * n_j drawn from p with shared randomness,
//   j* = argmin_j  log T_j - log w_j,   log w_j = log q(z_j) - log p(z_j),
// where T_j are the arrival times of a unit-rate Poisson process (prefix sums of
// Exp(1) draws). Theis & Ahmed (2022); Algorithm 4 of Vonderfecht & Liu (2025), with a
// fixed candidate budget K instead of the stopping rule. The decoder regenerates z_j*.
//
// With a_i = s_p/s_q, b_i = (mu_p - mu_q)/s_q and candidate normals n_i,
//   log w = 1/2 sum_i [n_i^2 - (a_i n_i + b_i)^2] + const
//         = 1/2 sum_i n_i (A_i n_i + B_i) + const,   A = 1 - a^2, B = -2 a b,
// the same for every candidate but for the sum: the -b_i^2 terms, which would dominate
// it when q is far from p, are dropped, and A = (s_q - s_p)(s_q + s_p) / s_q^2 is
// formed from differences (no cancellation near s_q = s_p, no |mu| in B).
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

// Dimensions per padded group of a chunk's coefficients: a Philox block's normals.
constexpr int64_t kCoeffPad = kNormalsPerBlock;

// The padded length of a chunk of d dimensions (a multiple of kCoeffPad); the scoring
// kernels draw padded_dims(d) / kCoeffPad Philox blocks per candidate.
RCC_HD int64_t padded_dims(int64_t d) { return (d + kCoeffPad - 1) / kCoeffPad * kCoeffPad; }

// Per-dimension coefficients of one chunk, padded to a multiple of kCoeffPad (8)
// dimensions with A = B = 0 (a zero term).
struct ChunkCoeffs {
  int64_t d = 0;
  std::vector<float> quad;  // A = (s_q - s_p)(s_q + s_p) / (s_q s_q)
  std::vector<float> lin;   // B = 2 s_p (mu_q - mu_p) / (s_q s_q)
};

// A and B of one dimension, in double, rounded to float (part of the format).
RCC_HD float quad_coeff(double sq, double sp) {
  return static_cast<float>(((sq - sp) * (sq + sp)) / (sq * sq));
}
RCC_HD float lin_coeff(double mq, double sq, double mp, double sp) {
  return static_cast<float>((2.0 * sp * (mq - mp)) / (sq * sq));
}

ChunkCoeffs make_coeffs(const double* mu_q, const double* s_q, const double* mu_p,
                        const double* s_p, int64_t d);

struct Best {
  double score;
  uint64_t index;
};

RCC_HD bool better(double score, uint64_t index, double best_score, uint64_t best_index) {
  return score < best_score || (score == best_score && index < best_index);
}

// The log-weight term n (A n + B) of one dimension in float.
RCC_HD float term(float n, float A, float B) { return n * (A * n + B); }

// The terms of four consecutive dimensions, summed in float in this order (the caller
// adds the result to a double accumulator, four dimensions at a time).
RCC_HD float term4(float n0, float n1, float n2, float n3, const float* A, const float* B) {
  return ((term(n0, A[0], B[0]) + term(n1, A[1], B[1])) + term(n2, A[2], B[2])) +
         term(n3, A[3], B[3]);
}

// Arguments of the CPU scoring kernels.
struct ScoreArgs {
  const float* quad;  // A, padded (ChunkCoeffs)
  const float* lin;   // B, padded
  int64_t d;
  Key key;
  const uint64_t* arrival;  // fixed-point arrival times, one per candidate
  uint64_t K;
  const float* table;  // normal_table()
};

// The quantile table of the normals (kNormalLevels floats, normal_table_entry), built
// on first use (host memory; the CUDA coder copies it to the device).
inline const float* normal_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(kNormalLevels);
    for (uint32_t i = 0; i < kNormalLevels; ++i) t[i] = normal_table_entry(i);
    return t;
  }();
  return table.data();
}

// The scores of candidates j0 ... j0 + lanes - 1 (those below K) from their log-weight
// sums acc[0 .. lanes), into best.
inline void keep_best(const ScoreArgs& a, uint64_t j0, int lanes, const double* acc, Best& best) {
  for (int l = 0; l < lanes; ++l) {
    const uint64_t j = j0 + static_cast<uint64_t>(l);
    if (j >= a.K) break;
    const double score = log_arrival(a.arrival[j]) - 0.5 * acc[l];
    if (better(score, j, best.score, best.index)) {
      best.score = score;
      best.index = j;
    }
  }
}

// Scores candidates [j_begin, j_end) into best; j_begin is a multiple of the kernel's
// lane count (candidates scored together), and candidates >= K are skipped. One
// variant per instruction set, all producing the same bits.
using ScoreFn = void (*)(const ScoreArgs& a, uint64_t j_begin, uint64_t j_end, Best& best);
// The normals of blocks first ... first + count - 1 (normal_block) into out[0 .. 8 count).
using NormalsFn = void (*)(Key key, uint64_t first, int64_t count, float* out);
// The Philox words of blocks first ... first + count - 1 of a domain into
// out[0 .. 4 count) (philox_block).
using WordsFn = void (*)(Key key, uint32_t domain, uint64_t first, int64_t count, uint32_t* out);
struct CpuKernel {
  const char* name;
  ScoreFn score;
  NormalsFn normals;
  WordsFn words;
  int lanes;
};
extern const CpuKernel kKernelGeneric, kKernelAvx2, kKernelAvx512;
// The kernel in use: the best this CPU runs, or the one GENCODEC_RCC_KERNEL names.
const CpuKernel& select_cpu_kernel();
const char* cpu_kernel_name();

// Fixed-point arrival times T_0 ... T_{K-1} (inclusive prefix sums) for key.
std::vector<uint64_t> arrival_times(Key key, uint64_t K);

// The normals at counters start ... start + count - 1.
void normals_cpu(Key key, uint64_t start, int64_t count, float* out);
// The same on the calling thread with a given kernel (buffer: scratch space).
void normals_range(const CpuKernel& kernel, Key key, uint64_t start, int64_t count, float* out,
                   std::vector<float>& buffer);

// Encoder: the selected index (in [0, 2^k)).
uint64_t pfr_encode_cpu(const ChunkCoeffs& cf, Key key, int k);

// The sample of candidate `index`: z_i = mu_p_i + s_p_i * n_i (in double, then float).
void candidate_sample(const double* mu_p, const double* s_p, int64_t d, const float* normals,
                      float* out);

// Fisher-Yates permutation of 0 ... n-1 keyed by (seed, step).
std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t step);

// Arrival times into out[0 .. K) on the calling thread (arrival_times without OpenMP).
void arrival_times_serial(Key key, uint64_t K, uint64_t* out);

// The argmin over all K candidates of a chunk: candidate groups in parallel when
// threads > 1 and the chunk is large enough, else on the calling thread. Returns
// K when no score is finite.
uint64_t pfr_argmin_cpu(const CpuKernel& kernel, const ScoreArgs& a, int threads);

// --- whole steps (pfr_step.cpp) ----------------------------------------------------

// A step's input values: float32 or float64, read as double.
struct Values {
  const void* data = nullptr;
  bool f32 = false;
  double operator[](int64_t i) const {
    return f32 ? static_cast<double>(static_cast<const float*>(data)[i])
               : static_cast<const double*>(data)[i];
  }
};

// The chunks of a step of n dimensions: the permutation of (seed, step) cut into
// n_chunks nearly equal parts, the first n mod n_chunks one dimension longer. Chunk c
// holds the dimensions perm[start(c) ... start(c+1)); its scoring coefficients sit at
// coeff_offset(c), each chunk padded to a multiple of kCoeffPad (the zero term of
// ChunkCoeffs).
struct StepChunks {
  int64_t n_dims = 0, n_chunks = 0;
  std::vector<uint32_t> perm;
  StepChunks(int64_t n_dims, int64_t n_chunks, uint64_t seed, uint64_t step);
  RCC_HD static int64_t start(int64_t n, int64_t nc, int64_t c) {
    return c * (n / nc) + (c < n % nc ? c : n % nc);
  }
  RCC_HD static int64_t coeff_offset(int64_t n, int64_t nc, int64_t c) {
    const int64_t q = n / nc, r = n % nc, big = c < r ? c : r;
    return big * padded_dims(q + 1) + (c - big) * padded_dims(q);
  }
  int64_t start(int64_t c) const { return start(n_dims, n_chunks, c); }
  int64_t dims(int64_t c) const { return start(c + 1) - start(c); }
  int64_t coeff_offset(int64_t c) const { return coeff_offset(n_dims, n_chunks, c); }
};

// The scoring coefficients of every chunk of a step (ChunkCoeffs, concatenated).
struct StepCoeffs {
  std::vector<float> quad, lin;
};

// The Gaussians q and p of a step, n values each.
struct StepGaussians {
  Values mu_q, s_q, mu_p, s_p;
  int64_t n = 0;
};

// Largest |value| accepted (samples mu_p + s_p n with |n| < 7 stay in float32) and
// a bound on |normal| (the table's largest is 4.009); the same bounds as
// gencodec.rcc's checks.
constexpr double kMaxValue = 3.4028234663852886e38 / 16.0;
constexpr double kMaxNormal = 7.0;

// The first problem of a step's inputs as a message, or "" when they can be coded:
// every value finite and within kMaxValue, sigmas > 0 and, when scoring is set,
// float32 candidate scores that cannot overflow.
std::string check_step(const StepGaussians& g, bool scoring, int threads);
std::string check_prior(Values mu_p, Values s_p, int64_t n, int threads);

// KL(q || p) in bits, summed in blocks of a fixed size in a fixed order (the same
// value for every thread count), and check_step's problem found in the same pass.
double kl_bits(const StepGaussians& g, bool scoring, int threads, std::string& problem);

StepCoeffs step_coeffs(const StepGaussians& g, const StepChunks& chunks, int threads);

// The encoder of a whole step: indices[n_chunks] and the coded sample[n] (the
// decoder's sample). threads = 0: OpenMP's default.
void encode_step_cpu(const StepGaussians& g, uint64_t seed, uint64_t step, int k,
                     int64_t n_chunks, int threads, uint32_t* indices, float* sample);

// The samples of chosen candidates: sample[perm[i]] = mu_p + s_p * n (candidate
// indices[c] of chunk c); the decoder of a whole step.
void step_samples(const StepChunks& chunks, Values mu_p, Values s_p, uint64_t seed, uint64_t step,
                  const uint32_t* indices, int threads, float* sample);

#ifdef GENCODEC_WITH_CUDA
// pfr_cuda.cu. Device discovery is cuda_device_count() in build_info.hpp.
uint64_t pfr_encode_cuda(const ChunkCoeffs& cf, Key key, int k);
void normals_cuda(Key key, uint64_t start, int64_t count, float* out);
// Every chunk of a step in one scoring launch (coefficients copied once, argmin on
// the device): indices[n_chunks].
void pfr_encode_step_cuda(const StepCoeffs& cf, int64_t n_dims, int64_t n_chunks, uint64_t seed,
                          uint64_t step, int k, uint32_t* indices);
#endif

}  // namespace rcc
}  // namespace gencodec
