// PFR encoder on a CUDA GPU: candidates are generated and scored in registers (one
// thread per candidate, never materialising the K x d samples), the arrival times
// are an exact integer prefix sum (CUB), and a two-level (score, index) reduction
// gives the argmin. Same arithmetic as the CPU kernel (philox.hpp, --fmad=false,
// terms summed four at a time in float, then in double, in dimension order), so the same inputs
// give the same index.
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cub/device/device_scan.cuh>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "rcc/pfr.hpp"

namespace gencodec {
namespace rcc {
namespace {

constexpr int kThreads = 256;

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(rc));
  }
}

// A grow-only device buffer (allocation is slow; chunks are coded back to back).
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  void* get(size_t need) {
    if (need > bytes) {
      if (ptr != nullptr) check(cudaFree(ptr), "cudaFree");
      ptr = nullptr;
      bytes = 0;
      check(cudaMalloc(&ptr, need), "cudaMalloc");
      bytes = need;
    }
    return ptr;
  }
};

struct Workspace {
  std::mutex mutex;
  DeviceBuffer coeffs, exps, arrival, scan_tmp, block_score, block_index, result, normals;
};

Workspace& workspace() {
  static Workspace* ws = new Workspace();  // never freed: outlives the CUDA runtime teardown
  return *ws;
}

__global__ void exponentials_kernel(Key key, uint64_t K, uint64_t* out) {
  const uint64_t q = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  if (4 * q >= K) return;
  uint32_t w[4];
  philox_block(q, kDomainArrival, key, w[0], w[1], w[2], w[3]);
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const uint64_t j = 4 * q + r;
    if (j < K) out[j] = exponential_fixed(w[r]);
  }
}

__device__ __forceinline__ void keep_better(double& s, uint64_t& i, double s2, uint64_t i2) {
  if (better(s2, i2, s, i)) {
    s = s2;
    i = i2;
  }
}

