// diff-BPG closed-loop intra coding on a CUDA GPU, forward and backward (intra_cuda.hpp);
// the per-block work is intra_cuda_block.inc, the computation of the CPU kernels.
//
// Launch layout. The blocks of one wavefront (hevc_intra.wavefronts: t = j + 2 i) depend
// only on earlier wavefronts, so each wavefront is one launch of a grid (blocks of the
// wavefront) x (planes): one CUDA thread block of kThreads threads codes one n x n block
// of one plane, with its working set in shared memory (BlockMemory: 52 KB forward and
// 111 KB backward for n = 32, less for smaller blocks). The stream orders the launches.
// The forward is n_fronts launches. The backward runs the wavefronts in reverse: per
// wavefront one launch that recomputes each block and writes its input gradient, its
// reference-sample gradients (gr_front) and its qstep gradient, then one launch that
// adds the reference gradients into the gathered reconstruction gradient of the earlier
// wavefronts (one thread per plane sample touched, its contributions in a fixed order:
// no atomics, deterministic); a last launch sums each plane's qstep gradients over its
// blocks in raster order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dbpg/intra_cuda.hpp"

namespace gencodec {
namespace dbpg {
namespace {

#define DBPG_DEV __device__
#define DBPG_SYNC() __syncthreads()
#define DBPG_TID static_cast<int>(threadIdx.x)
#define DBPG_THREADS static_cast<int>(blockDim.x)
#include "dbpg/intra_cuda_block.inc"

constexpr int kThreads = 256;
constexpr size_t kCachedTables = 8;  // table sets kept on the devices

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA error in diff-BPG ") + what + ": " +
                             cudaGetErrorString(rc));
  }
}

// --- kernels --------------------------------------------------------------------------

template <int N>
__global__ void __launch_bounds__(kThreads)
    forward_front_kernel(DevTables t, Params prm, int64_t start, const double* x,
                         const double* qstep, double* recon, double* yhat, double* cost) {
  extern __shared__ double sm[];
  const int64_t p = blockIdx.y, b = t.fronts[start + blockIdx.x], hw = t.blocks * N * N;
  forward_block<N>(t, prm, x + p * hw, recon + p * hw, b, qstep[p],
                   yhat + (p * t.blocks + b) * N * N, cost + (p * t.blocks + b) * kModes, sm);
}

template <int N>
__global__ void __launch_bounds__(kThreads)
    backward_front_kernel(DevTables t, Params prm, int64_t start, const double* x,
                          const double* qstep, const double* recon, const double* cost,
                          const double* gacc, const double* g_yhat, double* g_x,
                          double* gr_front, double* gq_block) {
  extern __shared__ double sm[];
  const int64_t p = blockIdx.y, i = blockIdx.x, b = t.fronts[start + i];
  const int64_t hw = t.blocks * N * N, pb = p * t.blocks + b;
  backward_block<N>(t, prm, x + p * hw, recon + p * hw, cost + pb * kModes, gacc + p * hw,
                    g_yhat + pb * N * N, b, qstep[p], g_x + p * hw,
                    gr_front + (p * t.widest + i) * (4 * N + 1), gq_block + pb, sm);
}

// Wavefront f's reference gradients into the gathered gradient: thread = (plane, target).
__global__ void scatter_kernel(DevTables t, double ref_grad, int64_t f, int64_t planes,
                               const double* gr_front, double* gacc) {
  const int64_t first = t.scatter_front[f], count = t.scatter_front[f + 1] - first;
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= count * planes) return;
  const int64_t p = e / count;
  scatter_target(t, ref_grad, first + e % count, gr_front + p * t.widest * (4 * t.n + 1),
                 gacc + p * t.blocks * t.n * t.n);
}

__global__ void qstep_gradient_kernel(int64_t planes, int64_t blocks, const double* gq_block,
                                      double* g_qstep) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= planes) return;
  double s = 0.0;
  for (int64_t b = 0; b < blocks; ++b) s += gq_block[p * blocks + b];
  g_qstep[p] = s;
}

