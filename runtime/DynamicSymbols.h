//===- DynamicSymbols.h - functions of a library opened at run time -*- C++ -*-===//
//
// The runtime opens the CUDA driver and cuBLASLt with dlopen (it links no
// CUDA library); both resolve their entry points the same way.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_DYNAMICSYMBOLS_H
#define HASTEN_RUNTIME_DYNAMICSYMBOLS_H

#include <dlfcn.h>

#include <string>

namespace hasten::runtime {

/// Points `fn` at `symbol` of the dlopen'ed `library`; false when it is
/// missing, the first missing name then kept in `missing`.
template <typename F>
bool resolveSymbol(void *library, F &fn, const char *symbol, std::string &missing) {
  fn = reinterpret_cast<F>(dlsym(library, symbol));
  if (!fn && missing.empty())
    missing = symbol;
  return fn != nullptr;
}

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_DYNAMICSYMBOLS_H
