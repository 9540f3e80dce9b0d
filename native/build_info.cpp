#include "build_info.hpp"

#include <omp.h>

namespace gencodec {

BuildInfo build_info() {
  BuildInfo info;
  info.compiler = GENCODEC_CXX_COMPILER;
  info.openmp_threads = omp_get_max_threads();
#ifdef GENCODEC_WITH_CUDA
  info.cuda_compiled = true;
  int n = cuda_device_count(info.cuda_error);
  info.cuda_devices = n < 0 ? 0 : n;
#else
  info.cuda_compiled = false;
  info.cuda_devices = 0;
  info.cuda_error = "built without CUDA";
#endif
  return info;
}

}  // namespace gencodec
