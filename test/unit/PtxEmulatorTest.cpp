//===- PtxEmulatorTest.cpp - the stand-in driver's PTX interpreter --------===//
//
// The CUDA end-to-end checks trust the emulator (test/tools/Inputs/
// ptx_emulator.cpp) to run kernels as a GPU would; here it runs handwritten
// PTX whose results follow from the PTX ISA: the corner cases of integer and
// float semantics, warp shuffles, shared memory and barriers, calls, local
// memory and device-side malloc, and the faults it must report instead of
// reading or writing outside the memory a kernel was given.
//
//===----------------------------------------------------------------------===//

#include "../tools/Inputs/ptx_emulator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

const char *kHeader = ".version 7.0\n.target sm_70\n.address_size 64\n";

struct Loaded {
  PtxModule *module = nullptr;
  std::string error;
  explicit Loaded(const std::string &body) {
    char buffer[1024] = {0};
    module = ptxLoad((kHeader + body).c_str(), buffer, sizeof buffer);
    error = buffer;
  }
  ~Loaded() {
    if (module)
      ptxUnload(module);
  }
};

int mallocs = 0, frees = 0;
void *countedMalloc(size_t size) {
  ++mallocs;
  return std::malloc(size);
}
void countedFree(void *p) {
  ++frees;
  std::free(p);
}

// Launches with the given buffers as the only device memory.
int launch(PtxModule *m, const char *kernel, unsigned grid, unsigned block,
           std::vector<std::pair<void *, size_t>> buffers, std::vector<void *> params,
           std::string *error = nullptr, unsigned gridY = 1, unsigned blockY = 1) {
  std::vector<uint64_t> bases, sizes;
  for (auto &[p, n] : buffers) {
    bases.push_back(uint64_t(reinterpret_cast<uintptr_t>(p)));
    sizes.push_back(n);
  }
  PtxMemory memory = {bases.data(), sizes.data(), bases.size(), countedMalloc, countedFree};
  unsigned g[3] = {grid, gridY, 1}, b[3] = {block, blockY, 1};
  char buffer[1024] = {0};
  int r = ptxLaunch(m, kernel, g, b, 0, params.data(), &memory, buffer, sizeof buffer);
  if (error)
    *error = buffer;
  return r;
}

