// The Python extension gencodec._native. Each subsystem registers its own
// functions here; all of them take plain buffers and release the GIL.
#include <pybind11/pybind11.h>

#include "build_info.hpp"

namespace gencodec {
namespace rcc {
void register_bindings(pybind11::module_& m);  // rcc/rcc_bindings.cpp
}  // namespace rcc
namespace dbpg {
void register_bindings(pybind11::module_& m);  // dbpg/dbpg_bindings.cpp
}  // namespace dbpg
}  // namespace gencodec

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
  m.doc() = "gencodec native core (C++17/OpenMP, CUDA when compiled in)";
  m.def(
      "build_info",
      []() {
        gencodec::BuildInfo b = gencodec::build_info();
        py::dict d;
        d["compiler"] = b.compiler;
        d["openmp_threads"] = b.openmp_threads;
        d["cuda_compiled"] = b.cuda_compiled;
        d["cuda_devices"] = b.cuda_devices;
        d["cuda_error"] = b.cuda_error;
        return d;
      },
      "Compiler, OpenMP threads, whether CUDA was compiled in and how many devices it sees.");
  gencodec::rcc::register_bindings(m);
  gencodec::dbpg::register_bindings(m);
}
