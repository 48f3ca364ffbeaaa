// Compile-time shape of one sm80-mma attention kernel: tile sizes, warps,
// register fragment counts, shared-memory layout and its XOR swizzle.
#pragma once
#include <cstdint>

namespace prism::cuda::attn {

template <int kD_, int kWarps_, int kMTiles_, int kBlockN_, int kSubN_, bool kQInRegs_,
          int kMinBlocks_, bool kUnrollSub_ = false>
struct FwdTraits {
  static constexpr int kD = kD_;  // head dim
  static constexpr int kWarps = kWarps_;
  static constexpr int kMTiles = kMTiles_;  // 16-row mma tiles per warp
  static constexpr int kBlockM = kWarps * 16 * kMTiles;
  static constexpr int kBlockN = kBlockN_;  // keys per loaded K/V tile
  static constexpr int kSubN = kSubN_;      // keys per S / softmax / PV step
  static constexpr bool kUnrollSub = kUnrollSub_;
  static constexpr bool kQInRegs = kQInRegs_;
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = 2;  // K/V double buffer

  // mma fragment counts
  static constexpr int kNT = kSubN / 8;   // n8 tiles of S
  static constexpr int kDT = kD / 8;      // n8 tiles of O
  static constexpr int kKS = kD / 16;     // k16 steps of Q K^T
  static constexpr int kKP = kSubN / 16;  // k16 steps of P V

  // shared memory: rows of kD elements, 16-byte chunks XOR-swizzled by row & 7
  static constexpr int kChunks = kD / 8;
  static constexpr int kRowStep = kThreads / kChunks;  // rows one pass of copies covers
  static constexpr int kElemsQ = kBlockM * kD;
  static constexpr int kElemsKV = kBlockN * kD;
  static constexpr int kSmemBytes = 2 * (kElemsQ + 2 * kStages * kElemsKV);  // tiles
  static constexpr int kSmemTotal = kSmemBytes + 16;  // + two parked pointers

  static_assert(kD == 64 || kD == 128, "head dim");
  static_assert(kBlockN % kSubN == 0 && kSubN % 16 == 0, "key tile");
  static_assert(kRowStep % 8 == 0, "copy row step keeps row & 7 fixed per thread");
  static_assert(kBlockM % kRowStep == 0 && kBlockN % kRowStep == 0, "copy passes");
};

// Element offset of 16-byte chunk `chunk` of row `row` in a swizzled tile.
template <int kD>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * kD + ((chunk ^ (row & 7)) << 3);
}

}  // namespace prism::cuda::attn
