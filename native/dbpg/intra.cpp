// diff-BPG closed-loop intra coding, forward and backward (see intra.hpp).
#include "dbpg/intra.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace gencodec {
namespace dbpg {
namespace {

constexpr double kPi = 3.14159265358979323846;

// out = A * D * A^T (n x n, row-major); tmp is scratch.
void forward_2d(const double* a, const double* d, double* out, double* tmp, int n) {
  for (int i = 0; i < n; ++i) {
    double* ti = tmp + i * n;
    std::fill(ti, ti + n, 0.0);
    for (int k = 0; k < n; ++k) {
      const double aik = a[i * n + k];
      const double* dk = d + k * n;
      for (int j = 0; j < n; ++j) ti[j] += aik * dk[j];
    }
  }
  for (int i = 0; i < n; ++i) {
    const double* ti = tmp + i * n;
    for (int j = 0; j < n; ++j) {
      const double* aj = a + j * n;
      double s = 0.0;
      for (int k = 0; k < n; ++k) s += ti[k] * aj[k];
      out[i * n + j] = s;
    }
  }
}

// out = A^T * Z * A
void inverse_2d(const double* a, const double* z, double* out, double* tmp, int n) {
  std::fill(tmp, tmp + n * n, 0.0);
  for (int k = 0; k < n; ++k) {
    const double* zk = z + k * n;
    for (int i = 0; i < n; ++i) {
      const double aki = a[k * n + i];
      double* ti = tmp + i * n;
      for (int j = 0; j < n; ++j) ti[j] += aki * zk[j];
    }
  }
  std::fill(out, out + n * n, 0.0);
  for (int i = 0; i < n; ++i) {
    const double* ti = tmp + i * n;
    double* oi = out + i * n;
    for (int k = 0; k < n; ++k) {
      const double tik = ti[k];
      const double* ak = a + k * n;
      for (int j = 0; j < n; ++j) oi[j] += tik * ak[j];
    }
  }
}

// round_N(y) = y - sum_{k=1..N} (-1)^(k+1) sin(2 pi k y) / (k pi) and its derivative
// 1 - 2 sum_{k=1..N} (-1)^(k+1) cos(2 pi k y) (codecs_ext/surrogates/rounding.py).
inline void fourier_round(double y, int terms, double* value, double* deriv) {
  double sum_s = 0.0, sum_c = 0.0;
  if (terms > 0) {
    // sin/cos of k * phase by the angle-addition recurrence (two library calls)
    const double phase = (2.0 * kPi) * (y - std::nearbyint(y));  // same angle mod 2 pi
    const double s1 = std::sin(phase), c1 = std::cos(phase);
    double sk = s1, ck = c1;
    for (int k = 1; k <= terms; ++k) {
      const double sign = (k & 1) ? 1.0 : -1.0;
      sum_s += sign * sk / (k * kPi);
      sum_c += sign * ck;
      const double next = sk * c1 + ck * s1;
      ck = ck * c1 - sk * s1;
      sk = next;
    }
  }
  *value = y - sum_s;
  *deriv = 1.0 - 2.0 * sum_c;
}

inline double sgn(double v) { return (v > 0.0) - (v < 0.0); }

// A mode whose soft-argmin weight is below this adds less than a float64 rounding error
// (relative to the weights, which sum to 1) to any gradient: its backward is skipped.
constexpr double kNegligibleWeight = 1e-17;
inline bool negligible(double w) { return w < kNegligibleWeight; }

// Everything one block's forward computes (kept for its backward).
struct Workspace {
  int n, nn;
  std::vector<double> r, preds, tm, cost, w, x, pred, y, yh, dfr, v, tmp, buf, buf2;
  // backward only
  std::vector<double> gv, gz, gc, ge, gx, gpred, gw, gp, gr;
  explicit Workspace(int n_)
      : n(n_), nn(n_ * n_), r(4 * n_ + 1), preds(kModes * nn), tm(kModes * nn), cost(kModes),
        w(kModes), x(nn), pred(nn), y(nn), yh(nn), dfr(nn), v(nn), tmp(nn), buf(nn),
        buf2(nn), gv(nn), gz(nn), gc(nn), ge(nn), gx(nn), gpred(nn), gw(kModes),
        gp(kModes * nn), gr(4 * n_ + 1) {}
};

// Codes block b of one plane from the reconstruction rec (earlier blocks) and the
// input xp: fills ws (ws.v is the unclipped reconstruction).
void block_forward(const Tables& t, const Params& prm, const double* xp, const double* rec,
                   int64_t b, double q, Workspace& ws) {
  const int n = t.n, nn = ws.nn, nr = t.refs();
  const int64_t width = t.cols * n;
  const int64_t* src = t.ref_source + b * nr;
  for (int k = 0; k < nr; ++k) ws.r[k] = src[k] < 0 ? kMidGrey : rec[src[k]];
  for (int m = 0; m < kModes; ++m) {
    double* pm = ws.preds.data() + m * nn;
    if (m == kDcMode) {
      double s = 0.0;
      for (int j = 0; j < 2 * n; ++j) s += ws.r[t.dc_index[j]];
      std::fill(pm, pm + nn, s / (2 * n));
      continue;
    }
    const int32_t* idx = t.pred_index + static_cast<int64_t>(m) * nn * 4;
    const double* wt = t.pred_weight + static_cast<int64_t>(m) * nn * 4;
    for (int s = 0; s < nn; ++s) {
      double acc = 0.0;
      for (int k = 0; k < 4; ++k) acc += ws.r[idx[s * 4 + k]] * wt[s * 4 + k];
      pm[s] = acc;
    }
  }
  const int64_t y0 = (b / t.cols) * n, x0 = (b % t.cols) * n;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) ws.x[i * n + j] = xp[(y0 + i) * width + x0 + j];
  for (int m = 0; m < kModes; ++m) {
    const double* pm = ws.preds.data() + m * nn;
    for (int s = 0; s < nn; ++s) ws.buf[s] = ws.x[s] - pm[s];
    double* tmm = ws.tm.data() + m * nn;
    forward_2d(t.transform, ws.buf.data(), tmm, ws.tmp.data(), n);
    double c = 0.0;
    for (int s = 0; s < nn; ++s) c += std::fabs(tmm[s]);
    ws.cost[m] = c / q;
  }
  const int best = static_cast<int>(std::min_element(ws.cost.begin(), ws.cost.end()) -
                                    ws.cost.begin());
  if (prm.temperature == 0.0) {
    std::fill(ws.w.begin(), ws.w.end(), 0.0);
    ws.w[best] = 1.0;
  } else {
    double z = 0.0;
    for (int m = 0; m < kModes; ++m) {
      ws.w[m] = std::exp(-(ws.cost[m] - ws.cost[best]) / prm.temperature);
      z += ws.w[m];
    }
    for (int m = 0; m < kModes; ++m) ws.w[m] /= z;
  }
  std::fill(ws.pred.begin(), ws.pred.end(), 0.0);
  for (int m = 0; m < kModes; ++m) {
    const double wm = ws.w[m];
    const double* pm = ws.preds.data() + m * nn;
    for (int s = 0; s < nn; ++s) ws.pred[s] += wm * pm[s];
  }
  for (int s = 0; s < nn; ++s) ws.buf[s] = ws.x[s] - ws.pred[s];
  forward_2d(t.transform, ws.buf.data(), ws.buf2.data(), ws.tmp.data(), n);
  for (int s = 0; s < nn; ++s) {
    ws.y[s] = ws.buf2[s] / q;
    fourier_round(ws.y[s], prm.terms, &ws.yh[s], &ws.dfr[s]);
    ws.buf[s] = ws.yh[s] * q;
  }
  inverse_2d(t.transform, ws.buf.data(), ws.buf2.data(), ws.tmp.data(), n);
  for (int s = 0; s < nn; ++s) ws.v[s] = ws.pred[s] + ws.buf2[s];
}

// Chain rule through block_forward (ws filled by it): gout = gradient of the block's
// clipped reconstruction, gy = of its yhat. Writes ws.gx (input), ws.gr (reference
// samples) and returns the gradient of qstep.
double block_backward(const Tables& t, const Params& prm, double q, const double* gout,
                      const double* gy, Workspace& ws) {
  const int n = t.n, nn = ws.nn;
  for (int s = 0; s < nn; ++s) ws.gv[s] = (ws.v[s] >= 0.0 && ws.v[s] <= 255.0) ? gout[s] : 0.0;
  forward_2d(t.transform, ws.gv.data(), ws.gz.data(), ws.tmp.data(), n);  // d/dZ of A^T Z A
  double gq = 0.0;
  for (int s = 0; s < nn; ++s) {
    gq += ws.gz[s] * ws.yh[s];
    const double gys = (ws.gz[s] * q + gy[s]) * ws.dfr[s];
    ws.gc[s] = gys / q;
    gq -= gys * ws.y[s] / q;
  }
  inverse_2d(t.transform, ws.gc.data(), ws.ge.data(), ws.tmp.data(), n);  // d/dE of A E A^T
  for (int s = 0; s < nn; ++s) {
    ws.gx[s] = ws.ge[s];
    ws.gpred[s] = ws.gv[s] - ws.ge[s];
  }
  for (int m = 0; m < kModes; ++m) {
    const double* pm = ws.preds.data() + m * nn;
    double* gpm = ws.gp.data() + m * nn;
    if (negligible(ws.w[m])) continue;
    double dot = 0.0;
    for (int s = 0; s < nn; ++s) {
      dot += ws.gpred[s] * pm[s];
      gpm[s] = ws.w[m] * ws.gpred[s];
    }
    ws.gw[m] = dot;
  }
  if (prm.temperature != 0.0) {
    double mean = 0.0;
    for (int m = 0; m < kModes; ++m)
      if (!negligible(ws.w[m])) mean += ws.w[m] * ws.gw[m];
    for (int m = 0; m < kModes; ++m) {
      if (negligible(ws.w[m])) continue;
      const double gcost = -ws.w[m] * (ws.gw[m] - mean) / prm.temperature;
      if (gcost == 0.0) continue;
      gq -= gcost * ws.cost[m] / q;
      const double* tmm = ws.tm.data() + m * nn;
      for (int s = 0; s < nn; ++s) ws.buf[s] = gcost * sgn(tmm[s]) / q;
      inverse_2d(t.transform, ws.buf.data(), ws.buf2.data(), ws.tmp.data(), n);
      double* gpm = ws.gp.data() + m * nn;
      for (int s = 0; s < nn; ++s) {
        ws.gx[s] += ws.buf2[s];
        gpm[s] -= ws.buf2[s];
      }
    }
  }
  std::fill(ws.gr.begin(), ws.gr.end(), 0.0);
  for (int m = 0; m < kModes; ++m) {
    if (negligible(ws.w[m])) continue;
    const double* gpm = ws.gp.data() + m * nn;
    if (m == kDcMode) {
      double s_all = 0.0;
      for (int s = 0; s < nn; ++s) s_all += gpm[s];
      for (int j = 0; j < 2 * n; ++j) ws.gr[t.dc_index[j]] += s_all / (2 * n);
      continue;
    }
    const int32_t* idx = t.pred_index + static_cast<int64_t>(m) * nn * 4;
    const double* wt = t.pred_weight + static_cast<int64_t>(m) * nn * 4;
    for (int s = 0; s < nn; ++s)
      for (int k = 0; k < 4; ++k) ws.gr[idx[s * 4 + k]] += wt[s * 4 + k] * gpm[s];
  }
  return gq;
}

template <typename F>
void for_block_pixels(const Tables& t, int64_t b, F f) {
  const int n = t.n;
  const int64_t width = t.cols * n, y0 = (b / t.cols) * n, x0 = (b % t.cols) * n;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) f(i * n + j, (y0 + i) * width + x0 + j);
}

