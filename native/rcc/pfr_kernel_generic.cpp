// CPU scoring kernel, portable build (whatever the compiler's baseline vectorizes).
#include "rcc/pfr.hpp"

namespace gencodec {
namespace rcc {
namespace {

constexpr int kKernelLanes = 16;  // candidates scored together (tuned per ISA)

inline void philox_lanes(const uint64_t* blk, uint64_t t, Key key, uint32_t* w0, uint32_t* w1,
                         uint32_t* w2, uint32_t* w3, uint32_t domain = kDomainNormal) {
#pragma omp simd
  for (int l = 0; l < kKernelLanes; ++l) {
    const uint64_t x = blk[l] + t;
    uint32_t c0 = static_cast<uint32_t>(x), c1 = static_cast<uint32_t>(x >> 32);
    uint32_t c2 = domain, c3 = 0u;
    philox4x32(c0, c1, c2, c3, key);
    w0[l] = c0;
    w1[l] = c1;
    w2[l] = c2;
    w3[l] = c3;
  }
}

#define RCC_KERNEL_NAME kKernelGeneric
#define RCC_KERNEL_ISA "generic"
#include "rcc/pfr_kernel.inc"
#undef RCC_KERNEL_NAME
#undef RCC_KERNEL_ISA

}  // namespace rcc
}  // namespace gencodec