uint32_t bitsOf(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// One thread stores the results of instructions whose PTX ISA semantics
// differ from C's or are easy to get wrong.
TEST(PtxEmulator, IntegerAndFloatSemantics) {
  Loaded l(R"(
.visible .entry semantics(.param .u64 semantics_param_0)
{
  .reg .pred %p<6>;
  .reg .b16 %rs<4>;
  .reg .b32 %r<40>;
  .reg .f32 %f<8>;
  .reg .b64 %rd<8>;
  ld.param.u64 %rd1, [semantics_param_0];
  cvta.to.global.u64 %rd1, %rd1;
  mov.u32 %r1, 1;
  shl.b32 %r2, %r1, 33;               // shift amounts clamp: 0
  st.global.u32 [%rd1], %r2;
  mov.u32 %r1, -8;
  shr.s32 %r2, %r1, 40;               // arithmetic, clamped: -1
  st.global.u32 [%rd1+4], %r2;
  mov.f32 %f1, 0f4F32D05E;            // 3e9
  cvt.rzi.s32.f32 %r3, %f1;           // saturates: INT_MAX
  st.global.u32 [%rd1+8], %r3;
  mov.f32 %f2, 0f7FC00000;            // NaN
  cvt.rzi.s32.f32 %r4, %f2;           // NaN converts to 0
  st.global.u32 [%rd1+12], %r4;
  mov.f32 %f3, 0fC02CCCCD;            // -2.7
  cvt.rzi.s32.f32 %r5, %f3;           // toward zero: -2
  st.global.u32 [%rd1+16], %r5;
  mov.f32 %f4, 0fC0200000;            // -2.5
  cvt.rmi.f32.f32 %f5, %f4;           // floor: -3.0
  st.global.f32 [%rd1+20], %f5;
  mov.f32 %f6, 0f3F800000;            // 1.0
  setp.lt.f32 %p1, %f2, %f6;          // ordered: false with NaN
  selp.u32 %r6, 1, 0, %p1;
  st.global.u32 [%rd1+24], %r6;
  setp.ltu.f32 %p2, %f2, %f6;         // unordered: true with NaN
  selp.u32 %r7, 1, 0, %p2;
  st.global.u32 [%rd1+28], %r7;
  mov.f32 %f7, 0f40000000;            // 2.0
  max.f32 %f1, %f2, %f7;              // NaN operand ignored: 2.0
  st.global.f32 [%rd1+32], %f1;
  max.NaN.f32 %f1, %f2, %f7;          // NaN propagates
  st.global.f32 [%rd1+36], %f1;
  mov.u32 %r8, -7;
  div.s32 %r9, %r8, 2;                // truncates: -3
  st.global.u32 [%rd1+40], %r9;
  rem.s32 %r10, %r8, 2;               // sign of the dividend: -1
  st.global.u32 [%rd1+44], %r10;
  mov.u32 %r11, -1;
  mul.hi.u32 %r12, %r11, %r11;        // 0xfffffffe
  st.global.u32 [%rd1+48], %r12;
  mov.u32 %r13, -3;
  mul.wide.s32 %rd2, %r13, 5;         // -15 as 64 bits
  st.global.u64 [%rd1+56], %rd2;
  mov.f32 %f1, 0f3F808000;            // halfway between two bf16 values
  cvt.rn.bf16.f32 %rs1, %f1;          // ties to even: 0x3f80
  cvt.u32.u16 %r14, %rs1;
  st.global.u32 [%rd1+64], %r14;
  mov.f32 %f1, 0f3F818000;
  cvt.rn.bf16.f32 %rs2, %f1;          // ties to even: 0x3f82
  cvt.u32.u16 %r15, %rs2;
  st.global.u32 [%rd1+68], %r15;
  mov.u32 %r16, -2147483648;
  setp.hi.u32 %p3, %r16, 1;           // unsigned: true
  selp.u32 %r17, 1, 0, %p3;
  st.global.u32 [%rd1+72], %r17;
  setp.gt.s32 %p4, %r16, 1;           // signed: false
  selp.u32 %r18, 1, 0, %p4;
  st.global.u32 [%rd1+76], %r18;
  mov.u64 %rd3, 4294967301;           // 0x1_0000_0005
  cvt.u32.u64 %r19, %rd3;             // 5
  st.global.u32 [%rd1+80], %r19;
  mov.u32 %r20, -1;
  cvt.s64.s32 %rd4, %r20;             // sign-extends
  shr.u64 %rd5, %rd4, 32;             // logical: 0xffffffff
  st.global.u32 [%rd1+84], %rd5;
  setp.eq.and.s32 %p5, %r1, %r1, %p4; // true and false: 0
  selp.u32 %r21, 1, 0, %p5;
  st.global.u32 [%rd1+88], %r21;
  ld.global.s8 %r22, [%rd1+87];       // the byte 0xff, sign-extended
  st.global.u32 [%rd1+92], %r22;
  ret;
}
)");
  ASSERT_TRUE(l.module) << l.error;
  std::vector<uint32_t> out(24, 0xdeadbeef);
  void *p = out.data();
  std::string error;
  ASSERT_EQ(launch(l.module, "semantics", 1, 1, {{out.data(), out.size() * 4}}, {&p}, &error),
            0)
      << error;
  EXPECT_EQ(out[0], 0u);
  EXPECT_EQ(out[1], 0xffffffffu);
  EXPECT_EQ(out[2], 2147483647u);
  EXPECT_EQ(out[3], 0u);
  EXPECT_EQ(int32_t(out[4]), -2);
  EXPECT_EQ(out[5], bitsOf(-3.0f));
  EXPECT_EQ(out[6], 0u);
  EXPECT_EQ(out[7], 1u);
  EXPECT_EQ(out[8], bitsOf(2.0f));
  float nan;
  std::memcpy(&nan, &out[9], 4);
  EXPECT_TRUE(std::isnan(nan));
  EXPECT_EQ(int32_t(out[10]), -3);
  EXPECT_EQ(int32_t(out[11]), -1);
  EXPECT_EQ(out[12], 0xfffffffeu);
  int64_t wide;
  std::memcpy(&wide, &out[14], 8);
  EXPECT_EQ(wide, -15);
  EXPECT_EQ(out[16], 0x3f80u);
  EXPECT_EQ(out[17], 0x3f82u);
  EXPECT_EQ(out[18], 1u);
  EXPECT_EQ(out[19], 0u);
  EXPECT_EQ(out[20], 5u);
  EXPECT_EQ(out[21], 0xffffffffu);
  EXPECT_EQ(out[22], 0u);
  EXPECT_EQ(out[23], 0xffffffffu);
}

// A block sum: a butterfly shuffle within each warp, the warps' partial sums
// through shared memory, a barrier, then thread 0 adds them; and an
// inclusive scan within each warp with shfl.up, whose lanes below the
// distance keep their value (the predicate says the source was out of range).
const char *kWarps = R"(
.visible .entry reduce(.param .u64 reduce_param_0, .param .u64 reduce_param_1)
{
  .reg .pred %p<4>;
  .reg .b32 %r<20>;
  .reg .b64 %rd<10>;
  .shared .align 4 .b8 partial[16];
  ld.param.u64 %rd1, [reduce_param_0];
  ld.param.u64 %rd2, [reduce_param_1];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r1, %tid.x;
  mul.wide.u32 %rd3, %r1, 4;
  add.s64 %rd4, %rd1, %rd3;
  ld.global.u32 %r2, [%rd4];
  shfl.sync.bfly.b32 %r3, %r2, 16, 31, -1;
  add.s32 %r2, %r2, %r3;
  shfl.sync.bfly.b32 %r3, %r2, 8, 31, -1;
  add.s32 %r2, %r2, %r3;
  shfl.sync.bfly.b32 %r3, %r2, 4, 31, -1;
  add.s32 %r2, %r2, %r3;
  shfl.sync.bfly.b32 %r3, %r2, 2, 31, -1;
  add.s32 %r2, %r2, %r3;
  shfl.sync.bfly.b32 %r3, %r2, 1, 31, -1;
  add.s32 %r2, %r2, %r3;
  and.b32 %r4, %r1, 31;
  setp.ne.s32 %p1, %r4, 0;
  shr.u32 %r5, %r1, 5;
  shl.b32 %r6, %r5, 2;
  mov.u32 %r7, partial;
  add.s32 %r8, %r7, %r6;
  @!%p1 st.shared.u32 [%r8], %r2;
  bar.sync 0;
  setp.ne.s32 %p2, %r1, 0;
  @%p2 bra $L__done;
  ld.shared.u32 %r9, [partial];
  ld.shared.u32 %r10, [partial+4];
  ld.shared.u32 %r11, [partial+8];
  ld.shared.u32 %r12, [partial+12];
  add.s32 %r9, %r9, %r10;
  add.s32 %r9, %r9, %r11;
  add.s32 %r9, %r9, %r12;
  st.global.u32 [%rd2], %r9;
$L__done:
  ret;
}

.visible .entry scan(.param .u64 scan_param_0, .param .u64 scan_param_1)
{
  .reg .pred %p<4>;
  .reg .b32 %r<10>;
  .reg .b64 %rd<8>;
  ld.param.u64 %rd1, [scan_param_0];
  ld.param.u64 %rd2, [scan_param_1];
  mov.u32 %r1, %tid.x;
  mul.wide.u32 %rd3, %r1, 4;
  add.s64 %rd4, %rd1, %rd3;
  ld.global.u32 %r2, [%rd4];
  mov.u32 %r5, 1;
$L__step:
  shfl.sync.up.b32 %r3|%p1, %r2, %r5, 0, -1;
  @%p1 add.s32 %r2, %r2, %r3;
  shl.b32 %r5, %r5, 1;
  setp.lt.u32 %p2, %r5, 32;
  @%p2 bra $L__step;
  add.s64 %rd5, %rd2, %rd3;
  st.global.u32 [%rd5], %r2;
  ret;
}
)";

