// diff-BPG block kernels (see intra.hpp), included by intra.cpp twice: once for any
// x86-64 / other CPU and once under #pragma GCC target("avx2,fma"), each time inside its
// own namespace. No include guard on purpose; the standard headers it needs come first in
// intra.cpp. -ffp-contract=off holds for both; the transforms' multiply-adds are fused in
// the avx2 build only (madd), so the two builds round differently (not bit for bit: the
// closed loop can amplify a last-bit difference on large planes); each matches the
// PyTorch reference as the tests check it.
//
// Layouts. A block's samples are n x n, row-major. The 2-D transforms below skip their
// last transpose: forward_t(D) = (A D A^T)^T, the coefficients transposed, and
// inverse_t(G) = A^T G^T A, so inverse_t is forward_t's adjoint and the residual's
// coefficients live transposed (yhat is transposed back on output). The angular modes
// 2..17 predict column by column: their prediction is kept transposed ("line layout",
// lines = columns) and their cost transform is forward_t of the transposed residual;
// planar, DC and the modes 18..34 are kept as they are. sum |coefficients| is the same
// either way.
constexpr double kPi = 3.14159265358979323846;

// ---- transforms -------------------------------------------------------------------------

// A transform matrix A (n x n, rows = basis functions) in the form its products use. The
// HEVC core transforms have even rows symmetric and odd rows antisymmetric about the
// middle (8.6.4.2), so A v = [even rows: Ae (v_k + v_{n-1-k}); odd rows: Ao (v_k -
// v_{n-1-k})] with the n/2 x n/2 halves Ae[i][k] = A[2i][k], Ao[i][k] = A[2i+1][k], and
// Ae has the same symmetry again (it is the n/2-point core transform up to a scale), down
// to 1 x 1: HM's partial butterfly, recursive (86 of the 256 products of a 16-point
// vector). The 4x4 DST-VII has no such symmetry and is applied as it is.
struct Transform {
  std::vector<double> full;         // n*n, when there is no symmetry
  std::vector<double> odd;          // Ao, (n/2)^2
  std::unique_ptr<Transform> even;  // the form of Ae
  Transform(const double* a, int n) {
    const int h = n / 2;
    bool symmetric = n % 2 == 0;
    for (int i = 0; i < n && symmetric; ++i)
      for (int k = 0; k < h; ++k) {
        const double mirrored = (i % 2 == 0) ? a[i * n + n - 1 - k] : -a[i * n + n - 1 - k];
        if (a[i * n + k] != mirrored) symmetric = false;
      }
    if (!symmetric) {
      full.assign(a, a + n * n);
      return;
    }
    std::vector<double> ae(h * h);
    odd.resize(h * h);
    for (int i = 0; i < h; ++i)
      for (int k = 0; k < h; ++k) {
        ae[i * h + k] = a[(2 * i) * n + k];
        odd[i * h + k] = a[(2 * i + 1) * n + k];
      }
    even = std::make_unique<Transform>(ae.data(), h);
  }
};

// Four doubles, unaligned, aliasing double: the rows of the column passes are handled
// as W / 4 of these (AVX registers in the avx2 build, SSE pairs in the generic one).
typedef double Vec4 __attribute__((vector_size(32), aligned(8), may_alias));

// acc + c * v, the transforms' products: one fused multiply-add (one rounding) where the
// including file sets DBPG_FUSED_MADD (the avx2 + fma build), a product and a sum
// otherwise.
inline Vec4 madd(double c, Vec4 v, Vec4 acc) {
#if DBPG_FUSED_MADD
  return (Vec4)_mm256_fmadd_pd(_mm256_set1_pd(c), (__m256d)v, (__m256d)acc);
#else
  return acc + c * v;
#endif
}

// out = A in, column by column, for an L-point A on rows of W values: input row k at
// in + k * is, output row i at out + i * os.
template <int L, int W>
void columns_forward(const Transform& t, const double* in, int is, double* out, int os) {
  constexpr int V = W / 4;
  if constexpr (L % 2 == 0) {
    if (t.even) {
      constexpr int H = L / 2;
      Vec4 e[H * V], o[H * V];
      for (int k = 0; k < H; ++k)
        for (int v = 0; v < V; ++v) {
          const Vec4 a = *reinterpret_cast<const Vec4*>(in + k * is + 4 * v);
          const Vec4 b = *reinterpret_cast<const Vec4*>(in + (L - 1 - k) * is + 4 * v);
          e[k * V + v] = a + b;
          o[k * V + v] = a - b;
        }
      columns_forward<H, W>(*t.even, reinterpret_cast<const double*>(e), W, out, 2 * os);
      // R output rows at a time: each o[k] loaded once for all of them
      constexpr int R = H % 2 == 0 ? 2 : 1;
      for (int i = 0; i < H; i += R) {
        Vec4 acc[R][V] = {};
        for (int k = 0; k < H; ++k)
          for (int r = 0; r < R; ++r) {
            const double c = t.odd[(i + r) * H + k];
            for (int v = 0; v < V; ++v) acc[r][v] = madd(c, o[k * V + v], acc[r][v]);
          }
        for (int r = 0; r < R; ++r)
          for (int v = 0; v < V; ++v)
            *reinterpret_cast<Vec4*>(out + (2 * (i + r) + 1) * os + 4 * v) = acc[r][v];
      }
      return;
    }
  }
  for (int i = 0; i < L; ++i) {
    Vec4 acc[V] = {};
    for (int k = 0; k < L; ++k) {
      const double c = t.full[i * L + k];
      for (int v = 0; v < V; ++v)
        acc[v] = madd(c, *reinterpret_cast<const Vec4*>(in + k * is + 4 * v), acc[v]);
    }
    for (int v = 0; v < V; ++v) *reinterpret_cast<Vec4*>(out + i * os + 4 * v) = acc[v];
  }
}

