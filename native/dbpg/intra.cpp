// diff-BPG closed-loop intra coding, forward and backward (see intra.hpp).
#include "dbpg/intra.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

// The kernels pass 32-byte vectors between inline functions of anonymous namespaces; GCC's
// note that their ABI differs without AVX concerns no interface outside this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace gencodec {
namespace dbpg {
#define DBPG_FUSED_MADD 0
namespace generic {
namespace {
#include "dbpg/intra_impl.hpp"
}  // namespace
}  // namespace generic
#undef DBPG_FUSED_MADD

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GENCODEC_DBPG_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define DBPG_FUSED_MADD 1
namespace avx2 {
namespace {
#include "dbpg/intra_impl.hpp"
}  // namespace
}  // namespace avx2
#undef DBPG_FUSED_MADD
#pragma GCC pop_options
#endif

#ifdef GENCODEC_DBPG_AVX2
namespace {

// The avx2 kernels where the CPU has AVX2 and FMA, unless GENCODEC_DBPG_GENERIC is set
// (non-empty, not "0"): the tests use it to check the portable kernels too.
bool use_avx2() {
  static const bool yes = [] {
    const char* generic = std::getenv("GENCODEC_DBPG_GENERIC");
    if (generic != nullptr && *generic != '\0' && std::string(generic) != "0") return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

}  // namespace
#endif

const char* kernels() {
#ifdef GENCODEC_DBPG_AVX2
  if (use_avx2()) return "avx2+fma";
#endif
  return "generic";
}

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
