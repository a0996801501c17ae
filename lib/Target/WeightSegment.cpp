//===- WeightSegment.cpp - the weights a module maps, written out ----------===//

#include "hasten/Target/WeightSegment.h"

#include "Manifest.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/ToolOutputFile.h"

#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

using namespace mlir;
using namespace hasten;

FailureOr<std::optional<WeightSegment>> WeightSegment::take(ModuleOp module) {
  auto attr = module->getAttrOfType<DictionaryAttr>(hasten::HastenDialect::kWeightSegmentAttrName);
  if (!attr)
    return std::optional<WeightSegment>();
  module->removeAttr(hasten::HastenDialect::kWeightSegmentAttrName);
  auto invalid = [&]() -> FailureOr<std::optional<WeightSegment>> {
    return emitError(module.getLoc(), "malformed hasten.weight_segment attribute");
  };
  auto size = attr.getAs<IntegerAttr>("bytes");
  auto list = attr.getAs<ArrayAttr>("weights");
  if (!size || !list || size.getInt() < 0)
    return invalid();
  WeightSegment segment;
  segment.bytes = size.getInt();
  for (Attribute entry : list) {
    auto fields = dyn_cast<DictionaryAttr>(entry);
    auto offset = fields ? fields.getAs<IntegerAttr>("offset") : nullptr;
    Attribute value = fields ? fields.get("value") : nullptr;
    if (!offset || offset.getInt() < 0)
      return invalid();
    ArrayRef<char> bytes;
    if (auto resource = dyn_cast_or_null<DenseResourceElementsAttr>(value)) {
      AsmResourceBlob *blob = resource.getRawHandle().getBlob();
      if (!blob)
        return invalid();
      bytes = blob->getData();
    } else if (auto dense = dyn_cast_or_null<DenseIntOrFPElementsAttr>(value)) {
      bytes = dense.getRawData();
      if (dense.isSplat()) {
        std::vector<char> expanded;
        expanded.reserve(bytes.size() * dense.getNumElements());
        for (int64_t i = 0; i < dense.getNumElements(); ++i)
          expanded.insert(expanded.end(), bytes.begin(), bytes.end());
        segment.owned.push_back(std::move(expanded));
        bytes = segment.owned.back();
      }
    } else {
      return invalid();
    }
    if ((uint64_t)offset.getInt() + bytes.size() > segment.bytes)
      return invalid();
    segment.pieces.push_back({(uint64_t)offset.getInt(), bytes});
  }
  llvm::sort(segment.pieces, [](const Piece &a, const Piece &b) { return a.offset < b.offset; });
  for (size_t i = 1; i < segment.pieces.size(); ++i)
    if (segment.pieces[i - 1].offset + segment.pieces[i - 1].bytes.size() >
        segment.pieces[i].offset)
      return invalid();
  // The digest, streamed as write() lays the bytes out.
  ModuleHasher hasher;
  static const uint8_t zeros[4096] = {};
  uint64_t at = 0;
  auto zeroUntil = [&](uint64_t end) {
    while (at < end) {
      uint64_t n = std::min<uint64_t>(sizeof(zeros), end - at);
      hasher.update(zeros, n);
      at += n;
    }
  };
  for (const Piece &piece : segment.pieces) {
    zeroUntil(piece.offset);
    hasher.update(reinterpret_cast<const uint8_t *>(piece.bytes.data()), piece.bytes.size());
    at += piece.bytes.size();
  }
  zeroUntil(segment.bytes);
  segment.digest = hasher.finish();
  return std::optional<WeightSegment>(std::move(segment));
}

void WeightSegment::write(llvm::raw_ostream &os) const {
  uint64_t at = 0;
  for (const Piece &piece : pieces) {
    os.write_zeros(piece.offset - at);
    os.write(piece.bytes.data(), piece.bytes.size());
    at = piece.offset + piece.bytes.size();
  }
  os.write_zeros(bytes - at);
}

LogicalResult WeightSegment::writeSidecar(StringRef path, Location loc) const {
  std::string error;
  auto out = openOutputFile(path, &error);
  if (!out)
    return emitError(loc) << "cannot write the weights file: " << error;
  SidecarHeader header;
  std::memcpy(header.magic, kSidecarMagic, sizeof(header.magic));
  header.segmentBytes = bytes;
  header.segmentHash = digest;
  out->os().write(reinterpret_cast<const char *>(&header), sizeof(header));
  out->os().write_zeros(kSidecarHeaderBytes - sizeof(header));
  write(out->os());
  out->os().flush();
  if (out->os().has_error())
    return emitError(loc) << "cannot write the weights file '" << path << "'";
  out->keep();
  return success();
}

