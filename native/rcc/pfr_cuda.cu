// PFR encoder on a CUDA GPU: candidates are generated and scored in registers (one
// thread per candidate, never materialising the K x d samples), the arrival times
// are an exact integer prefix sum (CUB), and a two-level (score, index) reduction
// gives the argmin. Same arithmetic as the CPU kernel (philox.hpp, --fmad=false, the
// host's quantile table copied to the device once, terms summed four at a time in
// float, then in double, in dimension order), so the same inputs give the same index.
// A whole step is one scoring launch over chunks x candidates (pfr_encode_step_cuda),
// its coefficients copied to the device once.
#include <cuda_runtime.h>
#include <math_constants.h>

#include <algorithm>
#include <cub/device/device_scan.cuh>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

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
  DeviceBuffer done;  // per-chunk count of finished score blocks (whole steps)
  DeviceBuffer table;  // normal_table(), copied on first use
  bool table_ready = false;
};

Workspace& workspace() {
  static Workspace* ws = new Workspace();  // never freed: outlives the CUDA runtime teardown
  return *ws;
}

// A and B (ChunkCoeffs or StepCoeffs, n floats each) on the device, B at A + n (the
// caller holds ws.mutex).
float* device_coeffs(Workspace& ws, const std::vector<float>& quad, const std::vector<float>& lin) {
  const size_t bytes = quad.size() * sizeof(float);
  float* coeffs = static_cast<float*>(ws.coeffs.get(2 * bytes));
  check(cudaMemcpy(coeffs, quad.data(), bytes, cudaMemcpyHostToDevice), "copy A");
  check(cudaMemcpy(coeffs + quad.size(), lin.data(), bytes, cudaMemcpyHostToDevice), "copy B");
  return coeffs;
}

// The quantile table on the device (the caller holds ws.mutex).
const float* device_table(Workspace& ws) {
  const size_t bytes = kNormalLevels * sizeof(float);
  float* dev = static_cast<float*>(ws.table.get(bytes));
  if (!ws.table_ready) {
    check(cudaMemcpy(dev, normal_table(), bytes, cudaMemcpyHostToDevice), "copy normal table");
    ws.table_ready = true;
  }
  return dev;
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

// The log-weight sum of candidate j of a chunk of d dimensions (coefficients A, B
// padded to a multiple of 8): the CPU kernel's operations in the CPU kernel's order.
__device__ double candidate_log_weight(const float* __restrict__ quad,
                                       const float* __restrict__ lin, int64_t d, Key key,
                                       uint64_t j, const float* __restrict__ table) {
  const uint64_t row = candidate_start(j) / kNormalsPerBlock;
  const int64_t blocks = padded_dims(d) / kCoeffPad;
  double acc = 0.0;
  for (int64_t t = 0; t < blocks; ++t) {
    float n[8];
    normal_block(row + static_cast<uint64_t>(t), key, table, n);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float4 a4 = __ldg(reinterpret_cast<const float4*>(quad) + 2 * t + h);
      const float4 b4 = __ldg(reinterpret_cast<const float4*>(lin) + 2 * t + h);
      const float A[4] = {a4.x, a4.y, a4.z, a4.w}, B[4] = {b4.x, b4.y, b4.z, b4.w};
      acc += static_cast<double>(term4(n[4 * h], n[4 * h + 1], n[4 * h + 2], n[4 * h + 3], A, B));
    }
  }
  return acc;
}

