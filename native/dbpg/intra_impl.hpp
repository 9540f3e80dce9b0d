// diff-BPG block kernels (see intra.hpp), included by intra.cpp twice: once for any
// x86-64 / other CPU and once under #pragma GCC target("avx2"), each time inside its own
// namespace. No include guard on purpose; the standard headers it needs come first in
// intra.cpp. -ffp-contract=off holds for both, so both give the same results bit for bit.
constexpr double kPi = 3.14159265358979323846;

// The block transform A (n x n, rows = basis functions) in the form its products use.
// The HEVC core transforms have even rows symmetric and odd rows antisymmetric about the
// middle (8.6.4.2), so A v = [even rows: Ae (v_k + v_{n-1-k}); odd rows: Ao (v_k -
// v_{n-1-k})] with the n/2 x n/2 halves Ae, Ao (the partial butterfly: half the
// products); the DST-VII has no such symmetry and is applied as it is.
struct Transform {
  const double* a = nullptr;
  bool butterfly = false;
  std::vector<double> even, odd;  // (n/2) x (n/2): Ae[i][k] = A[2i][k], Ao[i][k] = A[2i+1][k]
  explicit Transform(const double* a_, int n) : a(a_) {
    const int h = n / 2;
    butterfly = n % 2 == 0;
    for (int i = 0; i < n && butterfly; ++i)
      for (int k = 0; k < h; ++k) {
        const double mirrored = (i % 2 == 0) ? a[i * n + n - 1 - k] : -a[i * n + n - 1 - k];
        if (a[i * n + k] != mirrored) butterfly = false;
      }
    if (!butterfly) return;
    even.resize(h * h);
    odd.resize(h * h);
    for (int i = 0; i < h; ++i)
      for (int k = 0; k < h; ++k) {
        even[i * h + k] = a[(2 * i) * n + k];
        odd[i * h + k] = a[(2 * i + 1) * n + k];
      }
  }
};

template <int N>
inline void transpose(const double* in, double* out) {
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) out[j * N + i] = in[i * N + j];
}

// out = A * D (each column of D transformed); rows of N values, vectorisable.
template <int N>
inline void columns_forward(const Transform& t, const double* d, double* out, double* e,
                            double* o) {
  if (t.butterfly) {
    constexpr int H = N / 2;
    for (int k = 0; k < H; ++k)
      for (int j = 0; j < N; ++j) {
        e[k * N + j] = d[k * N + j] + d[(N - 1 - k) * N + j];
        o[k * N + j] = d[k * N + j] - d[(N - 1 - k) * N + j];
      }
    for (int i = 0; i < H; ++i) {
      double* oe = out + (2 * i) * N;
      double* oo = out + (2 * i + 1) * N;
      for (int j = 0; j < N; ++j) oe[j] = oo[j] = 0.0;
      for (int k = 0; k < H; ++k) {
        const double ae = t.even[i * H + k], ao = t.odd[i * H + k];
        for (int j = 0; j < N; ++j) {
          oe[j] += ae * e[k * N + j];
          oo[j] += ao * o[k * N + j];
        }
      }
    }
    return;
  }
  for (int i = 0; i < N; ++i) {
    double* oi = out + i * N;
    for (int j = 0; j < N; ++j) oi[j] = 0.0;
    for (int k = 0; k < N; ++k) {
      const double aik = t.a[i * N + k];
      for (int j = 0; j < N; ++j) oi[j] += aik * d[k * N + j];
    }
  }
}

// out = A^T * Z (each column of Z inverse-transformed).
template <int N>
inline void columns_inverse(const Transform& t, const double* z, double* out, double* e,
                            double* o) {
  if (t.butterfly) {
    constexpr int H = N / 2;
    for (int k = 0; k < H; ++k) {
      double* ek = e + k * N;
      double* ok = o + k * N;
      for (int j = 0; j < N; ++j) ek[j] = ok[j] = 0.0;
      for (int i = 0; i < H; ++i) {
        const double ae = t.even[i * H + k], ao = t.odd[i * H + k];
        for (int j = 0; j < N; ++j) {
          ek[j] += ae * z[(2 * i) * N + j];
          ok[j] += ao * z[(2 * i + 1) * N + j];
        }
      }
      for (int j = 0; j < N; ++j) {
        out[k * N + j] = ek[j] + ok[j];
        out[(N - 1 - k) * N + j] = ek[j] - ok[j];
      }
    }
    return;
  }
  for (int k = 0; k < N; ++k) {
    double* ok = out + k * N;
    for (int j = 0; j < N; ++j) ok[j] = 0.0;
    for (int i = 0; i < N; ++i) {
      const double aik = t.a[i * N + k];
      for (int j = 0; j < N; ++j) ok[j] += aik * z[i * N + j];
    }
  }
}