TEST(PtxEmulator, WarpShufflesSharedMemoryAndBarriers) {
  Loaded l(kWarps);
  ASSERT_TRUE(l.module) << l.error;
  std::vector<uint32_t> in(128), scanned(128, 0);
  uint32_t sum = 0;
  for (uint32_t i = 0; i < 128; ++i) {
    in[i] = i * 2654435761u; // wraps: the sum is modulo 2^32 too
    sum += in[i];
  }
  uint32_t result = 0;
  void *inPtr = in.data(), *resultPtr = &result, *scannedPtr = scanned.data();
  std::string error;
  ASSERT_EQ(launch(l.module, "reduce", 1, 128, {{in.data(), 512}, {&result, 4}},
                   {&inPtr, &resultPtr}, &error),
            0)
      << error;
  EXPECT_EQ(result, sum);
  ASSERT_EQ(launch(l.module, "scan", 1, 128, {{in.data(), 512}, {scanned.data(), 512}},
                   {&inPtr, &scannedPtr}, &error),
            0)
      << error;
  for (uint32_t warp = 0; warp < 4; ++warp) {
    uint32_t running = 0;
    for (uint32_t lane = 0; lane < 32; ++lane) {
      running += in[warp * 32 + lane];
      EXPECT_EQ(scanned[warp * 32 + lane], running) << "thread " << warp * 32 + lane;
    }
  }
}

// Every thread of a 2-D grid of 2-D blocks writes its linear index where it
// belongs: the special registers of all four kinds.
TEST(PtxEmulator, GridAndBlockIndices) {
  Loaded l(R"(
.visible .entry index(.param .u64 index_param_0)
{
  .reg .b32 %r<16>;
  .reg .b64 %rd<6>;
  ld.param.u64 %rd1, [index_param_0];
  mov.u32 %r1, %ctaid.x;
  mov.u32 %r2, %ntid.x;
  mov.u32 %r3, %tid.x;
  mad.lo.s32 %r4, %r1, %r2, %r3;      // x
  mov.u32 %r5, %ctaid.y;
  mov.u32 %r6, %ntid.y;
  mov.u32 %r7, %tid.y;
  mad.lo.s32 %r8, %r5, %r6, %r7;      // y
  mov.u32 %r9, %nctaid.x;
  mul.lo.s32 %r10, %r9, %r2;          // width
  mad.lo.s32 %r11, %r8, %r10, %r4;
  mul.wide.u32 %rd2, %r11, 4;
  add.s64 %rd3, %rd1, %rd2;
  st.global.u32 [%rd3], %r11;
  ret;
}
)");
  ASSERT_TRUE(l.module) << l.error;
  // grid 3x2 of blocks 8x4: 24 x 8 threads.
  std::vector<uint32_t> out(24 * 8, 0xffffffff);
  void *p = out.data();
  std::string error;
  ASSERT_EQ(launch(l.module, "index", 3, 8, {{out.data(), out.size() * 4}}, {&p}, &error, 2, 4),
            0)
      << error;
  for (uint32_t i = 0; i < out.size(); ++i)
    EXPECT_EQ(out[i], i);
}

