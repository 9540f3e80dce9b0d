// Build and runtime facts about the native module (compiler, OpenMP, CUDA).
#pragma once
#include <string>

namespace gencodec {

struct BuildInfo {
  std::string compiler;
  int openmp_threads;     // omp_get_max_threads() at call time
  bool cuda_compiled;     // built with GENCODEC_WITH_CUDA
  int cuda_devices;       // devices the CUDA runtime sees (0 without a driver)
  std::string cuda_error; // why no device was seen, if any
};

BuildInfo build_info();

#ifdef GENCODEC_WITH_CUDA
// Defined in cuda/device_info.cu; returns the device count, or -1 and fills err.
int cuda_device_count(std::string& err);
#endif

}  // namespace gencodec