// Below this many blocks in all planes one thread does the work: the barrier after
// every wavefront costs more than small pictures gain from a team (badly so on a
// loaded machine).
constexpr int64_t kMinParallelBlocks = 256;

}  // namespace

void intra_forward(const Tables& t, const Params& prm, int64_t planes, const double* x,
                   const double* qstep, double* recon, double* yhat) {
  const int64_t hw = t.blocks() * t.n * t.n, nn = t.n * t.n;
#pragma omp parallel if (planes * t.blocks() >= kMinParallelBlocks)
  {
    Workspace ws(t.n);
    for (int64_t f = 0; f < t.n_fronts; ++f) {
      const int64_t start = t.front_starts[f], count = t.front_starts[f + 1] - start;
#pragma omp for schedule(dynamic)
      for (int64_t it = 0; it < planes * count; ++it) {
        const int64_t p = it / count, b = t.fronts[start + it % count];
        double* rec = recon + p * hw;
        block_forward(t, prm, x + p * hw, rec, b, qstep[p], ws);
        std::copy(ws.yh.begin(), ws.yh.end(), yhat + (p * t.blocks() + b) * nn);
        for_block_pixels(t, b, [&](int s, int64_t pix) {
          rec[pix] = std::min(255.0, std::max(0.0, ws.v[s]));
        });
      }
    }
  }
}

