// diff-BPG: closed-loop HEVC intra coding of image planes, forward and backward
// (see codecs_ext/surrogates/bpg_intra.py, whose PyTorch reference computes exactly
// the same thing). Plain buffers, float64, OpenMP over the planes and the blocks of
// one wavefront; no Python, no PyTorch.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <type_traits>

namespace gencodec {
namespace dbpg {

constexpr int kModes = 35;  // planar, DC, 33 angular
constexpr int kDcMode = 1;
constexpr double kMidGrey = 128.0;

// The fixed tables of one block size and picture size (built in Python by
// codecs_ext/surrogates/hevc_intra.py and passed in).
struct Tables {
  int n = 0;                              // block side
  int64_t rows = 0, cols = 0;             // blocks per column / row
  const double* transform = nullptr;      // n*n, orthonormal-scaled, rows = basis
  const int32_t* pred_index = nullptr;    // kModes * n*n * 4, indices into r
  const double* pred_weight = nullptr;    // kModes * n*n * 4
  const int32_t* dc_index = nullptr;      // 2n
  const int64_t* ref_source = nullptr;    // blocks * (4n+1), plane raster index or -1
  const int64_t* fronts = nullptr;        // blocks, grouped by wavefront
  const int64_t* front_starts = nullptr;  // n_fronts + 1
  int64_t n_fronts = 0;

  int64_t blocks() const { return rows * cols; }
  int refs() const { return 4 * n + 1; }
};

struct Params {
  double temperature = 1.0;  // soft-argmin temperature, 0 = hard argmin
  int terms = 10;            // Fourier-rounding terms
  double ref_grad = 1.0;     // factor on the gradient into the reference samples
};

// f(std::integral_constant<int, n>{}) for the block sizes the kernels are built for;
// std::invalid_argument for any other n.
template <class F>
void with_block_size(int n, F&& f) {
  switch (n) {
    case 4: return f(std::integral_constant<int, 4>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 16: return f(std::integral_constant<int, 16>{});
    case 32: return f(std::integral_constant<int, 32>{});
    default: throw std::invalid_argument("block size must be 4, 8, 16 or 32");
  }
}

// Bytes per block of the mode-cost signs intra_forward keeps for the backward: for each
// mode, two bit masks (coefficient > 0, coefficient < 0) of the n*n coefficients of its
// transformed residual.
constexpr int64_t sign_bytes(int n) { return static_cast<int64_t>(kModes) * 2 * (n * n / 8); }

// The CPU kernels intra_forward / intra_backward run: "avx2+fma" or "generic" (the
// environment variable GENCODEC_DBPG_GENERIC=1 forces the latter).
const char* kernels();

// x: planes * H * W (H = rows*n, W = cols*n); qstep: planes.
// Outputs recon (planes * H * W), yhat (planes * blocks * n * n), the mode costs
// (planes * blocks * kModes) and their coefficients' signs (planes * blocks *
// sign_bytes(n)), both for the backward.
// Throws std::invalid_argument when the prediction tables are not HEVC's.
void intra_forward(const Tables& t, const Params& prm, int64_t planes, const double* x,
                   const double* qstep, double* recon, double* yhat, double* cost,
                   uint8_t* signs);

// Gradients of a scalar loss given recon, cost and signs from intra_forward, g_recon
// (like recon) and g_yhat (like yhat): g_x (like x) and g_qstep (planes).
void intra_backward(const Tables& t, const Params& prm, int64_t planes, const double* x,
                    const double* qstep, const double* recon, const double* cost,
                    const uint8_t* signs, const double* g_recon, const double* g_yhat,
                    double* g_x, double* g_qstep);

}  // namespace dbpg
}  // namespace gencodec