// A call with a parameter and a result, local memory read through a generic
// address, and device-side malloc and free.
TEST(PtxEmulator, CallsLocalMemoryAndDeviceMalloc) {
  Loaded l(R"(
.extern .func (.param .b64 func_retval0) malloc
(
  .param .b64 malloc_param_0
)
;
.extern .func free
(
  .param .b64 free_param_0
)
;
.func (.param .b32 func_retval0) twice(.param .b32 twice_param_0)
{
  .reg .b32 %r<3>;
  ld.param.b32 %r1, [twice_param_0];
  add.s32 %r2, %r1, %r1;
  st.param.b32 [func_retval0], %r2;
  ret;
}
.visible .entry calls(.param .u64 calls_param_0)
{
  .local .align 8 .b8 __local_depot0[16];
  .reg .b64 %SP;
  .reg .b64 %SPL;
  .reg .b32 %r<6>;
  .reg .b64 %rd<8>;
  mov.u64 %SPL, __local_depot0;
  cvta.local.u64 %SP, %SPL;
  mov.u32 %r1, %tid.x;
  st.local.u32 [%SPL+4], %r1;
  ld.u32 %r2, [%SP+4];
  { // callseq 0, 0
  .param .b32 param0;
  st.param.b32 [param0], %r2;
  .param .b32 retval0;
  call.uni (retval0), twice, (param0);
  ld.param.b32 %r3, [retval0];
  } // callseq 0
  { // callseq 1, 0
  .param .b64 param0;
  st.param.b64 [param0], 64;
  .param .b64 retval0;
  call.uni (retval0), malloc, (param0);
  ld.param.b64 %rd1, [retval0];
  }
  st.u32 [%rd1+60], %r3;
  ld.u32 %r4, [%rd1+60];
  { // callseq 2, 0
  .param .b64 param0;
  st.param.b64 [param0], %rd1;
  call.uni free, (param0);
  }
  ld.param.u64 %rd2, [calls_param_0];
  mul.wide.u32 %rd3, %r1, 4;
  add.s64 %rd4, %rd2, %rd3;
  st.global.u32 [%rd4], %r4;
  ret;
}
)");
  ASSERT_TRUE(l.module) << l.error;
  std::vector<uint32_t> out(40, 0);
  void *p = out.data();
  std::string error;
  mallocs = frees = 0;
  ASSERT_EQ(launch(l.module, "calls", 1, 40, {{out.data(), out.size() * 4}}, {&p}, &error), 0)
      << error;
  for (uint32_t i = 0; i < out.size(); ++i)
    EXPECT_EQ(out[i], 2 * i);
  EXPECT_EQ(mallocs, 40);
  EXPECT_EQ(frees, 40);
}

// A kernel that reads one element past its buffer fails its launch, naming
// the thread, the line and the address; nothing past the buffer is read.
TEST(PtxEmulator, OutOfBoundsAccessFailsTheLaunch) {
  Loaded l(R"(
.visible .entry copy(.param .u64 copy_param_0, .param .u64 copy_param_1)
{
  .reg .b32 %r<4>;
  .reg .b64 %rd<8>;
  ld.param.u64 %rd1, [copy_param_0];
  ld.param.u64 %rd2, [copy_param_1];
  mov.u32 %r1, %tid.x;
  mul.wide.u32 %rd3, %r1, 4;
  add.s64 %rd4, %rd1, %rd3;
  ld.global.u32 %r2, [%rd4];
  add.s64 %rd5, %rd2, %rd3;
  st.global.u32 [%rd5], %r2;
  ret;
}
)");
  ASSERT_TRUE(l.module) << l.error;
  std::vector<uint32_t> in(8, 7), out(9, 0);
  void *inPtr = in.data(), *outPtr = out.data();
  std::string error;
  EXPECT_NE(launch(l.module, "copy", 1, 9, {{in.data(), 32}, {out.data(), 36}},
                   {&inPtr, &outPtr}, &error),
            0);
  EXPECT_NE(error.find("thread (8,0,0)"), std::string::npos) << error;
  EXPECT_NE(error.find("ld.global.u32"), std::string::npos) << error;
  EXPECT_NE(error.find("load of 4 bytes"), std::string::npos) << error;
  EXPECT_NE(error.find("outside every device allocation"), std::string::npos) << error;
  EXPECT_EQ(out[8], 0u);
  // A host pointer where a device one belongs: the same fault.
  std::vector<uint32_t> host(9, 1);
  void *hostPtr = host.data();
  EXPECT_NE(launch(l.module, "copy", 1, 1, {{out.data(), 36}}, {&hostPtr, &outPtr}, &error), 0);
  EXPECT_NE(error.find("outside every device allocation"), std::string::npos) << error;
  // An unknown kernel name.
  EXPECT_NE(launch(l.module, "nope", 1, 1, {}, {}, &error), 0);
  EXPECT_NE(error.find("no kernel named nope"), std::string::npos) << error;
}

