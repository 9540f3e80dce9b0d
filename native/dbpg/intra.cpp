// diff-BPG closed-loop intra coding, forward and backward (see intra.hpp).
#include "dbpg/intra.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// The kernels pass 32-byte vectors between inline functions of anonymous namespaces; GCC's
// note that their ABI differs without AVX concerns no interface outside this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace gencodec {
namespace dbpg {
namespace generic {
namespace {
#include "dbpg/intra_impl.hpp"
}  // namespace
}  // namespace generic

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GENCODEC_DBPG_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2")
namespace avx2 {
namespace {
#include "dbpg/intra_impl.hpp"
}  // namespace
}  // namespace avx2
#pragma GCC pop_options
#endif

#ifdef GENCODEC_DBPG_AVX2
namespace {

bool use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

}  // namespace
#endif

void intra_forward(const Tables& t, const Params& prm, int64_t planes, const double* x,
                   const double* qstep, double* recon, double* yhat, double* cost,
                   uint8_t* signs) {
#ifdef GENCODEC_DBPG_AVX2
  if (use_avx2()) return avx2::forward_all(t, prm, planes, x, qstep, recon, yhat, cost, signs);
#endif
  generic::forward_all(t, prm, planes, x, qstep, recon, yhat, cost, signs);
}

void intra_backward(const Tables& t, const Params& prm, int64_t planes, const double* x,
                    const double* qstep, const double* recon, const double* cost,
                    const uint8_t* signs, const double* g_recon, const double* g_yhat,
                    double* g_x, double* g_qstep) {
#ifdef GENCODEC_DBPG_AVX2
  if (use_avx2())
    return avx2::backward_all(t, prm, planes, x, qstep, recon, cost, signs, g_recon, g_yhat,
                              g_x, g_qstep);
#endif
  generic::backward_all(t, prm, planes, x, qstep, recon, cost, signs, g_recon, g_yhat, g_x,
                        g_qstep);
}

}  // namespace dbpg
}  // namespace gencodec