// out = A^T in, column by column (strides as columns_forward).
template <int L, int W>
void columns_inverse(const Transform& t, const double* in, int is, double* out, int os) {
  constexpr int V = W / 4;
  if constexpr (L % 2 == 0) {
    if (t.even) {
      constexpr int H = L / 2;
      Vec4 ev[H * V];
      columns_inverse<H, W>(*t.even, in, 2 * is, reinterpret_cast<double*>(ev), W);
      // R output rows (and their mirrors) at a time: each odd input row loaded once
      constexpr int R = H % 2 == 0 ? 2 : 1;
      for (int k = 0; k < H; k += R) {
        Vec4 acc[R][V] = {};
        for (int i = 0; i < H; ++i) {
          const double* zi = in + (2 * i + 1) * is;
          for (int r = 0; r < R; ++r) {
            const double c = t.odd[i * H + k + r];
            for (int v = 0; v < V; ++v)
              acc[r][v] = madd(c, *reinterpret_cast<const Vec4*>(zi + 4 * v), acc[r][v]);
          }
        }
        for (int r = 0; r < R; ++r)
          for (int v = 0; v < V; ++v) {
            const Vec4 e = ev[(k + r) * V + v];
            *reinterpret_cast<Vec4*>(out + (k + r) * os + 4 * v) = e + acc[r][v];
            *reinterpret_cast<Vec4*>(out + (L - 1 - k - r) * os + 4 * v) = e - acc[r][v];
          }
      }
      return;
    }
  }
  for (int k = 0; k < L; ++k) {
    Vec4 acc[V] = {};
    for (int i = 0; i < L; ++i) {
      const double c = t.full[i * L + k];
      for (int v = 0; v < V; ++v)
        acc[v] = madd(c, *reinterpret_cast<const Vec4*>(in + i * is + 4 * v), acc[v]);
    }
    for (int v = 0; v < V; ++v) *reinterpret_cast<Vec4*>(out + k * os + 4 * v) = acc[v];
  }
}

typedef long long Mask4 __attribute__((vector_size(32)));
#ifdef __clang__
#define DBPG_SHUFFLE(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
#define DBPG_SHUFFLE(a, b, i, j, k, l) __builtin_shuffle(a, b, Mask4{i, j, k, l})
#endif

// out = in^T, N x N, by 4 x 4 tiles
template <int N>
inline void transpose(const double* in, double* out) {
  for (int bi = 0; bi < N; bi += 4)
    for (int bj = 0; bj < N; bj += 4) {
      const Vec4 r0 = *reinterpret_cast<const Vec4*>(in + bi * N + bj);
      const Vec4 r1 = *reinterpret_cast<const Vec4*>(in + (bi + 1) * N + bj);
      const Vec4 r2 = *reinterpret_cast<const Vec4*>(in + (bi + 2) * N + bj);
      const Vec4 r3 = *reinterpret_cast<const Vec4*>(in + (bi + 3) * N + bj);
      const Vec4 t0 = DBPG_SHUFFLE(r0, r1, 0, 4, 2, 6);
      const Vec4 t1 = DBPG_SHUFFLE(r0, r1, 1, 5, 3, 7);
      const Vec4 t2 = DBPG_SHUFFLE(r2, r3, 0, 4, 2, 6);
      const Vec4 t3 = DBPG_SHUFFLE(r2, r3, 1, 5, 3, 7);
      double* o = out + bj * N + bi;
      *reinterpret_cast<Vec4*>(o) = DBPG_SHUFFLE(t0, t2, 0, 1, 4, 5);
      *reinterpret_cast<Vec4*>(o + N) = DBPG_SHUFFLE(t1, t3, 0, 1, 4, 5);
      *reinterpret_cast<Vec4*>(o + 2 * N) = DBPG_SHUFFLE(t0, t2, 2, 3, 6, 7);
      *reinterpret_cast<Vec4*>(o + 3 * N) = DBPG_SHUFFLE(t1, t3, 2, 3, 6, 7);
    }
}