__global__ void __launch_bounds__(kThreads)
    score_kernel(const float* __restrict__ quad, const float* __restrict__ lin, int64_t d, Key key,
                 const uint64_t* __restrict__ arrival, uint64_t K,
                 const float* __restrict__ table, double* block_score, uint64_t* block_index) {
  const uint64_t j = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  double score = CUDART_INF;
  uint64_t index = ~uint64_t{0};
  if (j < K) {
    score = log_arrival(arrival[j]) - 0.5 * candidate_log_weight(quad, lin, d, key, j, table);
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

__global__ void normals_kernel(Key key, uint64_t start, int64_t count,
                               const float* __restrict__ table, float* out) {
  const uint64_t q = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  const uint64_t blk = start / kNormalsPerBlock + q;
  if (blk > (start + static_cast<uint64_t>(count) - 1) / kNormalsPerBlock) return;
  float n[8];
  normal_block(blk, key, table, n);
#pragma unroll
  for (int r = 0; r < 8; ++r) {
    const uint64_t idx = kNormalsPerBlock * blk + r;
    if (idx >= start && idx - start < static_cast<uint64_t>(count)) out[idx - start] = n[r];
  }
}

// --- whole steps ------------------------------------------------------------------
// Chunks c0 ... c0 + n - 1 of a step, K candidates each: entry c * K + j of the
// batch arrays is candidate j of chunk c0 + c.
struct StepBatch {
  int64_t n_dims, n_chunks;  // the step
  int64_t c0, n;             // the chunks of this batch
  uint64_t seed, step, K;
};

__device__ __forceinline__ Key chunk_key(const StepBatch& s, int64_t c) {
  return split_key(derive_key(s.seed, s.step, static_cast<uint64_t>(s.c0 + c)));
}

// Exp(1) draws of every candidate of the batch (fixed point, not yet summed).
__global__ void step_exponentials_kernel(StepBatch s, uint64_t* out) {
  const uint64_t per_chunk = (s.K + 3) / 4;
  const uint64_t t = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  if (t >= per_chunk * static_cast<uint64_t>(s.n)) return;
  const int64_t c = static_cast<int64_t>(t / per_chunk);
  const uint64_t q = t % per_chunk;
  uint32_t w[4];
  philox_block(q, kDomainArrival, chunk_key(s, c), w[0], w[1], w[2], w[3]);
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const uint64_t j = 4 * q + r;
    if (j < s.K) out[static_cast<uint64_t>(c) * s.K + j] = exponential_fixed(w[r]);
  }
}

// One launch over chunks x candidates. Block b scores candidates of chunk b / bpc;
// the inclusive sum over the whole batch gives each chunk's arrival times as
// differences (exact modulo 2^64, and a chunk's own sum is below 2^64). The last
// block of a chunk to finish reduces the chunk's block results into its index.
__global__ void __launch_bounds__(kThreads)
    step_score_kernel(StepBatch s, const float* __restrict__ cf, int64_t n_coeffs,
                      const uint64_t* __restrict__ sums, uint64_t bpc,
                      const float* __restrict__ table, double* block_score,
                      uint64_t* block_index, unsigned int* done, uint64_t* indices) {
  const int64_t c = static_cast<int64_t>(blockIdx.x / bpc);
  const uint64_t jb = blockIdx.x % bpc;
  const uint64_t j = jb * blockDim.x + threadIdx.x;
  const int64_t chunk = s.c0 + c;
  double score = CUDART_INF;
  uint64_t index = ~uint64_t{0};
  if (j < s.K) {
    const int64_t start = StepChunks::start(s.n_dims, s.n_chunks, chunk);
    const int64_t d = StepChunks::start(s.n_dims, s.n_chunks, chunk + 1) - start;
    const int64_t o = StepChunks::coeff_offset(s.n_dims, s.n_chunks, chunk);
    const uint64_t at = static_cast<uint64_t>(c) * s.K;
    const uint64_t arrival = sums[at + j] - (at == 0 ? 0u : sums[at - 1]);
    score = log_arrival(arrival) -
            0.5 * candidate_log_weight(cf + o, cf + n_coeffs + o, d, chunk_key(s, c), j, table);
    index = j;
  }
  block_argmin(score, index);
  __shared__ bool last;
  if (threadIdx.x == 0) {
    block_score[blockIdx.x] = score;
    block_index[blockIdx.x] = index;
    __threadfence();
    last = atomicAdd(done + c, 1u) == static_cast<unsigned int>(bpc - 1);
  }
  __syncthreads();
  if (!last) return;
  const volatile double* vs = block_score + static_cast<uint64_t>(c) * bpc;
  const volatile uint64_t* vi = block_index + static_cast<uint64_t>(c) * bpc;
  score = CUDART_INF;
  index = ~uint64_t{0};
  for (uint64_t q = threadIdx.x; q < bpc; q += blockDim.x) keep_better(score, index, vs[q], vi[q]);
  block_argmin(score, index);
  if (threadIdx.x == 0) {
    indices[chunk] = index;
    done[c] = 0u;
  }
}

}  // namespace

