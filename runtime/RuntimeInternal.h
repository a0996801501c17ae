//===- RuntimeInternal.h - shared by the runtime's source files ------------===//

#ifndef HASTEN_RUNTIME_RUNTIMEINTERNAL_H
#define HASTEN_RUNTIME_RUNTIMEINTERNAL_H

#include <string>

namespace hasten::runtime {

/// Kernels called from generated code cannot return errors through it; they
/// record the first error of the current run here, and hasten_run reports it
/// after the entry returns.
void setKernelError(const std::string &message);
/// Returns and clears the current thread's kernel error ("" if none).
std::string takeKernelError();

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_RUNTIMEINTERNAL_H
