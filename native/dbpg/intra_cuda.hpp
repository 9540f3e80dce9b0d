// diff-BPG closed-loop intra coding on a CUDA GPU (intra_cuda.cu): the computation of
// intra.hpp's intra_forward / intra_backward on device buffers. Compiled only when the
// build finds a CUDA toolkit (GENCODEC_WITH_CUDA).
#pragma once

#include <cstdint>

#include "dbpg/intra.hpp"

namespace gencodec {
namespace dbpg {

// As intra_forward, with x, recon, yhat and cost in device memory of the current device
// (float64, C order) and qstep on the host; the work is queued on `stream` (a
// cudaStream_t; nullptr = the default stream) and this returns without waiting for it.
// The tables are host arrays (intra.hpp's Tables); their device copies are cached.
void intra_forward_cuda(const Tables& t, const Params& prm, int64_t planes, const double* x,
                        const double* qstep, double* recon, double* yhat, double* cost,
                        void* stream);

// As intra_backward, with every array but qstep in device memory. g_recon is the
// accumulator of the reconstruction's gradient: it is overwritten.
void intra_backward_cuda(const Tables& t, const Params& prm, int64_t planes, const double* x,
                         const double* qstep, const double* recon, const double* cost,
                         double* g_recon, const double* g_yhat, double* g_x, double* g_qstep,
                         void* stream);

}  // namespace dbpg
}  // namespace gencodec