// Block-wide argmin of (s, i) into lane 0 of warp 0.
__device__ void block_argmin(double& s, uint64_t& i) {
  __shared__ double ss[32];
  __shared__ uint64_t si[32];
  for (int o = 16; o > 0; o >>= 1) {
    keep_better(s, i, __shfl_down_sync(0xFFFFFFFFu, s, o), __shfl_down_sync(0xFFFFFFFFu, i, o));
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    ss[warp] = s;
    si[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    const int nw = (blockDim.x + 31) / 32;
    s = lane < nw ? ss[lane] : CUDART_INF;
    i = lane < nw ? si[lane] : ~uint64_t{0};
    for (int o = 16; o > 0; o >>= 1) {
      keep_better(s, i, __shfl_down_sync(0xFFFFFFFFu, s, o), __shfl_down_sync(0xFFFFFFFFu, i, o));
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    score_kernel(const float* __restrict__ c, const float* __restrict__ e,
                 const float* __restrict__ b, int64_t d, Key key,
                 const uint64_t* __restrict__ arrival, uint64_t K, double* block_score,
                 uint64_t* block_index) {
  const uint64_t j = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  double score = CUDART_INF;
  uint64_t index = ~uint64_t{0};
  if (j < K) {
    const uint64_t base = j * static_cast<uint64_t>(d);
    const uint64_t blk = base >> 2;
    const uint32_t o = static_cast<uint32_t>(base & 3u);
    const bool aligned = (d & 3) == 0;
    float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
    if (!aligned) normal_block(blk, key, p0, p1, p2, p3);
    const uint64_t shift = aligned ? 0u : 1u;
    const int64_t d4 = (d + 3) / 4;
    double acc = 0.0;
    for (int64_t t = 0; t < d4; ++t) {
      float q0, q1, q2, q3;
      normal_block(blk + static_cast<uint64_t>(t) + shift, key, q0, q1, q2, q3);
      float n0 = q0, n1 = q1, n2 = q2, n3 = q3;
      if (!aligned) {
        n0 = o == 0 ? p0 : (o == 1 ? p1 : (o == 2 ? p2 : p3));
        n1 = o == 0 ? p1 : (o == 1 ? p2 : (o == 2 ? p3 : q0));
        n2 = o == 0 ? p2 : (o == 1 ? p3 : (o == 2 ? q0 : q1));
        n3 = o == 0 ? p3 : (o == 1 ? q0 : (o == 2 ? q1 : q2));
        p0 = q0;
        p1 = q1;
        p2 = q2;
        p3 = q3;
      }
      const float4 cc = __ldg(reinterpret_cast<const float4*>(c) + t);
      const float4 ee = __ldg(reinterpret_cast<const float4*>(e) + t);
      const float4 bb = __ldg(reinterpret_cast<const float4*>(b) + t);
      acc += static_cast<double>(term4(n0, n1, n2, n3, cc.x, cc.y, cc.z, cc.w, ee.x, ee.y, ee.z,
                                       ee.w, bb.x, bb.y, bb.z, bb.w));
    }
    score = log_arrival(arrival[j]) - 0.5 * acc;
    index = j;
  }
  block_argmin(score, index);
  if (threadIdx.x == 0) {
    block_score[blockIdx.x] = score;
    block_index[blockIdx.x] = index;
  }
}

__global__ void final_argmin_kernel(const double* block_score, const uint64_t* block_index,
                                    uint64_t n, uint64_t* out) {
  double s = CUDART_INF;
  uint64_t i = ~uint64_t{0};
  for (uint64_t q = threadIdx.x; q < n; q += blockDim.x)
    keep_better(s, i, block_score[q], block_index[q]);
  block_argmin(s, i);
  if (threadIdx.x == 0) *out = i;
}

__global__ void normals_kernel(Key key, uint64_t start, int64_t count, float* out) {
  const uint64_t q = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  const uint64_t blk = (start >> 2) + q;
  if (4 * blk >= start + static_cast<uint64_t>(count)) return;
  float n[4];
  normal_block(blk, key, n[0], n[1], n[2], n[3]);
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const uint64_t idx = 4 * blk + r;
    if (idx >= start && idx - start < static_cast<uint64_t>(count)) out[idx - start] = n[r];
  }
}

}  // namespace

uint64_t pfr_encode_cuda(const ChunkCoeffs& cf, Key key, int k) {
  check_chunk_bits(k);
  Workspace& ws = workspace();
  std::lock_guard<std::mutex> lock(ws.mutex);
  const uint64_t K = uint64_t{1} << k;
  const size_t padded = cf.c.size();
  float* coeffs = static_cast<float*>(ws.coeffs.get(3 * padded * sizeof(float)));
  check(cudaMemcpy(coeffs, cf.c.data(), padded * sizeof(float), cudaMemcpyHostToDevice), "copy c");
  check(cudaMemcpy(coeffs + padded, cf.e.data(), padded * sizeof(float), cudaMemcpyHostToDevice),
        "copy e");
  check(
      cudaMemcpy(coeffs + 2 * padded, cf.b.data(), padded * sizeof(float), cudaMemcpyHostToDevice),
      "copy b");

  uint64_t* exps = static_cast<uint64_t*>(ws.exps.get(K * sizeof(uint64_t)));
  uint64_t* arrival = static_cast<uint64_t*>(ws.arrival.get(K * sizeof(uint64_t)));
  const uint64_t exp_threads = (K + 3) / 4;
  exponentials_kernel<<<static_cast<unsigned>((exp_threads + kThreads - 1) / kThreads), kThreads>>>(
      key, K, exps);
  check(cudaGetLastError(), "exponentials_kernel");
  size_t tmp_bytes = 0;
  check(cub::DeviceScan::InclusiveSum(nullptr, tmp_bytes, exps, arrival, static_cast<int>(K)),
        "scan size");
  void* tmp = ws.scan_tmp.get(tmp_bytes > 0 ? tmp_bytes : 1);
  check(cub::DeviceScan::InclusiveSum(tmp, tmp_bytes, exps, arrival, static_cast<int>(K)), "scan");

  const uint64_t blocks = (K + kThreads - 1) / kThreads;
  double* bs = static_cast<double*>(ws.block_score.get(blocks * sizeof(double)));
  uint64_t* bi = static_cast<uint64_t*>(ws.block_index.get(blocks * sizeof(uint64_t)));
  score_kernel<<<static_cast<unsigned>(blocks), kThreads>>>(
      coeffs, coeffs + padded, coeffs + 2 * padded, cf.d, key, arrival, K, bs, bi);
  check(cudaGetLastError(), "score_kernel");
  uint64_t* result = static_cast<uint64_t*>(ws.result.get(sizeof(uint64_t)));
  final_argmin_kernel<<<1, 1024>>>(bs, bi, blocks, result);
  check(cudaGetLastError(), "final_argmin_kernel");
  uint64_t index = 0;
  check(cudaMemcpy(&index, result, sizeof index, cudaMemcpyDeviceToHost), "copy index");
  if (index >= K)
    throw std::runtime_error("PFR (CUDA) found no finite score (non-finite coefficients?)");
  return index;
}

void normals_cuda(Key key, uint64_t start, int64_t count, float* out) {
  if (count <= 0) return;
  Workspace& ws = workspace();
  std::lock_guard<std::mutex> lock(ws.mutex);
  float* dev = static_cast<float*>(ws.normals.get(static_cast<size_t>(count) * sizeof(float)));
  const uint64_t blocks4 = ((start + static_cast<uint64_t>(count) - 1) >> 2) - (start >> 2) + 1;
  normals_kernel<<<static_cast<unsigned>((blocks4 + kThreads - 1) / kThreads), kThreads>>>(
      key, start, count, dev);
  check(cudaGetLastError(), "normals_kernel");
  check(cudaMemcpy(out, dev, static_cast<size_t>(count) * sizeof(float), cudaMemcpyDeviceToHost),
        "copy normals");
}

}  // namespace rcc
}  // namespace gencodec