// out = A * D * A^T = (A (A D)^T)^T; scratch: 3 n*n values.
template <int N>
void forward_2d(const Transform& t, const double* d, double* out, double* scratch) {
  double *s1 = scratch, *s2 = scratch + N * N, *e = s2 + N * N, *o = e + N * N / 2;
  columns_forward<N>(t, d, s1, e, o);
  transpose<N>(s1, s2);
  columns_forward<N>(t, s2, s1, e, o);
  transpose<N>(s1, out);
}

// out = A^T * Z * A = (A^T (A^T Z)^T)^T
template <int N>
void inverse_2d(const Transform& t, const double* z, double* out, double* scratch) {
  double *s1 = scratch, *s2 = scratch + N * N, *e = s2 + N * N, *o = e + N * N / 2;
  columns_inverse<N>(t, z, s1, e, o);
  transpose<N>(s1, s2);
  columns_inverse<N>(t, s2, s1, e, o);
  transpose<N>(s1, out);
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
  std::vector<double> r, preds, tm, cost, w, x, pred, y, yh, dfr, v, scratch, buf, buf2;
  // backward only
  std::vector<double> gv, gz, gc, ge, gx, gpred, gw, gp, gr;
  explicit Workspace(int n_)
      : n(n_), nn(n_ * n_), r(4 * n_ + 1), preds(kModes * nn), tm(kModes * nn), cost(kModes),
        w(kModes), x(nn), pred(nn), y(nn), yh(nn), dfr(nn), v(nn), scratch(3 * nn), buf(nn),
        buf2(nn), gv(nn), gz(nn), gc(nn), ge(nn), gx(nn), gpred(nn), gw(kModes),
        gp(kModes * nn), gr(4 * n_ + 1) {}
};

// Codes block b of one plane from the reconstruction rec (earlier blocks) and the
// input xp: fills ws (ws.v is the unclipped reconstruction). known_cost: the block's
// mode costs from the forward (the backward passes them; the transforms of the modes of
// negligible weight are then skipped, and ws.tm holds only the others), or nullptr.
template <int N>
void block_forward(const Tables& t, const Transform& tr, const Params& prm, const double* xp,
                   const double* rec, int64_t b, double q, const double* known_cost,
                   Workspace& ws) {
  constexpr int n = N, nn = N * N;
  const int nr = t.refs();
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
  // the transformed residual of mode m and its cost
  auto transform_mode = [&](int m) {
    const double* pm = ws.preds.data() + m * nn;
    for (int s = 0; s < nn; ++s) ws.buf[s] = ws.x[s] - pm[s];
    double* tmm = ws.tm.data() + m * nn;
    forward_2d<N>(tr, ws.buf.data(), tmm, ws.scratch.data());
    double c = 0.0;
    for (int s = 0; s < nn; ++s) c += std::fabs(tmm[s]);
    return c / q;
  };
  if (known_cost == nullptr)
    for (int m = 0; m < kModes; ++m) ws.cost[m] = transform_mode(m);
  else
    std::copy(known_cost, known_cost + kModes, ws.cost.begin());
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
  if (known_cost != nullptr)  // the backward needs only the modes that carry weight
    for (int m = 0; m < kModes; ++m)
      if (!negligible(ws.w[m])) transform_mode(m);
  std::fill(ws.pred.begin(), ws.pred.end(), 0.0);
  for (int m = 0; m < kModes; ++m) {
    const double wm = ws.w[m];
    const double* pm = ws.preds.data() + m * nn;
    for (int s = 0; s < nn; ++s) ws.pred[s] += wm * pm[s];
  }
  for (int s = 0; s < nn; ++s) ws.buf[s] = ws.x[s] - ws.pred[s];
  forward_2d<N>(tr, ws.buf.data(), ws.buf2.data(), ws.scratch.data());
  for (int s = 0; s < nn; ++s) {
    ws.y[s] = ws.buf2[s] / q;
    fourier_round(ws.y[s], prm.terms, &ws.yh[s], &ws.dfr[s]);
    ws.buf[s] = ws.yh[s] * q;
  }
  inverse_2d<N>(tr, ws.buf.data(), ws.buf2.data(), ws.scratch.data());
  for (int s = 0; s < nn; ++s) ws.v[s] = ws.pred[s] + ws.buf2[s];
}