// What the emulator does not implement is refused when the module loads,
// with the line, rather than run wrongly.
// Tensor-core instructions as hasten's attention kernels use them. `mma`
// loads each lane's fragment registers (packed on the host by the PTX ISA's
// fragment tables), multiplies and stores D; `ldm` stages four 8x8 b16
// matrices in shared memory and reads them back with ldmatrix, plain and
// transposed; `partial` lets one lane exit before an mma.
const char *kTensorCores = R"(
.visible .entry mma(.param .u64 mma_param_0, .param .u64 mma_param_1, .param .u64 mma_param_2)
{
  .reg .b32 %r<20>;
  .reg .f32 %f<10>;
  .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [mma_param_0];
  ld.param.u64 %rd2, [mma_param_1];
  ld.param.u64 %rd3, [mma_param_2];
  mov.u32 %r1, %laneid;
  mul.wide.u32 %rd4, %r1, 40;
  add.s64 %rd5, %rd1, %rd4;
  ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd5];
  ld.global.v2.u32 {%r6, %r7}, [%rd5+16];
  ld.global.v2.f32 {%f1, %f2}, [%rd5+24];
  ld.global.v2.f32 {%f3, %f4}, [%rd5+32];
  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f5, %f6, %f7, %f8}, {%r2, %r3, %r4, %r5}, {%r6, %r7}, {%f1, %f2, %f3, %f4};
  mul.wide.u32 %rd6, %r1, 16;
  add.s64 %rd7, %rd2, %rd6;
  st.global.v4.f32 [%rd7], {%f5, %f6, %f7, %f8};
  mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%f5, %f6, %f7, %f8}, {%r2, %r3, %r4, %r5}, {%r6, %r7}, {%f1, %f2, %f3, %f4};
  add.s64 %rd8, %rd3, %rd6;
  st.global.v4.f32 [%rd8], {%f5, %f6, %f7, %f8};
  ret;
}

.shared .align 16 .b8 tiles[528];

.visible .entry ldm(.param .u64 ldm_param_0, .param .u64 ldm_param_1, .param .u32 ldm_param_2)
{
  .reg .b32 %r<24>;
  .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [ldm_param_0];
  ld.param.u64 %rd2, [ldm_param_1];
  ld.param.u32 %r20, [ldm_param_2];
  mov.u32 %r1, %laneid;
  mul.wide.u32 %rd3, %r1, 16;
  add.s64 %rd4, %rd1, %rd3;
  ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd4];
  mov.u32 %r6, tiles;
  shl.b32 %r7, %r1, 4;
  add.s32 %r8, %r6, %r7;
  st.shared.v4.u32 [%r8], {%r2, %r3, %r4, %r5};
  bar.sync 0;
  add.s32 %r8, %r8, %r20;
  ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r9, %r10, %r11, %r12}, [%r8];
  ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%r13, %r14, %r15, %r16}, [%r8];
  ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%r17}, [%r8];
  mul.wide.u32 %rd5, %r1, 36;
  add.s64 %rd6, %rd2, %rd5;
  st.global.u32 [%rd6], %r9;
  st.global.u32 [%rd6+4], %r10;
  st.global.u32 [%rd6+8], %r11;
  st.global.u32 [%rd6+12], %r12;
  st.global.u32 [%rd6+16], %r13;
  st.global.u32 [%rd6+20], %r14;
  st.global.u32 [%rd6+24], %r15;
  st.global.u32 [%rd6+28], %r16;
  st.global.u32 [%rd6+32], %r17;
  ret;
}