// --- the tables on the device -----------------------------------------------------------

template <typename T>
bool same(const std::vector<T>& kept, const T* p, size_t count) {
  return kept.size() == count &&
         (count == 0 || std::memcmp(kept.data(), p, count * sizeof(T)) == 0);
}

template <typename T>
std::vector<T> copy_of(const T* p, size_t count) {
  return std::vector<T>(p, p + count);
}

// Arrays packed into one host buffer (8-byte aligned) for one upload.
struct Packer {
  std::vector<unsigned char> bytes;
  template <typename T>
  size_t add(const T* p, size_t count) {
    const size_t at = (bytes.size() + 7) / 8 * 8;
    bytes.resize(at + count * sizeof(T));
    if (count > 0) std::memcpy(bytes.data() + at, p, count * sizeof(T));
    return at;
  }
};

// The device copies of one set of tables (kept while they match the caller's) and the
// inverted gathers of DevTables.
struct DeviceTables {
  int device = -1;
  std::vector<double> transform, pred_weight;
  std::vector<int32_t> pred_index, dc_index;
  std::vector<int64_t> ref_source, fronts, front_starts, scatter_front;
  void* memory = nullptr;
  DevTables view{};

  DeviceTables(const DeviceTables&) = delete;
  DeviceTables& operator=(const DeviceTables&) = delete;

  DeviceTables(int device_, const Tables& t, cudaStream_t stream) : device(device_) {
    const int n = t.n, nn = n * n, nr = t.refs();
    const int64_t blocks = t.blocks();
    transform = copy_of(t.transform, nn);
    pred_index = copy_of(t.pred_index, static_cast<size_t>(kModes) * nn * 4);
    pred_weight = copy_of(t.pred_weight, static_cast<size_t>(kModes) * nn * 4);
    dc_index = copy_of(t.dc_index, 2 * n);
    ref_source = copy_of(t.ref_source, static_cast<size_t>(blocks) * nr);
    fronts = copy_of(t.fronts, blocks);
    front_starts = copy_of(t.front_starts, t.n_fronts + 1);

    const InvertedTables inv(t);
    scatter_front = inv.scatter_front;

    Packer pk;
    const size_t o_tr = pk.add(transform.data(), transform.size());
    const size_t o_pi = pk.add(pred_index.data(), pred_index.size());
    const size_t o_pw = pk.add(pred_weight.data(), pred_weight.size());
    const size_t o_dc = pk.add(dc_index.data(), dc_index.size());
    const size_t o_rs = pk.add(ref_source.data(), ref_source.size());
    const size_t o_fr = pk.add(fronts.data(), fronts.size());
    const size_t o_gs = pk.add(inv.gather_start.data(), inv.gather_start.size());
    const size_t o_ge = pk.add(inv.gather_entry.data(), inv.gather_entry.size());
    const size_t o_sf = pk.add(inv.scatter_front.data(), inv.scatter_front.size());
    const size_t o_st = pk.add(inv.scatter_target.data(), inv.scatter_target.size());
    const size_t o_ss = pk.add(inv.scatter_start.data(), inv.scatter_start.size());
    const size_t o_se = pk.add(inv.scatter_entry.data(), inv.scatter_entry.size());
    check(cudaMalloc(&memory, pk.bytes.size()), "cudaMalloc (tables)");
    // pageable source: staged before the call returns, ordered before the kernels
    const cudaError_t rc =
        cudaMemcpyAsync(memory, pk.bytes.data(), pk.bytes.size(), cudaMemcpyHostToDevice, stream);
    if (rc != cudaSuccess) {
      cudaFree(memory);
      check(rc, "copy of the tables");
    }
    const auto at = [&](size_t offset) { return static_cast<unsigned char*>(memory) + offset; };
    view.n = n;
    view.rows = t.rows;
    view.cols = t.cols;
    view.blocks = blocks;
    view.butterfly = inv.butterfly;
    view.transform = reinterpret_cast<const double*>(at(o_tr));
    view.pred_index = reinterpret_cast<const int32_t*>(at(o_pi));
    view.pred_weight = reinterpret_cast<const double*>(at(o_pw));
    view.dc_index = reinterpret_cast<const int32_t*>(at(o_dc));
    view.ref_source = reinterpret_cast<const int64_t*>(at(o_rs));
    view.fronts = reinterpret_cast<const int64_t*>(at(o_fr));
    view.gather_start = reinterpret_cast<const int32_t*>(at(o_gs));
    view.gather_entry = reinterpret_cast<const int32_t*>(at(o_ge));
    view.scatter_front = reinterpret_cast<const int64_t*>(at(o_sf));
    view.scatter_target = reinterpret_cast<const int64_t*>(at(o_st));
    view.scatter_start = reinterpret_cast<const int64_t*>(at(o_ss));
    view.scatter_entry = reinterpret_cast<const int64_t*>(at(o_se));
    view.widest = inv.widest;
  }