// Chain rule through block_forward (ws filled by it): gout = gradient of the block's
// clipped reconstruction, gy = of its yhat. Writes ws.gx (input), ws.gr (reference
// samples) and returns the gradient of qstep.
template <int N>
double block_backward(const Tables& t, const Transform& tr, const Params& prm, double q,
                      const double* gout, const double* gy, Workspace& ws) {
  constexpr int n = N, nn = N * N;
  for (int s = 0; s < nn; ++s) ws.gv[s] = (ws.v[s] >= 0.0 && ws.v[s] <= 255.0) ? gout[s] : 0.0;
  forward_2d<N>(tr, ws.gv.data(), ws.gz.data(), ws.scratch.data());  // d/dZ of A^T Z A
  double gq = 0.0;
  for (int s = 0; s < nn; ++s) {
    gq += ws.gz[s] * ws.yh[s];
    const double gys = (ws.gz[s] * q + gy[s]) * ws.dfr[s];
    ws.gc[s] = gys / q;
    gq -= gys * ws.y[s] / q;
  }
  inverse_2d<N>(tr, ws.gc.data(), ws.ge.data(), ws.scratch.data());  // d/dE of A E A^T
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
      inverse_2d<N>(tr, ws.buf.data(), ws.buf2.data(), ws.scratch.data());
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

// With at least as many planes as threads each thread codes whole planes (no barrier
// per wavefront); otherwise the team shares each wavefront's blocks of all planes.
inline bool by_plane(int64_t planes) {
#ifdef _OPENMP
  return planes >= omp_get_max_threads();
#else
  return true;
#endif
}

template <int N>
void forward_planes(const Tables& t, const Transform& tr, const Params& prm, int64_t planes,
                    const double* x, const double* qstep, double* recon, double* yhat,
                    double* cost) {
  const int64_t hw = t.blocks() * t.n * t.n, nn = t.n * t.n;
  auto code_block = [&](int64_t p, int64_t b, Workspace& ws) {
    double* rec = recon + p * hw;
    block_forward<N>(t, tr, prm, x + p * hw, rec, b, qstep[p], nullptr, ws);
    std::copy(ws.cost.begin(), ws.cost.end(), cost + (p * t.blocks() + b) * kModes);
    std::copy(ws.yh.begin(), ws.yh.end(), yhat + (p * t.blocks() + b) * nn);
    for_block_pixels(t, b, [&](int s, int64_t pix) {
      rec[pix] = std::min(255.0, std::max(0.0, ws.v[s]));
    });
  };
  const bool parallel = planes * t.blocks() >= kMinParallelBlocks;
  if (by_plane(planes)) {
#pragma omp parallel if (parallel)
    {
      Workspace ws(t.n);
#pragma omp for schedule(dynamic)
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t i = 0; i < t.blocks(); ++i) code_block(p, t.fronts[i], ws);
    }
    return;
  }
#pragma omp parallel if (parallel)
  {
    Workspace ws(t.n);
    for (int64_t f = 0; f < t.n_fronts; ++f) {
      const int64_t start = t.front_starts[f], count = t.front_starts[f + 1] - start;
#pragma omp for schedule(dynamic)
      for (int64_t it = 0; it < planes * count; ++it)
        code_block(it / count, t.fronts[start + it % count], ws);
    }
  }
}