.visible .entry quad(.param .u64 quad_param_0, .param .u64 quad_param_1, .param .u64 quad_param_2)
{
  .reg .b32 %r<20>;
  .reg .f32 %f<30>;
  .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [quad_param_0];
  ld.param.u64 %rd2, [quad_param_1];
  ld.param.u64 %rd3, [quad_param_2];
  mov.u32 %r1, %laneid;
  mul.wide.u32 %rd4, %r1, 48;
  add.s64 %rd5, %rd1, %rd4;
  ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd5];
  ld.global.v4.f32 {%f1, %f2, %f3, %f4}, [%rd5+16];
  ld.global.v4.f32 {%f5, %f6, %f7, %f8}, [%rd5+32];
  mma.sync.aligned.m8n8k4.row.col.f32.f16.f16.f32 {%f11, %f12, %f13, %f14, %f15, %f16, %f17, %f18}, {%r2, %r3}, {%r4, %r5}, {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8};
  mul.wide.u32 %rd6, %r1, 32;
  add.s64 %rd7, %rd2, %rd6;
  st.global.v4.f32 [%rd7], {%f11, %f12, %f13, %f14};
  st.global.v4.f32 [%rd7+16], {%f15, %f16, %f17, %f18};
  mma.sync.aligned.m8n8k4.col.row.f32.f16.f16.f32 {%f11, %f12, %f13, %f14, %f15, %f16, %f17, %f18}, {%r2, %r3}, {%r4, %r5}, {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8};
  add.s64 %rd8, %rd3, %rd6;
  st.global.v4.f32 [%rd8], {%f11, %f12, %f13, %f14};
  st.global.v4.f32 [%rd8+16], {%f15, %f16, %f17, %f18};
  ret;
}

.visible .entry partial(.param .u64 partial_param_0)
{
  .reg .pred %p<2>;
  .reg .b32 %r<8>;
  .reg .f32 %f<10>;
  mov.u32 %r1, %laneid;
  setp.eq.u32 %p1, %r1, 31;
  @%p1 bra $L__out;
  mov.b32 %r2, 0;
  mov.f32 %f1, 0f00000000;
  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f5, %f6, %f7, %f8}, {%r2, %r2, %r2, %r2}, {%r2, %r2}, {%f1, %f1, %f1, %f1};
$L__out:
  ret;
}
)";

uint16_t bf16Of(float f) { return uint16_t(bitsOf(f) >> 16); } // exact for the values used

uint16_t f16Of(float f) { // exact for small integers and halves
  uint32_t b = bitsOf(f);
  if ((b & 0x7fffffff) == 0)
    return uint16_t(b >> 16);
  int exponent = int((b >> 23) & 0xff) - 127 + 15;
  return uint16_t(((b >> 16) & 0x8000) | uint32_t(exponent) << 10 | ((b >> 13) & 0x3ff));
}

