//===- WeightSegment.h - the weights a module maps, as the compiler writes them -===//
//
// After --hasten-externalize-weights, the module's constant weights are one
// segment described by the `hasten.weight_segment` attribute. This reads it
// off the module, hashes it, and writes it: as a sidecar file, or as an
// object file whose .hasten.weights section the linker puts into the module.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_TARGET_WEIGHTSEGMENT_H
#define HASTEN_TARGET_WEIGHTSEGMENT_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hasten {

class WeightSegment {
public:
  struct Piece {
    uint64_t offset;
    llvm::ArrayRef<char> bytes;
  };

  /// Takes the segment off `module` (the attribute goes); nothing when the
  /// module has no externalized weights.
  static mlir::FailureOr<std::optional<WeightSegment>> take(mlir::ModuleOp module);

  uint64_t size() const { return bytes; }
  /// The ModuleHasher digest of the segment's bytes.
  uint64_t hash() const { return digest; }

  /// Writes the segment's bytes (zeros between pieces).
  void write(llvm::raw_ostream &os) const;
  /// A sidecar weights file (runtime/Manifest.h's SidecarHeader, then the
  /// segment).
  mlir::LogicalResult writeSidecar(llvm::StringRef path, mlir::Location loc) const;
  /// An x86-64 ELF relocatable object with a one-byte, non-allocated
  /// .hasten.weights section: linked into the library as the section's
  /// place, which appendTo then points at the segment.
  static mlir::LogicalResult writePlaceholderObject(llvm::StringRef path, mlir::Location loc);
  /// Appends the segment, page-aligned, to the linked library and points its
  /// .hasten.weights section header at it (the linker never copies it).
  mlir::LogicalResult appendTo(llvm::StringRef library, mlir::Location loc) const;

private:
  uint64_t bytes = 0;
  uint64_t digest = 0;
  std::vector<Piece> pieces;
  /// Splat values expanded to their bytes.
  std::vector<std::vector<char>> owned;
};

} // namespace hasten

#endif // HASTEN_TARGET_WEIGHTSEGMENT_H