inline Vec4 load4(const double* p) { return *reinterpret_cast<const Vec4*>(p); }
inline void store4(double* p, Vec4 v) { *reinterpret_cast<Vec4*>(p) = v; }
inline double lanes_sum(Vec4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

// sum |c| and sum a * b over NN values (NN a multiple of 16), in four vector partial sums
// (up to four chains of independent additions: one would wait on each add's latency)
constexpr Mask4 kAbs = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
inline Vec4 vabs(Vec4 v) { return (Vec4)((Mask4)v & kAbs); }  // the sign bits cleared

template <int NN>
inline double sum_abs(const double* c) {
  static_assert(NN % 16 == 0);
  Vec4 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (int s = 0; s < NN; s += 16) {
    a0 += vabs(load4(c + s));
    a1 += vabs(load4(c + s + 4));
    a2 += vabs(load4(c + s + 8));
    a3 += vabs(load4(c + s + 12));
  }
  return lanes_sum((a0 + a1) + (a2 + a3));
}

template <int NN>
inline double dot(const double* a, const double* b) {
  static_assert(NN % 16 == 0);
  Vec4 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (int s = 0; s < NN; s += 16) {
    a0 += load4(a + s) * load4(b + s);
    a1 += load4(a + s + 4) * load4(b + s + 4);
    a2 += load4(a + s + 8) * load4(b + s + 8);
    a3 += load4(a + s + 12) * load4(b + s + 12);
  }
  return lanes_sum((a0 + a1) + (a2 + a3));
}

// out = (A d A^T)^T = A (A d)^T; s: N*N scratch.
template <int N>
inline void forward_t(const Transform& t, const double* d, double* out, double* s1,
                      double* s2) {
  columns_forward<N, N>(t, d, N, s1, N);
  transpose<N>(s1, s2);
  columns_forward<N, N>(t, s2, N, out, N);
}

// out = A^T g^T A = A^T (A^T g)^T, the adjoint of forward_t.
template <int N>
inline void inverse_t(const Transform& t, const double* g, double* out, double* s1,
                      double* s2) {
  columns_inverse<N, N>(t, g, N, s1, N);
  transpose<N>(s1, s2);
  columns_inverse<N, N>(t, s2, N, out, N);
}

// sin and cos of four angles in [-pi, pi] (to within an ulp or two of the library's):
// the angle less the nearest multiple j of pi/2 (pi/2 in two parts, Cody and Waite), the
// Taylor series of sin and cos on [-pi/4, pi/4] to x^17 / x^16 (truncation below 1e-17),
// then rotated by j quarter turns.
inline void sincos4(Vec4 a, Vec4* sin_out, Vec4* cos_out) {
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52: x + kRound - kRound rounds x
  const Vec4 j = (a * (2.0 / kPi) + kRound) - kRound;
  const Vec4 r = (a - j * 1.5707963267341256e+00) - j * 6.077100506506192e-11;
  const Vec4 r2 = r * r;
  Vec4 s = r2 * (1.0 / 355687428096000.0) - 1.0 / 1307674368000.0;  // x^17 / 17!, x^15 / 15!
  s = s * r2 + 1.0 / 6227020800.0;
  s = s * r2 - 1.0 / 39916800.0;
  s = s * r2 + 1.0 / 362880.0;
  s = s * r2 - 1.0 / 5040.0;
  s = s * r2 + 1.0 / 120.0;
  s = s * r2 - 1.0 / 6.0;
  s = r + r * (r2 * s);
  Vec4 c = r2 * (1.0 / 20922789888000.0) - 1.0 / 87178291200.0;  // x^16 / 16!, x^14 / 14!
  c = c * r2 + 1.0 / 479001600.0;
  c = c * r2 - 1.0 / 3628800.0;
  c = c * r2 + 1.0 / 40320.0;
  c = c * r2 - 1.0 / 720.0;
  c = c * r2 + 1.0 / 24.0;
  c = c * r2 - 0.5;
  c = 1.0 + r2 * c;
  for (int l = 0; l < 4; ++l) {  // quarter turns: (s, c) -> (c, -s) -> (-s, -c) -> (-c, s)
    const int q = static_cast<int>(j[l]) & 3;
    const double sl = s[l], cl = c[l];
    (*sin_out)[l] = q == 0 ? sl : q == 1 ? cl : q == 2 ? -sl : -cl;
    (*cos_out)[l] = q == 0 ? cl : q == 1 ? -sl : q == 2 ? -cl : sl;
  }
}

// round_N(y) = y - sum_{k=1..N} (-1)^(k+1) sin(2 pi k y) / (k pi) and its derivative
// 1 - 2 sum_{k=1..N} (-1)^(k+1) cos(2 pi k y) (codecs_ext/surrogates/rounding.py), of NN
// values (a multiple of 16), sixteen at a time (four independent recurrences): sin / cos
// of k * phase by the angle-addition recurrence from sin and cos of the phase.
template <int NN>
void fourier_round(const double* y, int terms, double* value, double* deriv) {
  constexpr double kRound = 6755399441055744.0;
  constexpr int G = 4;
  for (int s = 0; s < NN; s += 4 * G) {
    Vec4 yv[G], s1[G], c1[G], sk[G], ck[G], sum_s[G] = {}, sum_c[G] = {};
    for (int g = 0; g < G; ++g) {
      yv[g] = load4(y + s + 4 * g);
      // the same angle mod 2 pi
      sincos4((2.0 * kPi) * (yv[g] - ((yv[g] + kRound) - kRound)), &s1[g], &c1[g]);
      sk[g] = s1[g];
      ck[g] = c1[g];
    }
    for (int k = 1; k <= terms; ++k) {
      const double sign = (k & 1) ? 1.0 : -1.0, coef = sign / (k * kPi);
      for (int g = 0; g < G; ++g) {
        sum_s[g] += coef * sk[g];
        sum_c[g] += sign * ck[g];
        const Vec4 next = sk[g] * c1[g] + ck[g] * s1[g];
        ck[g] = ck[g] * c1[g] - sk[g] * s1[g];
        sk[g] = next;
      }
    }
    for (int g = 0; g < G; ++g) {
      store4(value + s + 4 * g, yv[g] - sum_s[g]);
      store4(deriv + s + 4 * g, 1.0 - 2.0 * sum_c[g]);
    }
  }
}

// ---- the 35 predictions -------------------------------------------------------------------

// intraPredAngle of modes 2..34 (H.265 Table 8-4) and invAngle of modes 11..25 (8-5).
constexpr int kAngle[33] = {32, 26, 21, 17, 13, 9, 5, 2, 0, -2, -5, -9, -13, -17, -21, -26, -32,
                            -26, -21, -17, -13, -9, -5, -2, 0, 2, 5, 9, 13, 17, 21, 26, 32};
constexpr int kInvAngle[15] = {-4096, -1638, -910, -630, -482, -390, -315, -256,
                               -315, -390, -482, -630, -910, -1638, -4096};

// An angular mode (H.265 8.4.4.2.6) as n lines of two-tap interpolations along its
// reference array ref[]: line d (a row for the vertical modes 18..34, a column for 2..17)
// at position t is w0[d] ref[off[d] + t] + w1[d] ref[off[d] + t + 1]. ref[0..2n] is the
// main side from the corner on (r[2n + k] for vertical modes, r[2n - k] for horizontal
// ones; r as hevc_intra.py lays it out); negative angles extend it by the side samples
// ref[-side..-1] projected with invAngle.
struct Angular {
  bool vertical = false;
  int side = 0;
  std::vector<int> side_index;  // r index of ref[k], k = -side..-1 (at k + side)
  std::vector<int> off;
  std::vector<double> w0, w1;
};

inline bool line_layout(int m) { return m >= 2 && m < 18; }  // prediction kept transposed

// The angular modes of block size n, checked against the prediction tables the
// PyTorch reference uses (hevc_intra.prediction_tables): the op computes what they say.
struct Modes {
  Angular ang[kModes];  // 2..34
  explicit Modes(const Tables& t) {
    const int n = t.n, nn = n * n;
    for (int m = 2; m < kModes; ++m) {
      Angular& a = ang[m];
      const int angle = kAngle[m - 2];
      a.vertical = m >= 18;
      if (angle < 0 && ((n * angle) >> 5) < -1) {
        a.side = -((n * angle) >> 5);
        for (int k = -a.side; k < 0; ++k) {
          const int proj = (k * kInvAngle[m - 11] + 128) >> 8;  // side sample -1 + proj
          a.side_index.push_back(a.vertical ? 2 * n - proj : 2 * n + proj);
        }
      }
      for (int d = 0; d < n; ++d) {
        a.off.push_back((((d + 1) * angle) >> 5) + 1);
        const int fact = ((d + 1) * angle) & 31;
        a.w0.push_back((32 - fact) / 32.0);
        a.w1.push_back(fact / 32.0);
      }
      for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
          const int d = a.vertical ? y : x, pos = a.vertical ? x : y;
          const int64_t e = (static_cast<int64_t>(m) * nn + y * n + x) * 4;
          const int32_t* idx = t.pred_index + e;
          const double* wt = t.pred_weight + e;
          const int k = a.off[d] + pos;
          const bool ok = k >= -a.side && idx[0] == ref_index(a, n, k) &&
                          wt[0] == a.w0[d] && wt[1] == a.w1[d] &&
                          (a.w1[d] == 0.0 || idx[1] == ref_index(a, n, k + 1)) &&
                          wt[2] == 0.0 && wt[3] == 0.0;
          if (!ok)
            throw std::invalid_argument("pred_index / pred_weight are not HEVC's angular mode " +
                                        std::to_string(m));
        }
    }
  }
  static int ref_index(const Angular& a, int n, int k) {
    if (k < 0) return a.side_index[k + a.side];
    return a.vertical ? 2 * n + k : 2 * n - k;
  }
};