TEST(PtxEmulator, TensorCoreMmaAndLdmatrix) {
  Loaded l(kTensorCores);
  ASSERT_TRUE(l.module) << l.error;
  // Small integers and halves: exact in bf16, f16 and f32, so the products
  // and sums are exact too.
  float a[16][16], b[16][8], c[16][8];
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 16; ++k)
      a[i][k] = float((i * 7 + k * 3) % 11) - 5.0f;
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < 8; ++j)
      b[k][j] = float((k * 5 + j * 9) % 13) * 0.5f - 3.0f;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j)
      c[i][j] = float(i - j) * 0.25f;
  // Per lane: 4 A registers, 2 B registers (two halves each), 4 C floats;
  // for bf16 and f16 the same integers, in the two encodings.
  struct Lane {
    uint32_t a[4], b[2];
    float c[4];
  };
  for (int encoding = 0; encoding < 2; ++encoding) {
    auto enc = [&](float x) { return encoding == 0 ? bf16Of(x) : f16Of(x); };
    std::vector<Lane> lanes(32);
    for (int lane = 0; lane < 32; ++lane) {
      int g = lane / 4, t = lane % 4;
      Lane &L = lanes[size_t(lane)];
      std::memset(&L, 0, sizeof L);
      for (int i = 0; i < 8; ++i)
        L.a[i / 2] |= uint32_t(enc(a[g + 8 * ((i / 2) % 2)][2 * t + i % 2 + 8 * (i / 4)]))
                      << (16 * (i % 2));
      for (int i = 0; i < 4; ++i)
        L.b[i / 2] |= uint32_t(enc(b[2 * t + i % 2 + 8 * (i / 2)][g])) << (16 * (i % 2));
      for (int i = 0; i < 4; ++i)
        L.c[i] = c[g + 8 * (i / 2)][2 * t + i % 2];
    }
    std::vector<float> bf16Out(128, -1.0f), f16Out(128, -1.0f);
    void *in = lanes.data(), *o1 = bf16Out.data(), *o2 = f16Out.data();
    std::string error;
    ASSERT_EQ(launch(l.module, "mma", 1, 32,
                     {{lanes.data(), 32 * sizeof(Lane)},
                      {bf16Out.data(), 512},
                      {f16Out.data(), 512}},
                     {&in, &o1, &o2}, &error),
              0)
        << error;
    // The encoding the lanes hold is read by its own instruction; the other
    // instruction reads the same bits as the other type, so only check it.
    std::vector<float> &out = encoding == 0 ? bf16Out : f16Out;
    for (int lane = 0; lane < 32; ++lane) {
      int g = lane / 4, t = lane % 4;
      for (int i = 0; i < 4; ++i) {
        int row = g + 8 * (i / 2), col = 2 * t + i % 2;
        float expected = c[row][col];
        for (int k = 0; k < 16; ++k)
          expected += a[row][k] * b[k][col];
        EXPECT_EQ(out[size_t(lane * 4 + i)], expected)
            << (encoding ? "f16" : "bf16") << " D(" << row << "," << col << ") at lane " << lane;
      }
    }
  }

  // Volta's m8n8k4: four independent products, one per quad pair, with A
  // and B read row-major/column-major, then column-major/row-major.
  {
    struct QuadLane {
      uint32_t a[2], b[2];
      float c[8];
    };
    auto av = [](int q, int i, int k) { return float((q * 5 + i * 3 + k) % 7) - 3.0f; };
    auto bv = [](int q, int k, int j) { return float((q + k * 2 + j * 3) % 5) * 0.5f - 1.0f; };
    auto cv = [](int q, int i, int j) { return float(q * 64 + i * 8 + j) * 0.125f; };
    for (int form = 0; form < 2; ++form) {
      bool colA = form == 1, colB = form == 0;
      std::vector<QuadLane> lanes(32);
      for (int lane = 0; lane < 32; ++lane) {
        int q = (lane / 4) % 4, h = lane >= 16, r = lane % 4;
        QuadLane &L = lanes[size_t(lane)];
        std::memset(&L, 0, sizeof L);
        for (int i = 0; i < 4; ++i) {
          float x = colA ? av(q, i + 4 * h, r) : av(q, r + 4 * h, i);
          float y = colB ? bv(q, i, r + 4 * h) : bv(q, r, i + 4 * h);
          L.a[i / 2] |= uint32_t(f16Of(x)) << (16 * (i % 2));
          L.b[i / 2] |= uint32_t(f16Of(y)) << (16 * (i % 2));
        }
        for (int i = 0; i < 8; ++i)
          L.c[i] = cv(q, (lane & 1) + (i & 2) + 4 * h, (i & 4) + (lane & 2) + (i & 1));
      }
      std::vector<float> rowCol(256, -1.0f), colRow(256, -1.0f);
      void *in = lanes.data(), *o1 = rowCol.data(), *o2 = colRow.data();
      std::string error;
      ASSERT_EQ(launch(l.module, "quad", 1, 32,
                       {{lanes.data(), 32 * sizeof(QuadLane)}, {rowCol.data(), 1024},
                        {colRow.data(), 1024}},
                       {&in, &o1, &o2}, &error),
                0)
          << error;
      std::vector<float> &out = form == 0 ? rowCol : colRow;
      for (int lane = 0; lane < 32; ++lane) {
        int q = (lane / 4) % 4, h = lane >= 16;
        for (int i = 0; i < 8; ++i) {
          int row = (lane & 1) + (i & 2) + 4 * h, col = (i & 4) + (lane & 2) + (i & 1);
          float expected = cv(q, row, col);
          for (int k = 0; k < 4; ++k)
            expected += av(q, row, k) * bv(q, k, col);
          EXPECT_EQ(out[size_t(lane * 8 + i)], expected)
              << (form ? "col.row" : "row.col") << " quad pair " << q << " D(" << row << ","
              << col << ") at lane " << lane;
        }
      }
    }
  }

  // ldmatrix: matrix m, row r, column k holds 1000 m + 10 r + k.
  std::vector<uint16_t> tiles(256);
  for (int m = 0; m < 4; ++m)
    for (int r = 0; r < 8; ++r)
      for (int k = 0; k < 8; ++k)
        tiles[size_t(m * 64 + r * 8 + k)] = uint16_t(1000 * m + 10 * r + k);
  std::vector<uint32_t> regs(32 * 9, 0);
  void *in = tiles.data(), *out = regs.data();
  uint32_t offset = 0;
  std::string error;
  ASSERT_EQ(launch(l.module, "ldm", 1, 32, {{tiles.data(), 512}, {regs.data(), regs.size() * 4}},
                   {&in, &out, &offset}, &error),
            0)
      << error;
  auto element = [&](int m, int r, int k) { return uint32_t(1000 * m + 10 * r + k); };
  for (int lane = 0; lane < 32; ++lane) {
    int g = lane / 4, t = lane % 4;
    const uint32_t *r = &regs[size_t(lane * 9)];
    for (int m = 0; m < 4; ++m) {
      EXPECT_EQ(r[m], element(m, g, 2 * t) | element(m, g, 2 * t + 1) << 16)
          << "lane " << lane << " matrix " << m;
      EXPECT_EQ(r[4 + m], element(m, 2 * t, g) | element(m, 2 * t + 1, g) << 16)
          << "lane " << lane << " transposed matrix " << m;
    }
    EXPECT_EQ(r[8], element(0, g, 2 * t) | element(0, g, 2 * t + 1) << 16) << "x1, lane " << lane;
  }
  // Row addresses must be 16-byte aligned.
  offset = 8;
  EXPECT_NE(launch(l.module, "ldm", 1, 32, {{tiles.data(), 512}, {regs.data(), regs.size() * 4}},
                   {&in, &out, &offset}, &error),
            0);
  EXPECT_NE(error.find("not 16-byte aligned"), std::string::npos) << error;
  // Every lane of the warp takes part in an mma.
  EXPECT_NE(launch(l.module, "partial", 1, 32, {}, {&out}, &error), 0);
  EXPECT_NE(error.find("lane 31 of the warp inactive"), std::string::npos) << error;
}

