// PFR over a whole step on the CPU: the checks and the KL of the step's Gaussians,
// its chunks (permutation and bounds), the scoring coefficients of every chunk, the
// argmin of each chunk and the scatter of the coded sample, all in one native call.
// Chunks are coded one per thread when there are many (a DiffC step has hundreds to
// thousands of small chunks), and one at a time with the candidates split across
// threads when there are few; either way each chunk's index is the argmin of the
// same scores, so the stream does not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "rcc/pfr.hpp"

namespace gencodec {
namespace rcc {
namespace {

int team(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

// Chunks per thread above which chunks, not candidates, are shared out.
constexpr int64_t kChunksPerThread = 8;

std::string value_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

// Work is shared out in blocks handed out dynamically: on a loaded machine a thread
// that loses its core holds up one block, not half of the work.
constexpr int64_t kBlock = 1 << 14;

// The first flat index at which bad(i) holds, or -1.
template <class Bad>
int64_t first_bad(int64_t n, int threads, Bad bad) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  int64_t first = -1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(threads)) if (blocks > 1)
  for (int64_t q = 0; q < blocks; ++q) {
    const int64_t end = std::min(n, (q + 1) * kBlock);
    bool any = false;
    for (int64_t i = q * kBlock; i < end; ++i) any |= bad(i);
    if (any) {
      int64_t i = q * kBlock;
      while (!bad(i)) ++i;
#pragma omp critical(gencodec_rcc_first_bad)
      if (first < 0 || i < first) first = i;
    }
  }
  return first;
}

bool bad_value(double x) { return !(std::fabs(x) <= kMaxValue); }  // NaN and inf too
bool bad_sigma(double x) { return bad_value(x) || !(x > 0.0); }

// q so far from p that four float32 score terms n (A n + B), |n| <= kMaxNormal,
// A = 1 - a^2, B = -2 a b, could overflow (the bound of gencodec.rcc's check).
bool bad_score(double mq, double sq, double mp, double sp) {
  const double a = sp / sq, b = std::fabs(mp - mq) / sq;
  const double bound = 4.0 * kMaxNormal * (std::fabs(1.0 - a * a) * kMaxNormal + 2.0 * a * b);
  return !(bound <= static_cast<double>(std::numeric_limits<float>::max()));
}

std::string value_problem(const char* name, int64_t i, double x, bool sigma) {
  return std::string(name) + "[" + std::to_string(i) + "] = " + value_text(x) +
         (sigma ? " (must be finite and > 0)" : " (must be finite, |x| <= 2.13e37)");
}

}  // namespace

std::string check_prior(Values mu_p, Values s_p, int64_t n, int threads) {
  const int64_t i =
      first_bad(n, threads, [&](int64_t j) { return bad_value(mu_p[j]) || bad_sigma(s_p[j]); });
  if (i < 0) return "";
  return bad_value(mu_p[i]) ? value_problem("mu_p", i, mu_p[i], false)
                            : value_problem("sigma_p", i, s_p[i], true);
}

namespace {

bool bad_step_value(const StepGaussians& g, bool scoring, int64_t j) {
  const double mq = g.mu_q[j], sq = g.s_q[j], mp = g.mu_p[j], sp = g.s_p[j];
  return bad_value(mq) || bad_sigma(sq) || bad_value(mp) || bad_sigma(sp) ||
         (scoring && bad_score(mq, sq, mp, sp));
}

// The message of the problem at index i (bad_step_value(g, scoring, i) holds).
std::string step_problem(const StepGaussians& g, int64_t i) {
  if (bad_value(g.mu_q[i])) return value_problem("mu_q", i, g.mu_q[i], false);
  if (bad_sigma(g.s_q[i])) return value_problem("sigma_q", i, g.s_q[i], true);
  if (bad_value(g.mu_p[i])) return value_problem("mu_p", i, g.mu_p[i], false);
  if (bad_sigma(g.s_p[i])) return value_problem("sigma_p", i, g.s_p[i], true);
  return "q is too far from p to score PFR candidates in float32 at index " + std::to_string(i);
}

}  // namespace

std::string check_step(const StepGaussians& g, bool scoring, int threads) {
  // One pass over everything; the message names the first index with a problem.
  const int64_t i =
      first_bad(g.n, threads, [&](int64_t j) { return bad_step_value(g, scoring, j); });
  return i < 0 ? "" : step_problem(g, i);
}

double kl_bits(const StepGaussians& g, bool scoring, int threads, std::string& problem) {
  // Per dimension (r^2 - 1 - 2 log r + d^2) / (2 log 2), r = s_q / s_p, d = (mu_q -
  // mu_p) / s_p, with x = r - 1 formed without cancellation and log r = log1p(x) near
  // r = 1 (the formula of gencodec.rcc._kl_bits_per_dim). The checks of check_step run
  // in the same pass, block by block. The sigma term is reused while (s_q, s_p) repeat
  // (DiffC's sigmas are one value per step): the same operations on the same values.
  const int64_t blocks = (g.n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
  int64_t first = -1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(threads)) if (blocks > 1)
  for (int64_t q = 0; q < blocks; ++q) {
    double sum = 0.0, last_sq = 0.0, last_sp = 0.0, sigma_term = 0.0;
    bool any = false;
    const int64_t end = std::min(g.n, (q + 1) * kBlock);
    for (int64_t i = q * kBlock; i < end; ++i) {
      any |= bad_step_value(g, scoring, i);
      const double sq = g.s_q[i], sp = g.s_p[i];
      if (i == q * kBlock || !(sq == last_sq && sp == last_sp)) {
        const double x = (sq - sp) / sp;
        const double log_r = x > -0.5 ? std::log1p(x) : std::log(sq) - std::log(sp);
        sigma_term = 0.5 * (x * (2.0 + x) - 2.0 * log_r);
        last_sq = sq;
        last_sp = sp;
      }
      const double d = (g.mu_q[i] - g.mu_p[i]) / sp;
      sum += (sigma_term + 0.5 * d * d) / 0.6931471805599453;
    }
    partial[static_cast<size_t>(q)] = sum;
    if (any) {
      int64_t i = q * kBlock;
      while (!bad_step_value(g, scoring, i)) ++i;
#pragma omp critical(gencodec_rcc_first_bad)
      if (first < 0 || i < first) first = i;
    }
  }
  problem = first < 0 ? "" : step_problem(g, first);
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

StepCoeffs step_coeffs(const StepGaussians& g, const StepChunks& chunks, int threads) {
  // The arithmetic of make_coeffs, first for every dimension in order (reads in
  // sequence; A is reused while (s_q, s_p) repeat: DiffC's sigmas are one value per
  // step), then gathered through the permutation into the chunks' padded slots.
  const int64_t n = g.n;
  const size_t dims = static_cast<size_t>(n);
  std::vector<float> quad(dims), lin(dims);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(threads)) if (blocks > 1)
  for (int64_t q = 0; q < blocks; ++q) {
    double last_sq = 0.0, last_sp = 0.0;
    float A = 0.0f;
    for (int64_t i = q * kBlock; i < std::min(n, (q + 1) * kBlock); ++i) {
      const double sq = g.s_q[i], sp = g.s_p[i];
      if (i == q * kBlock || !(sq == last_sq && sp == last_sp)) {
        A = quad_coeff(sq, sp);
        last_sq = sq;
        last_sp = sp;
      }
      quad[i] = A;
      lin[i] = lin_coeff(g.mu_q[i], sq, g.mu_p[i], sp);
    }
  }
  StepCoeffs cf;
  const size_t size = static_cast<size_t>(chunks.coeff_offset(chunks.n_chunks));
  cf.quad.resize(size);
  cf.lin.resize(size);
#pragma omp parallel for schedule(dynamic, 64) num_threads(team(threads)) if (n > kBlock)
  for (int64_t ch = 0; ch < chunks.n_chunks; ++ch) {
    const int64_t s = chunks.start(ch), d = chunks.dims(ch), o = chunks.coeff_offset(ch);
    const int64_t padded = padded_dims(d);
    for (int64_t i = 0; i < d; ++i) {
      const uint32_t x = chunks.perm[static_cast<size_t>(s + i)];
      cf.quad[o + i] = quad[x];
      cf.lin[o + i] = lin[x];
    }
    for (int64_t i = d; i < padded; ++i) {
      cf.quad[o + i] = 0.0f;
      cf.lin[o + i] = 0.0f;
    }
  }
  return cf;
}

void step_samples(const StepChunks& chunks, Values mu_p, Values s_p, uint64_t seed, uint64_t step,
                  const uint32_t* indices, int threads, float* sample) {
  const CpuKernel& kernel = select_cpu_kernel();
#pragma omp parallel num_threads(team(threads)) if (chunks.n_dims > kBlock)
  {
    std::vector<float> buffer, z;
#pragma omp for schedule(dynamic, 16)
    for (int64_t c = 0; c < chunks.n_chunks; ++c) {
      const int64_t s = chunks.start(c), d = chunks.dims(c);
      const Key key = split_key(derive_key(seed, step, static_cast<uint64_t>(c)));
      z.resize(static_cast<size_t>(d));  // the normals of candidate indices[c]
      normals_range(kernel, key, candidate_start(indices[c]), d, z.data(), buffer);
      for (int64_t i = 0; i < d; ++i) {  // the arithmetic of candidate_sample
        const int64_t x = chunks.perm[static_cast<size_t>(s + i)];
        sample[x] = static_cast<float>(mu_p[x] + s_p[x] * static_cast<double>(z[i]));
      }
    }
  }
}

void encode_step_cpu(const StepGaussians& g, uint64_t seed, uint64_t step, int k,
                     int64_t n_chunks, int threads, uint32_t* indices, float* sample) {
  check_chunk_bits(k);
  threads = team(threads);
  const uint64_t K = uint64_t{1} << k;
  const StepChunks chunks(g.n, n_chunks, seed, step);
  const StepCoeffs cf = step_coeffs(g, chunks, threads);
  const CpuKernel& kernel = select_cpu_kernel();
  const float* table = normal_table();
  auto args = [&](int64_t c, const uint64_t* arrival) {
    const int64_t o = chunks.coeff_offset(c);
    return ScoreArgs{cf.quad.data() + o, cf.lin.data() + o, chunks.dims(c),
                     split_key(derive_key(seed, step, static_cast<uint64_t>(c))), arrival, K,
                     table};
  };
  int64_t failed = -1;
  if (n_chunks >= kChunksPerThread * threads) {  // chunks across threads
#pragma omp parallel num_threads(threads)
    {
      std::vector<uint64_t> arrival(K);
#pragma omp for schedule(dynamic, 1)
      for (int64_t c = 0; c < n_chunks; ++c) {
        ScoreArgs a = args(c, arrival.data());
        arrival_times_serial(a.key, K, arrival.data());
        const uint64_t index = pfr_argmin_cpu(kernel, a, 1);
        indices[c] = static_cast<uint32_t>(index);
        if (index >= K) {
#pragma omp critical(gencodec_rcc_failed)
          if (failed < 0 || c < failed) failed = c;
        }
      }
    }
  } else {  // candidates across threads, one chunk at a time
    std::vector<uint64_t> arrival(K);
    for (int64_t c = 0; c < n_chunks && failed < 0; ++c) {
      ScoreArgs a = args(c, arrival.data());
      if (K > 16384) {
        arrival = arrival_times(a.key, K);
        a.arrival = arrival.data();
      } else {
        arrival_times_serial(a.key, K, arrival.data());
      }
      const uint64_t index = pfr_argmin_cpu(kernel, a, threads);
      indices[c] = static_cast<uint32_t>(index);
      if (index >= K) failed = c;
    }
  }
  if (failed >= 0) {
    throw std::runtime_error("PFR found no finite score in chunk " + std::to_string(failed) +
                             " (non-finite coefficients?)");
  }
  step_samples(chunks, g.mu_p, g.s_p, seed, step, indices, threads, sample);
}

}  // namespace rcc
}  // namespace gencodec
