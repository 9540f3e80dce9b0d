// Python bindings of the reverse-channel coder (gencodec._native.rcc_*). Plain
// buffers in and out; the GIL is released around all heavy work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "build_info.hpp"
#include "rcc/pfr.hpp"

namespace py = pybind11;

namespace gencodec {
namespace rcc {
namespace {

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

const double* vec(const F64& a, const char* name, int64_t d) {
  if (a.ndim() != 1 || a.shape(0) != d) {
    throw std::invalid_argument(std::string(name) + " must be 1-D of length " + std::to_string(d) +
                                ", got " + std::to_string(a.size()) + " values in " +
                                std::to_string(a.ndim()) + " dims");
  }
  return a.data();
}

void check_finite(const double* x, int64_t d, const char* name, bool positive) {
  for (int64_t i = 0; i < d; ++i) {
    if (!std::isfinite(x[i]) || (positive && !(x[i] > 0.0))) {
      throw std::invalid_argument(std::string(name) + "[" + std::to_string(i) +
                                  "] = " + std::to_string(x[i]) +
                                  (positive ? " (must be finite and > 0)" : " (must be finite)"));
    }
  }
}

bool use_cuda(const std::string& device) {
  if (device == "cpu") return false;
  if (device != "cuda")
    throw std::invalid_argument("device must be 'cpu' or 'cuda', got '" + device + "'");
#ifdef GENCODEC_WITH_CUDA
  std::string err;
  if (cuda_device_count(err) <= 0)
    throw std::runtime_error("device='cuda' but no CUDA device: " +
                             (err.empty() ? std::string("0 devices") : err));
  return true;
#else
  throw std::runtime_error("device='cuda' but gencodec._native was built without CUDA");
#endif
}

py::array_t<float> normals(Key key, uint64_t start, int64_t count, bool cuda) {
  if (count < 0) throw std::invalid_argument("count must be >= 0, got " + std::to_string(count));
  if (count > 0 && static_cast<uint64_t>(count) - 1 > UINT64_MAX - start) {
    throw std::invalid_argument("normal counters start + count - 1 pass 2^64 - 1 (start " +
                                std::to_string(start) + ", count " + std::to_string(count) + ")");
  }
  py::array_t<float> out(count);
  float* p = out.mutable_data();
  {
    py::gil_scoped_release nogil;
#ifdef GENCODEC_WITH_CUDA
    if (cuda) {
      normals_cuda(key, start, count, p);
    } else {
      normals_cpu(key, start, count, p);
    }
#else
    (void)cuda;
    normals_cpu(key, start, count, p);
#endif
  }
  return out;
}

py::array_t<float> sample_of(const double* mu_p, const double* s_p, int64_t d, Key key,
                             uint64_t index, bool cuda) {
  py::array_t<float> n = normals(key, candidate_start(index), d, cuda);
  py::array_t<float> out(d);
  candidate_sample(mu_p, s_p, d, n.data(), out.mutable_data());
  return out;
}

// A step's array: 1-D, C-contiguous float32 or float64 of length n (n < 0: any).
Values step_values(const py::array& a, const char* name, int64_t n) {
  // dtype equality, not identity: unpickled arrays carry their own dtype objects.
  const bool f32 = a.dtype().equal(py::dtype::of<float>());
  if (!(f32 || a.dtype().equal(py::dtype::of<double>())) || a.ndim() != 1 ||
      !(a.flags() & py::array::c_style) || (n >= 0 && a.shape(0) != n)) {
    throw std::invalid_argument(std::string(name) + " must be a 1-D contiguous float32 or " +
                                "float64 array" + (n >= 0 ? " of length " + std::to_string(n) : ""));
  }
  return Values{a.data(), f32};
}

StepGaussians step_gaussians(const py::array& mu_q, const py::array& s_q, const py::array& mu_p,
                             const py::array& s_p) {
  StepGaussians g;
  g.mu_q = step_values(mu_q, "mu_q", -1);
  g.n = mu_q.shape(0);
  if (g.n < 1) throw std::invalid_argument("mu_q must have at least 1 value");
  g.s_q = step_values(s_q, "sigma_q", g.n);
  g.mu_p = step_values(mu_p, "mu_p", g.n);
  g.s_p = step_values(s_p, "sigma_p", g.n);
  return g;
}

void throw_if(const std::string& problem) {
  if (!problem.empty()) throw std::invalid_argument(problem);
}

}  // namespace

void register_bindings(py::module_& m) {
  m.attr("RCC_MIN_CHUNK_BITS") = kMinChunkBits;
  m.attr("RCC_MAX_CHUNK_BITS") = kMaxChunkBits;
  m.def("rcc_key", &derive_key, py::arg("seed"), py::arg("step"), py::arg("chunk"),
        "The 64-bit Philox key of (seed, step, chunk): splitmix64(splitmix64(splitmix64(seed) ^ "
        "step) ^ chunk); the Philox key words are its low and high 32 bits.");
  m.attr("RCC_FORMAT_VERSION") = kFormatVersion;
  m.attr("RCC_PHILOX_ROUNDS") = kPhiloxRounds;
  m.attr("RCC_CANDIDATE_SHIFT") = kCandidateShift;
  m.def(
      "philox4x32",
      [](std::vector<uint32_t> ctr, std::vector<uint32_t> key, int rounds) {
        if (ctr.size() != 4 || key.size() != 2) {
          throw std::invalid_argument("philox4x32 needs 4 counter words and 2 key words");
        }
        if (rounds == 7) {
          philox4x32_rounds<7>(ctr[0], ctr[1], ctr[2], ctr[3], Key{key[0], key[1]});
        } else if (rounds == 10) {
          philox4x32_rounds<10>(ctr[0], ctr[1], ctr[2], ctr[3], Key{key[0], key[1]});
        } else {
          throw std::invalid_argument("philox4x32 rounds must be 7 or 10, got " +
                                      std::to_string(rounds));
        }
        return py::make_tuple(ctr[0], ctr[1], ctr[2], ctr[3]);
      },
      py::arg("counter"), py::arg("key"), py::arg("rounds") = kPhiloxRounds,
      "One Philox4x32-R block (Random123 semantics); the format uses R = RCC_PHILOX_ROUNDS.");
  m.def(
      "rcc_normal_table",
      [] {
        py::array_t<float> out(kNormalLevels);
        std::copy_n(normal_table(), kNormalLevels, out.mutable_data());
        return out;
      },
      "The quantile table of the normals: Phi^-1((i + 1/2) / 2^14), i = 0 ... 2^14 - 1.");
  m.def(
      "rcc_normals",
      [](uint64_t seed, uint64_t step, uint64_t chunk, uint64_t start, int64_t count,
         const std::string& device) {
        return normals(split_key(derive_key(seed, step, chunk)), start, count, use_cuda(device));
      },
      py::arg("seed"), py::arg("step"), py::arg("chunk"), py::arg("start"), py::arg("count"),
      py::arg("device") = "cpu", "Standard normals at counters start ... start+count-1 (float32).");
  m.def(
      "rcc_arrival_times",
      [](uint64_t seed, uint64_t step, uint64_t chunk, int k) {
        check_chunk_bits(k);
        std::vector<uint64_t> t;
        {
          py::gil_scoped_release nogil;
          t = arrival_times(split_key(derive_key(seed, step, chunk)), uint64_t{1} << k);
        }
        py::array_t<uint64_t> out(static_cast<py::ssize_t>(t.size()));
        std::copy(t.begin(), t.end(), out.mutable_data());
        return out;
      },
      py::arg("seed"), py::arg("step"), py::arg("chunk"), py::arg("chunk_bits"),
      "Poisson arrival times of a chunk's 2^k candidates, fixed point (units of 2^-32).");
  m.def(
      "rcc_encode_chunk",
      [](const F64& mu_q, const F64& s_q, const F64& mu_p, const F64& s_p, uint64_t seed,
         uint64_t step, uint64_t chunk, int k, const std::string& device) {
        const int64_t d = mu_q.ndim() == 1 ? mu_q.shape(0) : -1;
        if (d <= 0) throw std::invalid_argument("mu_q must be 1-D with at least 1 value");
        const double *a = vec(mu_q, "mu_q", d), *b = vec(s_q, "sigma_q", d);
        const double *c = vec(mu_p, "mu_p", d), *e = vec(s_p, "sigma_p", d);
        check_finite(a, d, "mu_q", false);
        check_finite(b, d, "sigma_q", true);
        check_finite(c, d, "mu_p", false);
        check_finite(e, d, "sigma_p", true);
        check_chunk_bits(k);
        const bool cuda = use_cuda(device);
        const Key key = split_key(derive_key(seed, step, chunk));
        uint64_t index;
        {
          py::gil_scoped_release nogil;
          const ChunkCoeffs cf = make_coeffs(a, b, c, e, d);
#ifdef GENCODEC_WITH_CUDA
          index = cuda ? pfr_encode_cuda(cf, key, k) : pfr_encode_cpu(cf, key, k);
#else
          index = pfr_encode_cpu(cf, key, k);
#endif
        }
        return py::make_tuple(index, sample_of(c, e, d, key, index, cuda));
      },
      py::arg("mu_q"), py::arg("sigma_q"), py::arg("mu_p"), py::arg("sigma_p"), py::arg("seed"),
      py::arg("step"), py::arg("chunk"), py::arg("chunk_bits"), py::arg("device") = "cpu",
      "PFR-encode one chunk (float64 1-D arrays): returns (index, float32 sample).");
  m.def(
      "rcc_decode_chunk",
      [](const F64& mu_p, const F64& s_p, uint64_t index, uint64_t seed, uint64_t step,
         uint64_t chunk, int k, const std::string& device) {
        const int64_t d = mu_p.ndim() == 1 ? mu_p.shape(0) : -1;
        if (d <= 0) throw std::invalid_argument("mu_p must be 1-D with at least 1 value");
        const double *c = vec(mu_p, "mu_p", d), *e = vec(s_p, "sigma_p", d);
        check_finite(c, d, "mu_p", false);
        check_finite(e, d, "sigma_p", true);
        check_chunk_bits(k);
        if (index >> k) {
          throw std::invalid_argument("index " + std::to_string(index) + " does not fit in " +
                                      std::to_string(k) + " bits");
        }
        return sample_of(c, e, d, split_key(derive_key(seed, step, chunk)), index,
                         use_cuda(device));
      },
      py::arg("mu_p"), py::arg("sigma_p"), py::arg("index"), py::arg("seed"), py::arg("step"),
      py::arg("chunk"), py::arg("chunk_bits"), py::arg("device") = "cpu",
      "PFR-decode one chunk: the float32 sample of candidate `index`.");
  m.def(
      "rcc_permutation",
      [](int64_t n, uint64_t seed, uint64_t step) {
        std::vector<int64_t> p;
        {
          py::gil_scoped_release nogil;
          p = permutation(n, seed, step);
        }
        py::array_t<int64_t> out(static_cast<py::ssize_t>(p.size()));
        std::copy(p.begin(), p.end(), out.mutable_data());
        return out;
      },
      py::arg("n"), py::arg("seed"), py::arg("step"),
      "Fisher-Yates permutation of range(n) keyed by (seed, step) (domain 2).");
  m.def(
      "rcc_kl_bits",
      [](const py::array& mu_q, const py::array& s_q, const py::array& mu_p, const py::array& s_p,
         bool scoring, int threads) {
        const StepGaussians g = step_gaussians(mu_q, s_q, mu_p, s_p);
        py::gil_scoped_release nogil;
        std::string problem;
        const double kl = kl_bits(g, scoring, threads, problem);
        throw_if(problem);
        return kl;
      },
      py::arg("mu_q"), py::arg("sigma_q"), py::arg("mu_p"), py::arg("sigma_p"),
      py::arg("scoring") = false, py::arg("threads") = 0,
      "KL(q || p) in bits of diagonal Gaussians (1-D float32/float64 arrays of one length), "
      "summed in a fixed order. ValueError names the first bad value (with scoring: also "
      "q too far from p to score candidates in float32, as rcc_encode_step checks).");
  m.def(
      "rcc_encode_step",
      [](const py::array& mu_q, const py::array& s_q, const py::array& mu_p, const py::array& s_p,
         uint64_t seed, uint64_t step, int k, int64_t n_chunks, const std::string& device,
         int threads) {
        const StepGaussians g = step_gaussians(mu_q, s_q, mu_p, s_p);
        check_chunk_bits(k);
        const bool cuda = use_cuda(device);
        py::array_t<uint32_t> indices(n_chunks > 0 ? n_chunks : 0);
        py::array_t<float> sample(g.n);
        uint32_t* idx = indices.mutable_data();
        float* z = sample.mutable_data();
        {
          py::gil_scoped_release nogil;
          throw_if(check_step(g, true, threads));
#ifdef GENCODEC_WITH_CUDA
          if (cuda) {
            const StepChunks chunks(g.n, n_chunks, seed, step);
            pfr_encode_step_cuda(step_coeffs(g, chunks, threads), g.n, n_chunks, seed, step, k,
                                 idx);
            step_samples(chunks, g.mu_p, g.s_p, seed, step, idx, threads, z);
          } else {
            encode_step_cpu(g, seed, step, k, n_chunks, threads, idx, z);
          }
#else
          (void)cuda;
          encode_step_cpu(g, seed, step, k, n_chunks, threads, idx, z);
#endif
        }
        return py::make_tuple(indices, sample);
      },
      py::arg("mu_q"), py::arg("sigma_q"), py::arg("mu_p"), py::arg("sigma_p"), py::arg("seed"),
      py::arg("step"), py::arg("chunk_bits"), py::arg("n_chunks"), py::arg("device") = "cpu",
      py::arg("threads") = 0,
      "PFR-encode every chunk of a step (1-D float32/float64 arrays): the permutation of "
      "(seed, step) cut into n_chunks parts; returns (uint32 indices, float32 sample).");
  m.def(
      "rcc_decode_step",
      [](const py::array& mu_p, const py::array& s_p, const py::array& indices, uint64_t seed,
         uint64_t step, int k, const std::string& device, int threads) {
        const Values mp = step_values(mu_p, "mu_p", -1);
        const int64_t n = mu_p.shape(0);
        if (n < 1) throw std::invalid_argument("mu_p must have at least 1 value");
        const Values sp = step_values(s_p, "sigma_p", n);
        check_chunk_bits(k);
        if (!indices.dtype().equal(py::dtype::of<uint32_t>()) || indices.ndim() != 1 ||
            !(indices.flags() & py::array::c_style)) {
          throw std::invalid_argument("indices must be a 1-D contiguous uint32 array");
        }
        const int64_t n_chunks = indices.shape(0);
        const uint32_t* idx = static_cast<const uint32_t*>(indices.data());
        for (int64_t c = 0; c < n_chunks; ++c) {
          if (static_cast<uint64_t>(idx[c]) >> k) {
            throw std::invalid_argument("index " + std::to_string(idx[c]) + " of chunk " +
                                        std::to_string(c) + " does not fit in " +
                                        std::to_string(k) + " bits");
          }
        }
        use_cuda(device);  // the decoder's work (one normal per dimension) stays on the CPU
        py::array_t<float> sample(n);
        float* z = sample.mutable_data();
        {
          py::gil_scoped_release nogil;
          throw_if(check_prior(mp, sp, n, threads));
          const StepChunks chunks(n, n_chunks, seed, step);
          step_samples(chunks, mp, sp, seed, step, idx, threads, z);
        }
        return sample;
      },
      py::arg("mu_p"), py::arg("sigma_p"), py::arg("indices"), py::arg("seed"), py::arg("step"),
      py::arg("chunk_bits"), py::arg("device") = "cpu", py::arg("threads") = 0,
      "PFR-decode every chunk of a step: the float32 sample of the candidates `indices`.");
  m.def("rcc_cpu_kernel", &cpu_kernel_name,
        "The CPU scoring kernel in use: avx512, avx2 or generic (GENCODEC_RCC_KERNEL forces one).");
}

}  // namespace rcc
}  // namespace gencodec
