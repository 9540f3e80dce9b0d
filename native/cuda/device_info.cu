// CUDA device discovery for build_info(); safe on machines with no driver.
#include <cuda_runtime.h>

#include "build_info.hpp"

namespace gencodec {

int cuda_device_count(std::string& err) {
  int n = 0;
  cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess) {
    err = cudaGetErrorString(rc);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return -1;
  }
  return n;
}

}  // namespace gencodec