void intra_backward(const Tables& t, const Params& prm, int64_t planes, const double* x,
                    const double* qstep, const double* recon, const double* g_recon,
                    const double* g_yhat, double* g_x, double* g_qstep) {
  const int64_t hw = t.blocks() * t.n * t.n, nn = t.n * t.n, nr = t.refs();
  int64_t widest = 0;
  for (int64_t f = 0; f < t.n_fronts; ++f)
    widest = std::max(widest, t.front_starts[f + 1] - t.front_starts[f]);
  std::vector<double> gacc(g_recon, g_recon + planes * hw);  // d loss / d recon, gathered
  std::vector<double> gr_front(planes * widest * nr);
  std::vector<double> gq_block(planes * t.blocks(), 0.0);
#pragma omp parallel if (planes * t.blocks() >= kMinParallelBlocks)
  {
    Workspace ws(t.n);
    std::vector<double> gout(nn);
    for (int64_t f = t.n_fronts - 1; f >= 0; --f) {
      const int64_t start = t.front_starts[f], count = t.front_starts[f + 1] - start;
#pragma omp for schedule(dynamic)
      for (int64_t it = 0; it < planes * count; ++it) {
        const int64_t p = it / count, i = it % count, b = t.fronts[start + i];
        block_forward(t, prm, x + p * hw, recon + p * hw, b, qstep[p], ws);
        const double* ga = gacc.data() + p * hw;
        for_block_pixels(t, b, [&](int s, int64_t pix) { gout[s] = ga[pix]; });
        gq_block[p * t.blocks() + b] = block_backward(
            t, prm, qstep[p], gout.data(), g_yhat + (p * t.blocks() + b) * nn, ws);
        double* gxp = g_x + p * hw;
        for_block_pixels(t, b, [&](int s, int64_t pix) { gxp[pix] = ws.gx[s]; });
        std::copy(ws.gr.begin(), ws.gr.end(), gr_front.begin() + (p * widest + i) * nr);
      }
      if (prm.ref_grad != 0.0) {
        // the references lie in earlier wavefronts; one plane per thread, no races
#pragma omp for schedule(static)
        for (int64_t p = 0; p < planes; ++p) {
          double* ga = gacc.data() + p * hw;
          for (int64_t i = 0; i < count; ++i) {
            const int64_t* src = t.ref_source + t.fronts[start + i] * nr;
            const double* gr = gr_front.data() + (p * widest + i) * nr;
            for (int64_t k = 0; k < nr; ++k)
              if (src[k] >= 0) ga[src[k]] += prm.ref_grad * gr[k];
          }
        }
      }
    }
  }
  for (int64_t p = 0; p < planes; ++p) {
    double s = 0.0;
    for (int64_t b = 0; b < t.blocks(); ++b) s += gq_block[p * t.blocks() + b];
    g_qstep[p] = s;
  }
}

}  // namespace dbpg
}  // namespace gencodec