// Everything one block's forward computes (kept for its backward), and the backward's
// buffers. ext[v]: the reference array ref[-n..2n] of the horizontal (v = 0) or vertical
// (v = 1) modes at ext[v] + n + k.
template <int N>
struct Workspace {
  static constexpr int nn = N * N, ne = 3 * N + 1;
  alignas(32) double r[4 * N + 1], ext[2][ne], gext[2][ne], gr[4 * N + 1];
  alignas(32) double preds[kModes * nn];  // P_m, in line layout for modes 2..17
  double cost[kModes], w[kModes], gw[kModes], gcost[kModes];
  alignas(32) double x[nn], xt[nn], e[nn], ct[nn], s1[nn], s2[nn], pred[nn], pred_line[nn],
      y[nn], yh[nn], dfr[nn], v[nn];
  alignas(32) double gv[nn], gz[nn], gc[nn], ge[nn], gx[nn], gpred[nn], gpredt[nn],
      sum_plain[nn], sum_line[nn], gp[nn];
};

// P_m of the block (reference samples in ws.r, ext filled) into pm, in m's layout.
template <int N>
void predict(const Tables& t, const Modes& md, int m, Workspace<N>& ws, double* pm) {
  constexpr int nn = N * N;
  if (m == kDcMode) {
    double s = 0.0;
    for (int j = 0; j < 2 * N; ++j) s += ws.r[t.dc_index[j]];
    std::fill(pm, pm + nn, s / (2 * N));
    return;
  }
  if (m < 2) {  // planar: four taps, as the tables say
    const int32_t* idx = t.pred_index + static_cast<int64_t>(m) * nn * 4;
    const double* wt = t.pred_weight + static_cast<int64_t>(m) * nn * 4;
    for (int s = 0; s < nn; ++s) {
      double acc = 0.0;
      for (int k = 0; k < 4; ++k) acc += ws.r[idx[s * 4 + k]] * wt[s * 4 + k];
      pm[s] = acc;
    }
    return;
  }
  const Angular& a = md.ang[m];
  double* ext = ws.ext[a.vertical];
  for (int k = 0; k < a.side; ++k) ext[N - a.side + k] = ws.r[a.side_index[k]];
  for (int d = 0; d < N; ++d) {
    const double* s0 = ext + N + a.off[d];
    const double w0 = a.w0[d], w1 = a.w1[d];
    double* out = pm + d * N;
    if (w1 == 0.0)
      for (int p = 0; p < N; p += 4) store4(out + p, w0 * load4(s0 + p));
    else
      for (int p = 0; p < N; p += 4) store4(out + p, w0 * load4(s0 + p) + w1 * load4(s0 + p + 1));
  }
}