uint64_t pfr_encode_cuda(const ChunkCoeffs& cf, Key key, int k) {
  check_chunk_bits(k);
  Workspace& ws = workspace();
  std::lock_guard<std::mutex> lock(ws.mutex);
  const uint64_t K = uint64_t{1} << k;
  const size_t padded = cf.quad.size();
  const float* coeffs = device_coeffs(ws, cf.quad, cf.lin);

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
      coeffs, coeffs + padded, cf.d, key, arrival, K, device_table(ws), bs, bi);
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
  const uint64_t blocks8 = (start + static_cast<uint64_t>(count) - 1) / kNormalsPerBlock -
                           start / kNormalsPerBlock + 1;
  normals_kernel<<<static_cast<unsigned>((blocks8 + kThreads - 1) / kThreads), kThreads>>>(
      key, start, count, device_table(ws), dev);
  check(cudaGetLastError(), "normals_kernel");
  check(cudaMemcpy(out, dev, static_cast<size_t>(count) * sizeof(float), cudaMemcpyDeviceToHost),
        "copy normals");
}

void pfr_encode_step_cuda(const StepCoeffs& cf, int64_t n_dims, int64_t n_chunks, uint64_t seed,
                          uint64_t step, int k, uint32_t* indices) {
  check_chunk_bits(k);
  Workspace& ws = workspace();
  std::lock_guard<std::mutex> lock(ws.mutex);
  const uint64_t K = uint64_t{1} << k;
  // The step's inputs go to the device once: every chunk's coefficients.
  const size_t n_coeffs = cf.quad.size();
  const float* coeffs = device_coeffs(ws, cf.quad, cf.lin);
  // Chunks in batches of at most 2^27 candidates (1 GiB of arrival times), so that
  // any step fits; a DiffC step is one batch.
  const int64_t per_batch =
      std::max<int64_t>(1, static_cast<int64_t>((uint64_t{1} << 27) / K));
  const int64_t batch = std::min(n_chunks, per_batch);
  const unsigned threads = static_cast<unsigned>(std::min<uint64_t>(kThreads, (K + 31) / 32 * 32));
  const uint64_t bpc = (K + threads - 1) / threads;
  uint64_t* exps = static_cast<uint64_t*>(ws.exps.get(batch * K * sizeof(uint64_t)));
  uint64_t* sums = static_cast<uint64_t*>(ws.arrival.get(batch * K * sizeof(uint64_t)));
  double* bs = static_cast<double*>(ws.block_score.get(batch * bpc * sizeof(double)));
  uint64_t* bi = static_cast<uint64_t*>(ws.block_index.get(batch * bpc * sizeof(uint64_t)));
  unsigned int* done = static_cast<unsigned int*>(ws.done.get(batch * sizeof(unsigned int)));
  uint64_t* out = static_cast<uint64_t*>(ws.result.get(n_chunks * sizeof(uint64_t)));
  check(cudaMemset(done, 0, batch * sizeof(unsigned int)), "clear done");
  const float* table = device_table(ws);
  for (int64_t c0 = 0; c0 < n_chunks; c0 += batch) {
    const StepBatch s{n_dims, n_chunks, c0, std::min(batch, n_chunks - c0), seed, step, K};
    const uint64_t items = static_cast<uint64_t>(s.n) * K;
    const uint64_t exp_threads = static_cast<uint64_t>(s.n) * ((K + 3) / 4);
    step_exponentials_kernel<<<static_cast<unsigned>((exp_threads + kThreads - 1) / kThreads),
                               kThreads>>>(s, exps);
    check(cudaGetLastError(), "step_exponentials_kernel");
    size_t tmp_bytes = 0;
    check(cub::DeviceScan::InclusiveSum(nullptr, tmp_bytes, exps, sums, static_cast<int>(items)),
          "scan size");
    void* tmp = ws.scan_tmp.get(tmp_bytes > 0 ? tmp_bytes : 1);
    check(cub::DeviceScan::InclusiveSum(tmp, tmp_bytes, exps, sums, static_cast<int>(items)),
          "scan");
    step_score_kernel<<<static_cast<unsigned>(static_cast<uint64_t>(s.n) * bpc), threads>>>(
        s, coeffs, static_cast<int64_t>(n_coeffs), sums, bpc, table, bs, bi, done, out);
    check(cudaGetLastError(), "step_score_kernel");
  }
  std::vector<uint64_t> host(static_cast<size_t>(n_chunks));
  check(cudaMemcpy(host.data(), out, n_chunks * sizeof(uint64_t), cudaMemcpyDeviceToHost),
        "copy indices");
  for (int64_t c = 0; c < n_chunks; ++c) {
    if (host[c] >= K) {
      throw std::runtime_error("PFR (CUDA) found no finite score in chunk " + std::to_string(c) +
                               " (non-finite coefficients?)");
    }
    indices[c] = static_cast<uint32_t>(host[c]);
  }
}

}  // namespace rcc
}  // namespace gencodec