LogicalResult WeightSegment::writePlaceholderObject(StringRef path, Location loc) {
  std::string error;
  auto out = openOutputFile(path, &error);
  if (!out)
    return emitError(loc) << "cannot write the weights object: " << error;
  // [ELF header][one byte][.shstrtab][section headers]: null,
  // .hasten.weights (PROGBITS, not allocated: the runtime maps it itself,
  // the loader does not), .shstrtab.
  const char names[] = "\0.hasten.weights\0.shstrtab";
  uint64_t dataOffset = sizeof(Elf64_Ehdr);
  uint64_t namesOffset = dataOffset + 1;
  uint64_t headersOffset = (namesOffset + sizeof(names) + 7) / 8 * 8;
  Elf64_Ehdr header = {};
  std::memcpy(header.e_ident, ELFMAG, SELFMAG);
  header.e_ident[EI_CLASS] = ELFCLASS64;
  header.e_ident[EI_DATA] = ELFDATA2LSB;
  header.e_ident[EI_VERSION] = EV_CURRENT;
  header.e_type = ET_REL;
  header.e_machine = EM_X86_64;
  header.e_version = EV_CURRENT;
  header.e_shoff = headersOffset;
  header.e_ehsize = sizeof(Elf64_Ehdr);
  header.e_shentsize = sizeof(Elf64_Shdr);
  header.e_shnum = 3;
  header.e_shstrndx = 2;
  Elf64_Shdr sections[3] = {};
  sections[1].sh_name = 1;
  sections[1].sh_type = SHT_PROGBITS;
  sections[1].sh_offset = dataOffset;
  sections[1].sh_size = 1;
  sections[1].sh_addralign = 1;
  sections[2].sh_name = 1 + std::strlen(kWeightsSectionName) + 1;
  sections[2].sh_type = SHT_STRTAB;
  sections[2].sh_offset = namesOffset;
  sections[2].sh_size = sizeof(names);
  sections[2].sh_addralign = 1;
  llvm::raw_fd_ostream &os = out->os();
  os.write(reinterpret_cast<const char *>(&header), sizeof(header));
  os.write('\0');
  os.write(names, sizeof(names));
  os.write_zeros(headersOffset - namesOffset - sizeof(names));
  os.write(reinterpret_cast<const char *>(sections), sizeof(sections));
  os.flush();
  if (os.has_error())
    return emitError(loc) << "cannot write the weights object '" << path << "'";
  out->keep();
  return success();
}

LogicalResult WeightSegment::appendTo(StringRef library, Location loc) const {
  auto fail = [&](const Twine &why) {
    return emitError(loc) << "cannot add the weights to '" << library << "': " << why;
  };
  int fd;
  if (std::error_code ec = llvm::sys::fs::openFileForReadWrite(
          library, fd, llvm::sys::fs::CD_OpenExisting, llvm::sys::fs::OF_None))
    return fail(ec.message());
  auto readAt = [&](uint64_t offset, void *out, size_t size) {
    return ::pread(fd, out, size, off_t(offset)) == ssize_t(size);
  };
  Elf64_Ehdr header;
  std::vector<Elf64_Shdr> sections;
  std::vector<char> names;
  bool ok = readAt(0, &header, sizeof(header)) && header.e_shentsize == sizeof(Elf64_Shdr) &&
            header.e_shstrndx < header.e_shnum;
  if (ok) {
    sections.resize(header.e_shnum);
    ok = readAt(header.e_shoff, sections.data(), sections.size() * sizeof(Elf64_Shdr));
  }
  if (ok) {
    names.resize(sections[header.e_shstrndx].sh_size);
    ok = readAt(sections[header.e_shstrndx].sh_offset, names.data(), names.size());
  }
  std::optional<size_t> index;
  for (size_t i = 0; ok && i < sections.size(); ++i)
    if (sections[i].sh_name < names.size() &&
        StringRef(&names[sections[i].sh_name]) == kWeightsSectionName)
      index = i;
  struct stat st;
  if (!ok || !index || ::fstat(fd, &st) != 0) {
    ::close(fd);
    return fail(Twine("the linked library has no ") + kWeightsSectionName + " section");
  }
  uint64_t offset = (uint64_t(st.st_size) + kWeightSegmentAlignment - 1) /
                    kWeightSegmentAlignment * kWeightSegmentAlignment;
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/false);
    os.seek(st.st_size);
    os.write_zeros(offset - uint64_t(st.st_size));
    write(os);
    os.flush();
    if (os.has_error()) {
      os.clear_error();
      ::close(fd);
      return fail("writing the segment failed");
    }
  }
  Elf64_Shdr &section = sections[*index];
  section.sh_offset = offset;
  section.sh_size = bytes;
  section.sh_addralign = kWeightSegmentAlignment;
  bool patched = ::pwrite(fd, &section, sizeof(section),
                          off_t(header.e_shoff + *index * sizeof(Elf64_Shdr))) ==
                 ssize_t(sizeof(section));
  ::close(fd);
  if (!patched)
    return fail("cannot update its section header");
  return success();
}