// gr += the gradient of the reference samples given g, that of P_m (in m's layout); the
// angular modes' main sides collect in ws.gext (flush_main adds them to gr).
template <int N>
void predict_adjoint(const Tables& t, const Modes& md, int m, const double* g,
                     Workspace<N>& ws) {
  constexpr int nn = N * N;
  if (m == kDcMode) {
    double s_all = 0.0;
    for (int s = 0; s < nn; ++s) s_all += g[s];
    for (int j = 0; j < 2 * N; ++j) ws.gr[t.dc_index[j]] += s_all / (2 * N);
    return;
  }
  if (m < 2) {
    const int32_t* idx = t.pred_index + static_cast<int64_t>(m) * nn * 4;
    const double* wt = t.pred_weight + static_cast<int64_t>(m) * nn * 4;
    for (int s = 0; s < nn; ++s)
      for (int k = 0; k < 4; ++k) ws.gr[idx[s * 4 + k]] += wt[s * 4 + k] * g[s];
    return;
  }
  const Angular& a = md.ang[m];
  double* gext = ws.gext[a.vertical];
  std::fill(gext + N - a.side, gext + N, 0.0);
  for (int d = 0; d < N; ++d) {
    double* s0 = gext + N + a.off[d];
    const double w0 = a.w0[d], w1 = a.w1[d];
    const double* gd = g + d * N;
    if (w1 == 0.0) {
      for (int p = 0; p < N; p += 4) store4(s0 + p, load4(s0 + p) + w0 * load4(gd + p));
      continue;
    }
    // ref[off + p] gets w0 gd[p] + w1 gd[p - 1] (gd[-1] = 0), ref[off + N] w1 gd[N - 1]:
    // one read-modify-write of each chunk (a second pass at an offset of one would load
    // what the first just stored, across two stores, which stalls store forwarding)
    Vec4 prev = {};
    for (int p = 0; p < N; p += 4) {
      const Vec4 cur = load4(gd + p);
      const Vec4 shifted = DBPG_SHUFFLE(prev, cur, 3, 4, 5, 6);  // gd[p - 1 .. p + 2]
      store4(s0 + p, load4(s0 + p) + (w0 * cur + w1 * shifted));
      prev = cur;
    }
    s0[N] += w1 * prev[3];
  }
  for (int k = 0; k < a.side; ++k) ws.gr[a.side_index[k]] += gext[N - a.side + k];
}

template <int N>
void flush_main(Workspace<N>& ws) {
  for (int k = 0; k <= 2 * N; ++k) {
    ws.gr[2 * N - k] += ws.gext[0][N + k];
    ws.gr[2 * N + k] += ws.gext[1][N + k];
  }
}

// ---- signs of the mode costs' coefficients --------------------------------------------------

template <int NN>
inline void pack_signs(const double* c, uint8_t* pos, uint8_t* neg) {
  const Mask4 lo = {1, 2, 4, 8}, hi = {16, 32, 64, 128};
  for (int j = 0; j < NN / 8; ++j) {
    const Vec4 a = load4(c + 8 * j), b = load4(c + 8 * j + 4);
    const Mask4 p = ((a > 0.0) & lo) | ((b > 0.0) & hi), g = ((a < 0.0) & lo) | ((b < 0.0) & hi);
    pos[j] = static_cast<uint8_t>(p[0] | p[1] | p[2] | p[3]);
    neg[j] = static_cast<uint8_t>(g[0] | g[1] | g[2] | g[3]);
  }
}

// The four bits of a nibble as 0.0 / 1.0.
struct NibbleBits {
  Vec4 bits[16];
  NibbleBits() {
    for (int v = 0; v < 16; ++v)
      for (int l = 0; l < 4; ++l) bits[v][l] = (v >> l) & 1;
  }
};
static const NibbleBits kNibbleBits;

// sign(c) of the eight coefficients 8j .. 8j + 7 as pack_signs left them (-1, 0, +1)
inline void signs8(const uint8_t* pos, const uint8_t* neg, int j, Vec4* lo, Vec4* hi) {
  const Vec4* bits = kNibbleBits.bits;
  *lo = bits[pos[j] & 15] - bits[neg[j] & 15];
  *hi = bits[pos[j] >> 4] - bits[neg[j] >> 4];
}

// out += scale * sign(c)
template <int NN>
inline void add_signs(const uint8_t* pos, const uint8_t* neg, double scale, double* out) {
  for (int j = 0; j < NN / 8; ++j) {
    Vec4 lo, hi;
    signs8(pos, neg, j, &lo, &hi);
    store4(out + 8 * j, load4(out + 8 * j) + scale * lo);
    store4(out + 8 * j + 4, load4(out + 8 * j + 4) + scale * hi);
  }
}

// out = scale * sign(c)
template <int NN>
inline void set_signs(const uint8_t* pos, const uint8_t* neg, double scale, double* out) {
  for (int j = 0; j < NN / 8; ++j) {
    Vec4 lo, hi;
    signs8(pos, neg, j, &lo, &hi);
    store4(out + 8 * j, scale * lo);
    store4(out + 8 * j + 4, scale * hi);
  }
}

// A mode whose soft-argmin weight is below this adds less than a float64 rounding error
// (relative to the weights, which sum to 1) to any gradient: its backward is skipped.
constexpr double kNegligibleWeight = 1e-17;
inline bool negligible(double w) { return w < kNegligibleWeight; }