template <int N>
void backward_planes(const Tables& t, const Transform& tr, const Params& prm, int64_t planes,
                     const double* x, const double* qstep, const double* recon,
                     const double* cost, const double* g_recon, const double* g_yhat,
                     double* g_x, double* g_qstep) {
  const int64_t hw = t.blocks() * t.n * t.n, nn = t.n * t.n, nr = t.refs();
  int64_t widest = 0;
  for (int64_t f = 0; f < t.n_fronts; ++f)
    widest = std::max(widest, t.front_starts[f + 1] - t.front_starts[f]);
  std::vector<double> gacc(g_recon, g_recon + planes * hw);  // d loss / d recon, gathered
  std::vector<double> gr_front(planes * widest * nr);
  std::vector<double> gq_block(planes * t.blocks(), 0.0);
  // block i of wavefront f of plane p
  auto chain_block = [&](int64_t p, int64_t f, int64_t i, Workspace& ws, double* gout) {
    const int64_t b = t.fronts[t.front_starts[f] + i];
    block_forward<N>(t, tr, prm, x + p * hw, recon + p * hw, b, qstep[p],
                     cost + (p * t.blocks() + b) * kModes, ws);
    const double* ga = gacc.data() + p * hw;
    for_block_pixels(t, b, [&](int s, int64_t pix) { gout[s] = ga[pix]; });
    gq_block[p * t.blocks() + b] = block_backward<N>(t, tr, prm, qstep[p], gout,
                                                     g_yhat + (p * t.blocks() + b) * nn, ws);
    double* gxp = g_x + p * hw;
    for_block_pixels(t, b, [&](int s, int64_t pix) { gxp[pix] = ws.gx[s]; });
    std::copy(ws.gr.begin(), ws.gr.end(), gr_front.begin() + (p * widest + i) * nr);
  };
  // the reference gradients of wavefront f into plane p's earlier wavefronts
  auto scatter_refs = [&](int64_t p, int64_t f) {
    if (prm.ref_grad == 0.0) return;
    const int64_t start = t.front_starts[f], count = t.front_starts[f + 1] - start;
    double* ga = gacc.data() + p * hw;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t* src = t.ref_source + t.fronts[start + i] * nr;
      const double* gr = gr_front.data() + (p * widest + i) * nr;
      for (int64_t k = 0; k < nr; ++k)
        if (src[k] >= 0) ga[src[k]] += prm.ref_grad * gr[k];
    }
  };
  const bool parallel = planes * t.blocks() >= kMinParallelBlocks;
  if (by_plane(planes)) {
#pragma omp parallel if (parallel)
    {
      Workspace ws(t.n);
      std::vector<double> gout(nn);
#pragma omp for schedule(dynamic)
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t f = t.n_fronts - 1; f >= 0; --f) {
          const int64_t count = t.front_starts[f + 1] - t.front_starts[f];
          for (int64_t i = 0; i < count; ++i) chain_block(p, f, i, ws, gout.data());
          scatter_refs(p, f);
        }
    }
  } else {
#pragma omp parallel if (parallel)
    {
      Workspace ws(t.n);
      std::vector<double> gout(nn);
      for (int64_t f = t.n_fronts - 1; f >= 0; --f) {
        const int64_t count = t.front_starts[f + 1] - t.front_starts[f];
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < planes * count; ++it)
          chain_block(it / count, f, it % count, ws, gout.data());
        // the references lie in earlier wavefronts; one plane per thread, no races
#pragma omp for schedule(static)
        for (int64_t p = 0; p < planes; ++p) scatter_refs(p, f);
      }
    }
  }
  for (int64_t p = 0; p < planes; ++p) {
    double s = 0.0;
    for (int64_t b = 0; b < t.blocks(); ++b) s += gq_block[p * t.blocks() + b];
    g_qstep[p] = s;
  }
}

// The entry points of this kernel set (block size dispatch).
void forward_all(const Tables& t, const Params& prm, int64_t planes, const double* x,
                 const double* qstep, double* recon, double* yhat,
                 double* cost) {
  const Transform tr(t.transform, t.n);
  switch (t.n) {
    case 4: return forward_planes<4>(t, tr, prm, planes, x, qstep, recon, yhat, cost);
    case 8: return forward_planes<8>(t, tr, prm, planes, x, qstep, recon, yhat, cost);
    case 16: return forward_planes<16>(t, tr, prm, planes, x, qstep, recon, yhat, cost);
    case 32: return forward_planes<32>(t, tr, prm, planes, x, qstep, recon, yhat, cost);
    default: throw std::invalid_argument("block size must be 4, 8, 16 or 32");
  }
}

void backward_all(const Tables& t, const Params& prm, int64_t planes, const double* x,
                  const double* qstep, const double* recon, const double* cost,
                  const double* g_recon, const double* g_yhat, double* g_x, double* g_qstep) {
  const Transform tr(t.transform, t.n);
  switch (t.n) {
    case 4:
      return backward_planes<4>(t, tr, prm, planes, x, qstep, recon, cost, g_recon, g_yhat,
                                 g_x, g_qstep);
    case 8:
      return backward_planes<8>(t, tr, prm, planes, x, qstep, recon, cost, g_recon, g_yhat,
                                 g_x, g_qstep);
    case 16:
      return backward_planes<16>(t, tr, prm, planes, x, qstep, recon, cost, g_recon, g_yhat,
                                 g_x, g_qstep);
    case 32:
      return backward_planes<32>(t, tr, prm, planes, x, qstep, recon, cost, g_recon, g_yhat,
                                 g_x, g_qstep);
    default: throw std::invalid_argument("block size must be 4, 8, 16 or 32");
  }
}
