// Python bindings of the diff-BPG ops (gencodec._native.dbpg_*). Plain buffers in
// and out (float64, int32/int64 tables); the GIL is released around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "dbpg/intra.hpp"
#ifdef GENCODEC_WITH_CUDA
#include "dbpg/intra_cuda.hpp"
#endif

namespace py = pybind11;

namespace gencodec {
namespace dbpg {
namespace {

constexpr auto kFlags = py::array::c_style | py::array::forcecast;
using F64 = py::array_t<double, kFlags>;
using I32 = py::array_t<int32_t, kFlags>;
using I64 = py::array_t<int64_t, kFlags>;
using U8 = py::array_t<uint8_t, kFlags>;

void expect_shape(const py::array& a, std::initializer_list<py::ssize_t> shape,
                  const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  int d = 0;
  for (py::ssize_t s : shape) ok = ok && a.shape(d++) == s;
  if (!ok) {
    std::string want, got;
    for (py::ssize_t s : shape) want += std::to_string(s) + " ";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) got += std::to_string(a.shape(i)) + " ";
    throw std::invalid_argument(std::string(name) + " must have shape ( " + want +
                                "), got ( " + got + ")");
  }
}

template <typename T>
void expect_range(const T* v, py::ssize_t count, int64_t lo, int64_t hi, const char* name) {
  for (py::ssize_t i = 0; i < count; ++i)
    if (v[i] < lo || v[i] > hi)
      throw std::invalid_argument(std::string(name) + " has a value outside " +
                                  std::to_string(lo) + ".." + std::to_string(hi));
}

// The tables of one call, checked against the planes' shape (P, H, W).
struct Checked {
  Tables t;
  int64_t planes;
};

Checked check(int64_t planes, int64_t h, int64_t w, const F64& qstep, const F64& transform,
              const I32& pred_index, const F64& pred_weight, const I32& dc_index,
              const I64& ref_source, const I64& fronts, const I64& front_starts) {
  if (transform.ndim() != 2) throw std::invalid_argument("transform must be n x n");
  const int n = static_cast<int>(transform.shape(0));
  if (n != 4 && n != 8 && n != 16 && n != 32)
    throw std::invalid_argument("block size must be 4, 8, 16 or 32, got " + std::to_string(n));
  expect_shape(transform, {n, n}, "transform");
  if (h % n || w % n || h == 0 || w == 0)
    throw std::invalid_argument("plane sides must be non-zero multiples of the block size " +
                                std::to_string(n));
  expect_shape(qstep, {planes}, "qstep");
  for (int64_t p = 0; p < planes; ++p)
    if (!(std::isfinite(qstep.data()[p]) && qstep.data()[p] > 0.0))
      throw std::invalid_argument("qstep must be finite and > 0");
  Tables t;
  t.n = n;
  t.rows = h / n;
  t.cols = w / n;
  const int nr = t.refs();
  expect_shape(pred_index, {kModes, n * n, 4}, "pred_index");
  expect_shape(pred_weight, {kModes, n * n, 4}, "pred_weight");
  expect_shape(dc_index, {2 * n}, "dc_index");
  expect_shape(ref_source, {t.blocks(), nr}, "ref_source");
  expect_shape(fronts, {t.blocks()}, "fronts");
  if (front_starts.ndim() != 1 || front_starts.shape(0) < 2)
    throw std::invalid_argument("front_starts must be 1-D with at least 2 values");
  expect_range(pred_index.data(), pred_index.size(), 0, nr - 1, "pred_index");
  expect_range(dc_index.data(), dc_index.size(), 0, nr - 1, "dc_index");
  expect_range(ref_source.data(), ref_source.size(), -1, h * w - 1, "ref_source");
  expect_range(fronts.data(), fronts.size(), 0, t.blocks() - 1, "fronts");
  const int64_t* fs = front_starts.data();
  const int64_t nf = front_starts.shape(0) - 1;
  if (fs[0] != 0 || fs[nf] != t.blocks())
    throw std::invalid_argument("front_starts must run from 0 to the number of blocks");
  for (int64_t f = 0; f < nf; ++f)
    if (fs[f + 1] < fs[f]) throw std::invalid_argument("front_starts must not decrease");
  t.transform = transform.data();
  t.pred_index = pred_index.data();
  t.pred_weight = pred_weight.data();
  t.dc_index = dc_index.data();
  t.ref_source = ref_source.data();
  t.fronts = fronts.data();
  t.front_starts = fs;
  t.n_fronts = nf;
  return {t, planes};
}

Checked check(const F64& x, const F64& qstep, const F64& transform, const I32& pred_index,
              const F64& pred_weight, const I32& dc_index, const I64& ref_source,
              const I64& fronts, const I64& front_starts) {
  if (x.ndim() != 3) throw std::invalid_argument("planes must be 3-D (P, H, W)");
  return check(x.shape(0), x.shape(1), x.shape(2), qstep, transform, pred_index, pred_weight,
               dc_index, ref_source, fronts, front_starts);
}

Params params(double temperature, int terms, double ref_grad) {
  if (!(std::isfinite(temperature) && temperature >= 0.0))
    throw std::invalid_argument("temperature must be finite and >= 0");
  if (terms < 0) throw std::invalid_argument("terms must be >= 0");
  if (!std::isfinite(ref_grad)) throw std::invalid_argument("ref_grad must be finite");
  Params p;
  p.temperature = temperature;
  p.terms = terms;
  p.ref_grad = ref_grad;
  return p;
}

}  // namespace

void register_bindings(py::module_& m) {
  m.def("dbpg_kernels", &kernels,
        "The CPU kernels of the diff-BPG ops: 'avx2+fma' or 'generic' (set "
        "GENCODEC_DBPG_GENERIC=1 before the first call to force the portable ones).");
  m.def(
      "dbpg_intra_forward",
      [](const F64& x, const F64& qstep, const F64& transform, const I32& pred_index,
         const F64& pred_weight, const I32& dc_index, const I64& ref_source, const I64& fronts,
         const I64& front_starts, double temperature, int terms) {
        const Checked c = check(x, qstep, transform, pred_index, pred_weight, dc_index,
                                ref_source, fronts, front_starts);
        const Params prm = params(temperature, terms, 1.0);
        const int n = c.t.n;
        py::array_t<double> recon({c.planes, x.shape(1), x.shape(2)});
        py::array_t<double> yhat({c.planes, static_cast<py::ssize_t>(c.t.blocks()),
                                  static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(n)});
        py::array_t<double> cost({c.planes, static_cast<py::ssize_t>(c.t.blocks()),
                                  static_cast<py::ssize_t>(kModes)});
        py::array_t<uint8_t> signs({c.planes, static_cast<py::ssize_t>(c.t.blocks()),
                                    static_cast<py::ssize_t>(sign_bytes(n))});
        double* r = recon.mutable_data();
        double* y = yhat.mutable_data();
        double* k = cost.mutable_data();
        uint8_t* sg = signs.mutable_data();
        {
          py::gil_scoped_release nogil;
          intra_forward(c.t, prm, c.planes, x.data(), qstep.data(), r, y, k, sg);
        }
        return py::make_tuple(recon, yhat, cost, signs);
      },
      py::arg("planes"), py::arg("qstep"), py::arg("transform"), py::arg("pred_index"),
      py::arg("pred_weight"), py::arg("dc_index"), py::arg("ref_source"), py::arg("fronts"),
      py::arg("front_starts"), py::arg("temperature"), py::arg("terms"),
      "diff-BPG closed-loop intra coding of float64 planes (P, H, W) on the 0..255 scale: "
      "returns (recon (P, H, W), yhat (P, blocks, n, n), and for the backward the mode costs "
      "(P, blocks, 35) and their coefficients' signs (P, blocks, bytes), uint8). Tables from "
      "codecs_ext/surrogates/hevc_intra.py.");
  m.def(
      "dbpg_intra_backward",
      [](const F64& x, const F64& qstep, const F64& recon, const F64& cost, const U8& signs,
         const F64& g_recon, const F64& g_yhat,
         const F64& transform, const I32& pred_index, const F64& pred_weight,
         const I32& dc_index, const I64& ref_source, const I64& fronts,
         const I64& front_starts, double temperature, int terms, double ref_grad) {
        const Checked c = check(x, qstep, transform, pred_index, pred_weight, dc_index,
                                ref_source, fronts, front_starts);
        const Params prm = params(temperature, terms, ref_grad);
        const int n = c.t.n;
        expect_shape(recon, {c.planes, x.shape(1), x.shape(2)}, "recon");
        expect_shape(cost, {c.planes, static_cast<py::ssize_t>(c.t.blocks()), kModes}, "cost");
        expect_shape(signs, {c.planes, static_cast<py::ssize_t>(c.t.blocks()), sign_bytes(n)},
                     "signs");
        expect_shape(g_recon, {c.planes, x.shape(1), x.shape(2)}, "g_recon");
        expect_shape(g_yhat, {c.planes, static_cast<py::ssize_t>(c.t.blocks()), n, n}, "g_yhat");
        py::array_t<double> g_x({c.planes, x.shape(1), x.shape(2)});
        py::array_t<double> g_q(c.planes);
        double* gx = g_x.mutable_data();
        double* gq = g_q.mutable_data();
        {
          py::gil_scoped_release nogil;
          intra_backward(c.t, prm, c.planes, x.data(), qstep.data(), recon.data(),
                         cost.data(), signs.data(), g_recon.data(), g_yhat.data(), gx, gq);
        }
        return py::make_tuple(g_x, g_q);
      },
      py::arg("planes"), py::arg("qstep"), py::arg("recon"), py::arg("cost"), py::arg("signs"),
      py::arg("g_recon"), py::arg("g_yhat"), py::arg("transform"), py::arg("pred_index"), py::arg("pred_weight"),
      py::arg("dc_index"), py::arg("ref_source"), py::arg("fronts"), py::arg("front_starts"),
      py::arg("temperature"), py::arg("terms"), py::arg("ref_grad"),
      "Backward of dbpg_intra_forward: (g_planes, g_qstep) from the gradients of recon and "
      "yhat; ref_grad scales the gradient into the reference samples (1 = exact).");
#ifdef GENCODEC_WITH_CUDA
  // The same ops on CUDA device memory (dbpg/intra_cuda.hpp): the planes and outputs are
  // addresses of float64 C-order device buffers (torch's data_ptr()) of the shapes the CPU
  // functions take and return, on the current device; qstep and the tables stay on the
  // host. The work is queued on `stream` (a cudaStream_t as an integer, 0 = default).
  m.def(
      "dbpg_intra_forward_cuda",
      [](uintptr_t planes, int64_t p, int64_t h, int64_t w, const F64& qstep, uintptr_t recon,
         uintptr_t yhat, uintptr_t cost, const F64& transform, const I32& pred_index,
         const F64& pred_weight, const I32& dc_index, const I64& ref_source, const I64& fronts,
         const I64& front_starts, double temperature, int terms, uintptr_t stream) {
        if (p < 0 || h < 0 || w < 0) throw std::invalid_argument("plane shape must be >= 0");
        const Checked c = check(p, h, w, qstep, transform, pred_index, pred_weight, dc_index,
                                ref_source, fronts, front_starts);
        const Params prm = params(temperature, terms, 1.0);
        py::gil_scoped_release nogil;
        intra_forward_cuda(c.t, prm, c.planes, reinterpret_cast<const double*>(planes),
                           qstep.data(), reinterpret_cast<double*>(recon),
                           reinterpret_cast<double*>(yhat), reinterpret_cast<double*>(cost),
                           reinterpret_cast<void*>(stream));
      },
      py::arg("planes"), py::arg("p"), py::arg("h"), py::arg("w"), py::arg("qstep"),
      py::arg("recon"), py::arg("yhat"), py::arg("cost"), py::arg("transform"),
      py::arg("pred_index"), py::arg("pred_weight"), py::arg("dc_index"), py::arg("ref_source"),
      py::arg("fronts"), py::arg("front_starts"), py::arg("temperature"), py::arg("terms"),
      py::arg("stream"),
      "dbpg_intra_forward on a CUDA device: planes (p, h, w) in, recon, yhat and cost written "
      "(device addresses).");
  m.def(
      "dbpg_intra_backward_cuda",
      [](uintptr_t planes, int64_t p, int64_t h, int64_t w, const F64& qstep, uintptr_t recon,
         uintptr_t cost, uintptr_t g_recon, uintptr_t g_yhat, uintptr_t g_planes,
         uintptr_t g_qstep, const F64& transform, const I32& pred_index,
         const F64& pred_weight, const I32& dc_index, const I64& ref_source, const I64& fronts,
         const I64& front_starts, double temperature, int terms, double ref_grad,
         uintptr_t stream) {
        if (p < 0 || h < 0 || w < 0) throw std::invalid_argument("plane shape must be >= 0");
        const Checked c = check(p, h, w, qstep, transform, pred_index, pred_weight, dc_index,
                                ref_source, fronts, front_starts);
        const Params prm = params(temperature, terms, ref_grad);
        py::gil_scoped_release nogil;
        intra_backward_cuda(c.t, prm, c.planes, reinterpret_cast<const double*>(planes),
                            qstep.data(), reinterpret_cast<const double*>(recon),
                            reinterpret_cast<const double*>(cost),
                            reinterpret_cast<double*>(g_recon),
                            reinterpret_cast<const double*>(g_yhat),
                            reinterpret_cast<double*>(g_planes),
                            reinterpret_cast<double*>(g_qstep), reinterpret_cast<void*>(stream));
      },
      py::arg("planes"), py::arg("p"), py::arg("h"), py::arg("w"), py::arg("qstep"),
      py::arg("recon"), py::arg("cost"), py::arg("g_recon"), py::arg("g_yhat"),
      py::arg("g_planes"), py::arg("g_qstep"), py::arg("transform"), py::arg("pred_index"),
      py::arg("pred_weight"), py::arg("dc_index"), py::arg("ref_source"), py::arg("fronts"),
      py::arg("front_starts"), py::arg("temperature"), py::arg("terms"), py::arg("ref_grad"),
      py::arg("stream"),
      "dbpg_intra_backward on a CUDA device (device addresses): g_planes and g_qstep written; "
      "g_recon is the gradient accumulator and is overwritten.");
#endif
}

}  // namespace dbpg
}  // namespace gencodec