  ~DeviceTables() {
    // kernels of any stream may still read the tables: wait for the device first
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && cudaSetDevice(device) == cudaSuccess) {
      cudaDeviceSynchronize();
      cudaFree(memory);
      cudaSetDevice(current);
    }
    cudaGetLastError();
  }

  bool matches(int dev, const Tables& t) const {
    const int nn = t.n * t.n;
    return dev == device && same(transform, t.transform, nn) &&
           same(pred_index, t.pred_index, static_cast<size_t>(kModes) * nn * 4) &&
           same(pred_weight, t.pred_weight, static_cast<size_t>(kModes) * nn * 4) &&
           same(dc_index, t.dc_index, 2 * t.n) &&
           same(ref_source, t.ref_source, static_cast<size_t>(t.blocks()) * t.refs()) &&
           same(fronts, t.fronts, t.blocks()) &&
           same(front_starts, t.front_starts, t.n_fronts + 1) && view.rows == t.rows &&
           view.cols == t.cols;
  }
};

// Every call holds the mutex from the table look-up to its last launch.
struct Cache {
  std::mutex mutex;
  std::list<std::unique_ptr<DeviceTables>> tables;  // most recently used first

  const DeviceTables& get(const Tables& t, cudaStream_t stream) {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    for (auto it = tables.begin(); it != tables.end(); ++it)
      if ((*it)->matches(device, t)) {
        tables.splice(tables.begin(), tables, it);
        return *tables.front();
      }
    if (tables.size() >= kCachedTables) tables.pop_back();
    tables.push_front(std::make_unique<DeviceTables>(device, t, stream));
    return *tables.front();
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never freed: outlives the CUDA runtime teardown
  return *c;
}

// Scratch in stream order (freed after the kernels that use it).
struct StreamScratch {
  double* ptr = nullptr;
  cudaStream_t stream;
  StreamScratch(size_t count, cudaStream_t s) : stream(s) {
    const size_t bytes = std::max<size_t>(count, 1) * sizeof(double);
    check(cudaMallocAsync(reinterpret_cast<void**>(&ptr), bytes, stream), "cudaMallocAsync");
  }
  ~StreamScratch() { cudaFreeAsync(ptr, stream); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
};

template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes, int n) {
  int device = 0, most = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "cudaDeviceGetAttribute");
  if (bytes > static_cast<size_t>(most))
    throw std::runtime_error("diff-BPG CUDA: blocks of " + std::to_string(n) + " need " +
                             std::to_string(bytes) + " bytes of shared memory, the device has " +
                             std::to_string(most));
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes)),
        "cudaFuncSetAttribute");
}

void check_planes(int64_t planes) {
  if (planes > 65535)
    throw std::invalid_argument("diff-BPG CUDA: at most 65535 planes per call, got " +
                                std::to_string(planes));
}