// cp.async: each thread copies 16 bytes into shared memory (lanes 8 and up
// only their first 8, the rest zero-filled), reads the destination before
// and after cp.async.wait_group: the bytes land no earlier than the wait.
const char *kAsyncCopies = R"(
.shared .align 16 .b8 staged[512];

.visible .entry copies(.param .u64 copies_param_0, .param .u64 copies_param_1)
{
  .reg .pred %p<2>;
  .reg .b32 %r<20>;
  .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [copies_param_0];
  ld.param.u64 %rd2, [copies_param_1];
  mov.u32 %r1, %tid.x;
  mul.wide.u32 %rd3, %r1, 16;
  add.s64 %rd4, %rd1, %rd3;
  mov.u32 %r2, staged;
  shl.b32 %r3, %r1, 4;
  add.s32 %r4, %r2, %r3;
  setp.lt.u32 %p1, %r1, 8;
  selp.b32 %r5, 16, 8, %p1;
  cp.async.cg.shared.global [%r4], [%rd4], 16, %r5;
  cp.async.commit_group;
  ld.shared.v4.u32 {%r6, %r7, %r8, %r9}, [%r4];
  cp.async.wait_group 0;
  ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r4];
  mul.wide.u32 %rd5, %r1, 32;
  add.s64 %rd6, %rd2, %rd5;
  st.global.v4.u32 [%rd6], {%r6, %r7, %r8, %r9};
  st.global.v4.u32 [%rd6+16], {%r10, %r11, %r12, %r13};
  ret;
}
)";

TEST(PtxEmulator, AsyncCopiesLandAtTheWait) {
  Loaded l(kAsyncCopies);
  ASSERT_TRUE(l.module) << l.error;
  std::vector<uint32_t> in(128), out(256, 0xdeadbeef);
  for (uint32_t i = 0; i < 128; ++i)
    in[i] = 0x01010101u * (i % 251 + 1);
  void *inPtr = in.data(), *outPtr = out.data();
  std::string error;
  ASSERT_EQ(launch(l.module, "copies", 1, 32, {{in.data(), 512}, {out.data(), 1024}},
                   {&inPtr, &outPtr}, &error),
            0)
      << error;
  for (uint32_t t = 0; t < 32; ++t)
    for (uint32_t w = 0; w < 4; ++w) {
      EXPECT_EQ(out[t * 8 + w], 0u) << "thread " << t << " word " << w << " before the wait";
      uint32_t expected = t < 8 || w < 2 ? in[t * 4 + w] : 0u;
      EXPECT_EQ(out[t * 8 + 4 + w], expected) << "thread " << t << " word " << w;
    }
  // A source past the allocation faults at the copy, with its line.
  std::vector<uint32_t> small(64);
  void *smallPtr = small.data();
  EXPECT_NE(launch(l.module, "copies", 1, 32, {{small.data(), 256}, {out.data(), 1024}},
                   {&smallPtr, &outPtr}, &error),
            0);
  EXPECT_NE(error.find("cp.async.cg.shared.global"), std::string::npos) << error;
}

TEST(PtxEmulator, UnsupportedInstructionsAreRefusedAtLoad) {
  Loaded tex(R"(
.visible .entry sample(.param .u64 sample_param_0)
{
  .reg .f32 %f<5>;
  .reg .b64 %rd<3>;
  ld.param.u64 %rd1, [sample_param_0];
  tex.1d.v4.f32.s32 {%f1, %f2, %f3, %f4}, [%rd1, {%f1}];
  ret;
}
)");
  EXPECT_EQ(tex.module, nullptr);
  EXPECT_NE(tex.error.find("line 10: unsupported instruction 'tex.1d.v4.f32.s32'"),
            std::string::npos)
      << tex.error;
  Loaded label(R"(
.visible .entry jump()
{
  bra $L__nowhere;
}
)");
  EXPECT_EQ(label.module, nullptr);
  EXPECT_NE(label.error.find("unknown label '$L__nowhere'"), std::string::npos) << label.error;
  // An mma form the emulator does not model is refused, not run wrongly.
  Loaded f16acc(R"(
.visible .entry f16acc()
{
  .reg .b32 %r<6>;
  .reg .f32 %f<10>;
  mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%r1, %r2}, {%r1, %r2, %r3, %r4}, {%r1, %r2}, {%r3, %r4};
  ret;
}
)");
  EXPECT_EQ(f16acc.module, nullptr);
  EXPECT_NE(f16acc.error.find("unsupported mma form"), std::string::npos) << f16acc.error;
}

} // namespace