// ---- one block -------------------------------------------------------------------------

// Codes block b of one plane from the reconstruction rec (earlier blocks) and the input
// xp: fills ws (ws.v is the unclipped reconstruction). known_cost == nullptr: computes
// the mode costs into ws.cost and their coefficients' signs into signs; otherwise takes
// the forward's costs (the backward) and transforms no mode.
template <int N>
void block_forward(const Tables& t, const Modes& md, const Transform& tr, const Params& prm,
                   const double* xp, const double* rec, int64_t b, double q,
                   const double* known_cost, uint8_t* signs, Workspace<N>& ws) {
  constexpr int nn = N * N, nb = nn / 8;
  const int nr = t.refs();
  const int64_t width = t.cols * N;
  const int64_t* src = t.ref_source + b * nr;
  for (int k = 0; k < nr; ++k) ws.r[k] = src[k] < 0 ? kMidGrey : rec[src[k]];
  for (int k = 0; k <= 2 * N; ++k) {
    ws.ext[0][N + k] = ws.r[2 * N - k];
    ws.ext[1][N + k] = ws.r[2 * N + k];
  }
  const int64_t y0 = (b / t.cols) * N, x0 = (b % t.cols) * N;
  for (int i = 0; i < N; ++i) std::copy_n(xp + (y0 + i) * width + x0, N, ws.x + i * N);
  transpose<N>(ws.x, ws.xt);
  for (int m = 0; m < kModes; ++m) {
    double* pm = ws.preds + m * nn;
    predict<N>(t, md, m, ws, pm);
    if (known_cost != nullptr) continue;
    // the cost: sum |A (X - P_m) A^T| / Qstep (in line layout for modes 2..17)
    const double* xs = line_layout(m) ? ws.xt : ws.x;
    for (int s = 0; s < nn; s += 4) store4(ws.e + s, load4(xs + s) - load4(pm + s));
    forward_t<N>(tr, ws.e, ws.ct, ws.s1, ws.s2);
    ws.cost[m] = sum_abs<nn>(ws.ct) / q;
    pack_signs<nn>(ws.ct, signs + m * 2 * nb, signs + m * 2 * nb + nb);
  }
  if (known_cost != nullptr) std::copy(known_cost, known_cost + kModes, ws.cost);
  const int best = static_cast<int>(std::min_element(ws.cost, ws.cost + kModes) - ws.cost);
  if (prm.temperature == 0.0) {
    std::fill(ws.w, ws.w + kModes, 0.0);
    ws.w[best] = 1.0;
  } else {
    double z = 0.0;
    for (int m = 0; m < kModes; ++m) {
      ws.w[m] = std::exp(-(ws.cost[m] - ws.cost[best]) / prm.temperature);
      z += ws.w[m];
    }
    for (int m = 0; m < kModes; ++m) ws.w[m] /= z;
  }
  // sum_m w_m P_m, eight values at a time in registers; the modes in line layout
  // (2..17) summed apart and transposed once. Modes of weight 0 add exact zeros (all
  // of them but one at T = 0) and are skipped.
  for (int s = 0; s < nn; s += 8) {
    Vec4 p0 = {}, p1 = {}, l0 = {}, l1 = {};
    for (int m = 0; m < kModes; ++m) {
      const double wm = ws.w[m];
      if (wm == 0.0) continue;
      const double* pm = ws.preds + m * nn + s;
      if (line_layout(m)) {
        l0 += wm * load4(pm);
        l1 += wm * load4(pm + 4);
      } else {
        p0 += wm * load4(pm);
        p1 += wm * load4(pm + 4);
      }
    }
    store4(ws.pred + s, p0);
    store4(ws.pred + s + 4, p1);
    store4(ws.pred_line + s, l0);
    store4(ws.pred_line + s + 4, l1);
  }
  transpose<N>(ws.pred_line, ws.s1);
  for (int s = 0; s < nn; s += 4) store4(ws.pred + s, load4(ws.pred + s) + load4(ws.s1 + s));
  // the residual's coefficients (transposed), rounded, and the reconstruction
  for (int s = 0; s < nn; s += 4) store4(ws.e + s, load4(ws.x + s) - load4(ws.pred + s));
  forward_t<N>(tr, ws.e, ws.ct, ws.s1, ws.s2);
  for (int s = 0; s < nn; s += 4) store4(ws.y + s, load4(ws.ct + s) / q);
  fourier_round<nn>(ws.y, prm.terms, ws.yh, ws.dfr);
  for (int s = 0; s < nn; s += 4) store4(ws.e + s, load4(ws.yh + s) * q);
  inverse_t<N>(tr, ws.e, ws.ct, ws.s1, ws.s2);
  for (int s = 0; s < nn; s += 4) store4(ws.v + s, load4(ws.pred + s) + load4(ws.ct + s));
}

