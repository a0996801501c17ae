/* An interpreter for the PTX that hasten's CUDA pipeline emits, so that the
 * stand-in driver (fake_cuda.c) runs kernels on the CPU and the CUDA
 * target's outputs can be compared with the CPU target's on machines
 * without a GPU. It follows the PTX ISA's semantics for the instructions it
 * knows and refuses the rest by name when the module loads; every memory
 * access is checked against the device allocations the driver reports, so
 * an out-of-bounds access or a host pointer reaching a kernel fails the
 * launch with the instruction and address, as a GPU's illegal-address error
 * would (but precisely).
 */
#ifndef HASTEN_TEST_PTX_EMULATOR_H
#define HASTEN_TEST_PTX_EMULATOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PtxModule PtxModule;

/* What a launch may touch, and where device-side malloc/free go. */
typedef struct PtxMemory {
  const uint64_t *bases; /* live device allocations */
  const uint64_t *sizes;
  size_t count;
  void *(*deviceMalloc)(size_t size);
  void (*deviceFree)(void *pointer);
} PtxMemory;

/* Parses a PTX module; NULL with the reason in `error` when it holds
   something the emulator does not implement. */
PtxModule *ptxLoad(const char *ptx, char *error, size_t errorSize);
void ptxUnload(PtxModule *module);

/* Whether the module has an entry of that name. */
int ptxHasKernel(const PtxModule *module, const char *name);

/* Runs a kernel to completion; 0 on success, else nonzero with the failing
   thread, instruction and address in `error`. */
int ptxLaunch(PtxModule *module, const char *kernel, const unsigned grid[3],
              const unsigned block[3], unsigned dynamicSharedBytes, void **params,
              const PtxMemory *memory, char *error, size_t errorSize);

#ifdef __cplusplus
}
#endif

#endif