template <int N>
void forward_fronts(const Tables& t, const DevTables& d, const Params& prm, int64_t planes,
                    const double* x, const double* q, double* recon, double* yhat, double* cost,
                    cudaStream_t stream) {
  const size_t bytes = BlockMemory<N>::forward_doubles * sizeof(double);
  allow_shared_memory(forward_front_kernel<N>, bytes, N);
  for (int64_t f = 0; f < t.n_fronts; ++f) {
    const int64_t count = t.front_starts[f + 1] - t.front_starts[f];
    if (count == 0) continue;
    forward_front_kernel<N>
        <<<dim3(static_cast<unsigned>(count), static_cast<unsigned>(planes)), kThreads, bytes,
           stream>>>(d, prm, t.front_starts[f], x, q, recon, yhat, cost);
    check(cudaGetLastError(), "forward_front_kernel");
  }
}

template <int N>
void backward_fronts(const Tables& t, const DeviceTables& dt, const Params& prm, int64_t planes,
                     const double* x, const double* q, const double* recon, const double* cost,
                     double* gacc, const double* g_yhat, double* g_x, double* gr_front,
                     double* gq_block, cudaStream_t stream) {
  const DevTables& d = dt.view;
  const size_t bytes = BlockMemory<N>::backward_doubles * sizeof(double);
  allow_shared_memory(backward_front_kernel<N>, bytes, N);
  for (int64_t f = t.n_fronts - 1; f >= 0; --f) {
    const int64_t count = t.front_starts[f + 1] - t.front_starts[f];
    if (count == 0) continue;
    backward_front_kernel<N>
        <<<dim3(static_cast<unsigned>(count), static_cast<unsigned>(planes)), kThreads, bytes,
           stream>>>(d, prm, t.front_starts[f], x, q, recon, cost, gacc, g_yhat, g_x, gr_front,
                     gq_block);
    check(cudaGetLastError(), "backward_front_kernel");
    const int64_t targets = (dt.scatter_front[f + 1] - dt.scatter_front[f]) * planes;
    if (prm.ref_grad == 0.0 || targets == 0) continue;
    scatter_kernel<<<static_cast<unsigned>((targets + kThreads - 1) / kThreads), kThreads, 0,
                     stream>>>(d, prm.ref_grad, f, planes, gr_front, gacc);
    check(cudaGetLastError(), "scatter_kernel");
  }
}

}  // namespace

void intra_forward_cuda(const Tables& t, const Params& prm, int64_t planes, const double* x,
                        const double* qstep, double* recon, double* yhat, double* cost,
                        void* stream_) {
  check_planes(planes);
  if (planes == 0) return;
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const DevTables& d = c.get(t, stream).view;
  StreamScratch q(planes, stream);
  check(cudaMemcpyAsync(q.ptr, qstep, planes * sizeof(double), cudaMemcpyHostToDevice, stream),
        "copy of qstep");
  with_block_size(t.n, [&](auto n) {
    forward_fronts<decltype(n)::value>(t, d, prm, planes, x, q.ptr, recon, yhat, cost, stream);
  });
}

void intra_backward_cuda(const Tables& t, const Params& prm, int64_t planes, const double* x,
                         const double* qstep, const double* recon, const double* cost,
                         double* g_recon, const double* g_yhat, double* g_x, double* g_qstep,
                         void* stream_) {
  check_planes(planes);
  if (planes == 0) return;
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const DeviceTables& dt = c.get(t, stream);
  const int64_t front_values = planes * dt.view.widest * t.refs();
  StreamScratch scratch(planes + front_values + planes * t.blocks(), stream);
  double* q = scratch.ptr;
  double* gr_front = q + planes;
  double* gq_block = gr_front + front_values;
  check(cudaMemcpyAsync(q, qstep, planes * sizeof(double), cudaMemcpyHostToDevice, stream),
        "copy of qstep");
  with_block_size(t.n, [&](auto n) {
    backward_fronts<decltype(n)::value>(t, dt, prm, planes, x, q, recon, cost, g_recon,
                                        g_yhat, g_x, gr_front, gq_block, stream);
  });
  qstep_gradient_kernel<<<static_cast<unsigned>((planes + 127) / 128), 128, 0, stream>>>(
      planes, t.blocks(), gq_block, g_qstep);
  check(cudaGetLastError(), "qstep_gradient_kernel");
}

}  // namespace dbpg
}  // namespace gencodec