// Chain rule through block_forward (ws filled by it): gout = gradient of the block's
// clipped reconstruction, gy = of its yhat, signs = the forward's. Writes ws.gx (input)
// and, with refs, ws.gr (reference samples); returns the gradient of qstep.
template <int N>
double block_backward(const Tables& t, const Modes& md, const Transform& tr,
                      const Params& prm, double q, const double* gout, const double* gy,
                      const uint8_t* signs, bool refs, Workspace<N>& ws) {
  constexpr int nn = N * N, nb = nn / 8;
  for (int s = 0; s < nn; ++s) ws.gv[s] = (ws.v[s] >= 0.0 && ws.v[s] <= 255.0) ? gout[s] : 0.0;
  forward_t<N>(tr, ws.gv, ws.gz, ws.s1, ws.s2);  // d/dZ^T of A^T Z A
  double gq = 0.0;
  for (int s = 0; s < nn; ++s) {
    gq += ws.gz[s] * ws.yh[s];
    const double gys = (ws.gz[s] * q + gy[(s % N) * N + s / N]) * ws.dfr[s];
    ws.gc[s] = gys / q;
    gq -= gys * ws.y[s] / q;
  }
  inverse_t<N>(tr, ws.gc, ws.ge, ws.s1, ws.s2);  // d/dE of (A E A^T)^T
  for (int s = 0; s < nn; s += 4) {
    store4(ws.gx + s, load4(ws.ge + s));
    store4(ws.gpred + s, load4(ws.gv + s) - load4(ws.ge + s));
  }
  transpose<N>(ws.gpred, ws.gpredt);
  for (int m = 0; m < kModes; ++m) {
    if (negligible(ws.w[m])) continue;
    const double* pm = ws.preds + m * nn;
    const double* g = line_layout(m) ? ws.gpredt : ws.gpred;
    ws.gw[m] = dot<nn>(g, pm);
  }
  // the costs' gradients: dL/dE_m = inverse_t(gcost_m sign(C_m) / Qstep) (transposed for
  // the modes in line layout), into the input and, with refs, into P_m
  std::fill(ws.gcost, ws.gcost + kModes, 0.0);
  if (prm.temperature != 0.0) {
    double mean = 0.0;
    for (int m = 0; m < kModes; ++m)
      if (!negligible(ws.w[m])) mean += ws.w[m] * ws.gw[m];
    for (int m = 0; m < kModes; ++m) {
      if (negligible(ws.w[m])) continue;
      const double gcost = -ws.w[m] * (ws.gw[m] - mean) / prm.temperature;
      gq -= gcost * ws.cost[m] / q;
      ws.gcost[m] = gcost / q;
    }
  }
  std::fill(ws.sum_plain, ws.sum_plain + nn, 0.0);
  std::fill(ws.sum_line, ws.sum_line + nn, 0.0);
  if (!refs) {  // the input only: one inverse per layout of the summed signs
    for (int m = 0; m < kModes; ++m) {
      if (ws.gcost[m] == 0.0) continue;
      const uint8_t* sm = signs + m * 2 * nb;
      add_signs<nn>(sm, sm + nb, ws.gcost[m], line_layout(m) ? ws.sum_line : ws.sum_plain);
    }
    inverse_t<N>(tr, ws.sum_plain, ws.e, ws.s1, ws.s2);
    for (int s = 0; s < nn; ++s) ws.gx[s] += ws.e[s];
    inverse_t<N>(tr, ws.sum_line, ws.e, ws.s1, ws.s2);
    transpose<N>(ws.e, ws.s1);
    for (int s = 0; s < nn; ++s) ws.gx[s] += ws.s1[s];
    return gq;
  }
  // and the reference samples: P_m's gradient is w_m dL/dP - dL/dE_m
  std::fill(ws.gr, ws.gr + t.refs(), 0.0);
  std::fill(ws.gext[0], ws.gext[0] + Workspace<N>::ne, 0.0);
  std::fill(ws.gext[1], ws.gext[1] + Workspace<N>::ne, 0.0);
  for (int m = 0; m < kModes; ++m) {
    if (negligible(ws.w[m])) continue;
    const double* g = line_layout(m) ? ws.gpredt : ws.gpred;
    const double wm = ws.w[m];
    if (ws.gcost[m] != 0.0) {
      const uint8_t* sm = signs + m * 2 * nb;
      set_signs<nn>(sm, sm + nb, ws.gcost[m], ws.e);
      inverse_t<N>(tr, ws.e, ws.ct, ws.s1, ws.s2);
      double* acc = line_layout(m) ? ws.sum_line : ws.gx;
      for (int s = 0; s < nn; s += 4) {
        const Vec4 c = load4(ws.ct + s);
        store4(acc + s, load4(acc + s) + c);
        store4(ws.gp + s, wm * load4(g + s) - c);
      }
    } else {
      for (int s = 0; s < nn; s += 4) store4(ws.gp + s, wm * load4(g + s));
    }
    predict_adjoint<N>(t, md, m, ws.gp, ws);
  }
  transpose<N>(ws.sum_line, ws.s1);
  for (int s = 0; s < nn; ++s) ws.gx[s] += ws.s1[s];
  flush_main<N>(ws);
  return gq;
}

// ---- planes, in wavefront order ----------------------------------------------------------

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
void forward_planes(const Tables& t, const Modes& md, const Transform& tr, const Params& prm,
                    int64_t planes, const double* x, const double* qstep, double* recon,
                    double* yhat, double* cost, uint8_t* signs) {
  constexpr int nn = N * N;
  const int64_t hw = t.blocks() * nn;
  auto code_block = [&](int64_t p, int64_t b, Workspace<N>& ws) {
    double* rec = recon + p * hw;
    const int64_t pb = p * t.blocks() + b;
    block_forward<N>(t, md, tr, prm, x + p * hw, rec, b, qstep[p], nullptr,
                     signs + pb * sign_bytes(N), ws);
    std::copy(ws.cost, ws.cost + kModes, cost + pb * kModes);
    double* yb = yhat + pb * nn;
    transpose<N>(ws.yh, yb);
    for_block_pixels(t, b, [&](int s, int64_t pix) {
      rec[pix] = std::min(255.0, std::max(0.0, ws.v[s]));
    });
  };
  const bool parallel = planes * t.blocks() >= kMinParallelBlocks;
  if (by_plane(planes)) {
#pragma omp parallel if (parallel)
    {
      auto ws = std::make_unique<Workspace<N>>();
#pragma omp for schedule(dynamic)
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t i = 0; i < t.blocks(); ++i) code_block(p, t.fronts[i], *ws);
    }
    return;
  }
