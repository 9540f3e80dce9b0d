// diff-BPG closed-loop intra coding, forward and backward (see intra.hpp).
#include "dbpg/intra.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

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
                   const double* qstep, double* recon, double* yhat, double* cost) {
#ifdef GENCODEC_DBPG_AVX2
  if (use_avx2()) return avx2::forward_all(t, prm, planes, x, qstep, recon, yhat, cost);
#endif
  generic::forward_all(t, prm, planes, x, qstep, recon, yhat, cost);
}

void intra_backward(const Tables& t, const Params& prm, int64_t planes, const double* x,
                    const double* qstep, const double* recon, const double* cost,
                    const double* g_recon, const double* g_yhat, double* g_x, double* g_qstep) {
#ifdef GENCODEC_DBPG_AVX2
  if (use_avx2())
    return avx2::backward_all(t, prm, planes, x, qstep, recon, cost, g_recon, g_yhat, g_x, g_qstep);
#endif
  generic::backward_all(t, prm, planes, x, qstep, recon, cost, g_recon, g_yhat, g_x, g_qstep);
}

}  // namespace dbpg
}  // namespace gencodec