#pragma omp parallel if (parallel)
  {
    auto ws = std::make_unique<Workspace<N>>();
    for (int64_t f = 0; f < t.n_fronts; ++f) {
      const int64_t start = t.front_starts[f], count = t.front_starts[f + 1] - start;
#pragma omp for schedule(dynamic)
      for (int64_t it = 0; it < planes * count; ++it)
        code_block(it / count, t.fronts[start + it % count], *ws);
    }
  }
}

template <int N>
void backward_planes(const Tables& t, const Modes& md, const Transform& tr, const Params& prm,
                     int64_t planes, const double* x, const double* qstep, const double* recon,
                     const double* cost, const uint8_t* signs, const double* g_recon,
                     const double* g_yhat, double* g_x, double* g_qstep) {
  constexpr int nn = N * N;
  const int64_t hw = t.blocks() * nn, nr = t.refs();
  const bool refs = prm.ref_grad != 0.0;
  int64_t widest = 0;
  for (int64_t f = 0; f < t.n_fronts; ++f)
    widest = std::max(widest, t.front_starts[f + 1] - t.front_starts[f]);
  std::vector<double> gacc(g_recon, g_recon + planes * hw);  // d loss / d recon, gathered
  std::vector<double> gr_front(refs ? planes * widest * nr : 0);
  std::vector<double> gq_block(planes * t.blocks(), 0.0);
  // block i of wavefront f of plane p
  auto chain_block = [&](int64_t p, int64_t f, int64_t i, Workspace<N>& ws, double* gout) {
    const int64_t b = t.fronts[t.front_starts[f] + i], pb = p * t.blocks() + b;
    block_forward<N>(t, md, tr, prm, x + p * hw, recon + p * hw, b, qstep[p],
                     cost + pb * kModes, nullptr, ws);
    const double* ga = gacc.data() + p * hw;
    for_block_pixels(t, b, [&](int s, int64_t pix) { gout[s] = ga[pix]; });
    gq_block[pb] = block_backward<N>(t, md, tr, prm, qstep[p], gout, g_yhat + pb * nn,
                                     signs + pb * sign_bytes(N), refs, ws);
    double* gxp = g_x + p * hw;
    for_block_pixels(t, b, [&](int s, int64_t pix) { gxp[pix] = ws.gx[s]; });
    if (refs) std::copy(ws.gr, ws.gr + nr, gr_front.begin() + (p * widest + i) * nr);
  };
  // the reference gradients of wavefront f into plane p's earlier wavefronts
  auto scatter_refs = [&](int64_t p, int64_t f) {
    if (!refs) return;
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
      auto ws = std::make_unique<Workspace<N>>();
      std::vector<double> gout(nn);
#pragma omp for schedule(dynamic)
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t f = t.n_fronts - 1; f >= 0; --f) {
          const int64_t count = t.front_starts[f + 1] - t.front_starts[f];
          for (int64_t i = 0; i < count; ++i) chain_block(p, f, i, *ws, gout.data());
          scatter_refs(p, f);
        }
    }
  } else {
#pragma omp parallel if (parallel)
    {
      auto ws = std::make_unique<Workspace<N>>();
      std::vector<double> gout(nn);
      for (int64_t f = t.n_fronts - 1; f >= 0; --f) {
        const int64_t count = t.front_starts[f + 1] - t.front_starts[f];
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < planes * count; ++it)
          chain_block(it / count, f, it % count, *ws, gout.data());
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
template <int N>
void forward_n(const Tables& t, const Params& prm, int64_t planes, const double* x,
               const double* qstep, double* recon, double* yhat, double* cost,
               uint8_t* signs) {
  const Modes md(t);
  const Transform tr(t.transform, N);
  forward_planes<N>(t, md, tr, prm, planes, x, qstep, recon, yhat, cost, signs);
}

template <int N>
void backward_n(const Tables& t, const Params& prm, int64_t planes, const double* x,
                const double* qstep, const double* recon, const double* cost,
                const uint8_t* signs, const double* g_recon, const double* g_yhat, double* g_x,
                double* g_qstep) {
  const Modes md(t);
  const Transform tr(t.transform, N);
  backward_planes<N>(t, md, tr, prm, planes, x, qstep, recon, cost, signs, g_recon, g_yhat,
                     g_x, g_qstep);
}

void forward_all(const Tables& t, const Params& prm, int64_t planes, const double* x,
                 const double* qstep, double* recon, double* yhat, double* cost,
                 uint8_t* signs) {
  with_block_size(t.n, [&](auto n) {
    forward_n<decltype(n)::value>(t, prm, planes, x, qstep, recon, yhat, cost, signs);
  });
}

void backward_all(const Tables& t, const Params& prm, int64_t planes, const double* x,
                  const double* qstep, const double* recon, const double* cost,
                  const uint8_t* signs, const double* g_recon, const double* g_yhat,
                  double* g_x, double* g_qstep) {
  with_block_size(t.n, [&](auto n) {
    backward_n<decltype(n)::value>(t, prm, planes, x, qstep, recon, cost, signs, g_recon,
                                   g_yhat, g_x, g_qstep);
  });
}
