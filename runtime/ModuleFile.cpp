//===- ModuleFile.cpp - a module's manifest, read from the file -----------===//

#include "ModuleFile.h"

#include "Manifest.h"

#include <flatbuffers/flatbuffers.h>

#include <elf.h>

#include <algorithm>
#include <cstring>

using namespace hasten::runtime;

namespace {

/// The largest manifest a module may carry.
constexpr uint64_t kMaxManifestBytes = uint64_t(1) << 30;

bool inside(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}

/// The file offset of `length` bytes at virtual address `address`, when one
/// loadable segment holds all of them in the file.
bool fileOffsetOf(const std::vector<Elf64_Phdr> &segments, uint64_t address, uint64_t length,
                  uint64_t &offset) {
  for (const Elf64_Phdr &segment : segments) {
    if (segment.p_type != PT_LOAD || address < segment.p_vaddr)
      continue;
    uint64_t within = address - segment.p_vaddr;
    if (inside(within, length, segment.p_filesz)) {
      offset = segment.p_offset + within;
      return true;
    }
  }
  return false;
}

} // namespace

hasten_status hasten::runtime::readModuleManifest(const FileReader &file,
                                                  std::vector<uint8_t> &manifest,
                                                  EmbeddedWeights &weights,
                                                  std::string &error) {
  weights = EmbeddedWeights();
  auto corrupt = [&](const std::string &why) {
    error = "not a loadable shared library: the file is truncated or corrupt (" + why + ")";
    return HASTEN_ERROR_INVALID_MODULE;
  };
  Elf64_Ehdr header;
  if (file.size < sizeof(header) || !file.read(0, sizeof(header), &header) ||
      std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0) {
    error = "not a loadable shared library: not an ELF file";
    return HASTEN_ERROR_INVALID_MODULE;
  }
  if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_ident[EI_DATA] != ELFDATA2LSB ||
      header.e_machine != EM_X86_64 || header.e_type != ET_DYN) {
    error = "not a loadable shared library: not an x86-64 shared object";
    return HASTEN_ERROR_INVALID_MODULE;
  }
  if (header.e_phentsize != sizeof(Elf64_Phdr) ||
      !inside(header.e_phoff, uint64_t(header.e_phnum) * sizeof(Elf64_Phdr), file.size) ||
      (header.e_shnum &&
       (header.e_shentsize != sizeof(Elf64_Shdr) ||
        !inside(header.e_shoff, uint64_t(header.e_shnum) * sizeof(Elf64_Shdr), file.size))))
    return corrupt("its header tables extend past the end of the file");
  std::vector<Elf64_Phdr> segments(header.e_phnum);
  if (!file.read(header.e_phoff, segments.size() * sizeof(Elf64_Phdr), segments.data()))
    return corrupt("its program headers cannot be read");
  for (size_t i = 0; i < segments.size(); ++i)
    if (!inside(segments[i].p_offset, segments[i].p_filesz, file.size))
      return corrupt("segment " + std::to_string(i) + " extends past the end of the file");
  std::vector<Elf64_Shdr> sections(header.e_shnum);
  if (!file.read(header.e_shoff, sections.size() * sizeof(Elf64_Shdr), sections.data()))
    return corrupt("its section headers cannot be read");

  // The manifest symbols, from the dynamic symbol table and its strings.
  const Elf64_Shdr *symbols = nullptr;
  for (const Elf64_Shdr &section : sections)
    if (section.sh_type == SHT_DYNSYM)
      symbols = &section;
  if (!symbols || symbols->sh_entsize != sizeof(Elf64_Sym) ||
      symbols->sh_link >= sections.size() ||
      !inside(symbols->sh_offset, symbols->sh_size, file.size))
    return corrupt("no readable dynamic symbol table");
  const Elf64_Shdr &strings = sections[symbols->sh_link];
  if (!inside(strings.sh_offset, strings.sh_size, file.size) || strings.sh_size > (64u << 20))
    return corrupt("no readable dynamic string table");
  std::vector<char> names(strings.sh_size);
  if (!file.read(strings.sh_offset, names.size(), names.data()))
    return corrupt("no readable dynamic string table");
  std::vector<Elf64_Sym> table(symbols->sh_size / sizeof(Elf64_Sym));
  if (!file.read(symbols->sh_offset, table.size() * sizeof(Elf64_Sym), table.data()))
    return corrupt("no readable dynamic symbol table");
  auto nameIs = [&](const Elf64_Sym &symbol, const char *wanted) {
    size_t length = std::strlen(wanted);
    return symbol.st_name < names.size() && names.size() - symbol.st_name > length &&
           std::memcmp(&names[symbol.st_name], wanted, length + 1) == 0;
  };
  const Elf64_Sym *bytesSymbol = nullptr, *sizeSymbol = nullptr, *hashSymbol = nullptr;
  for (const Elf64_Sym &symbol : table) {
    if (symbol.st_shndx == SHN_UNDEF)
      continue;
    if (nameIs(symbol, hasten::kManifestSymbol))
      bytesSymbol = &symbol;
    else if (nameIs(symbol, hasten::kManifestSizeSymbol))
      sizeSymbol = &symbol;
    else if (nameIs(symbol, hasten::kModuleHashSymbol))
      hashSymbol = &symbol;
  }
  if (!bytesSymbol || !sizeSymbol) {
    error = std::string("not a hasten module (it exports no ") + hasten::kManifestSymbol + ")";
    return HASTEN_ERROR_INVALID_MODULE;
  }

  uint64_t sizeOffset, size = 0, bytesOffset;
  if (sizeSymbol->st_size != sizeof(uint64_t) ||
      !fileOffsetOf(segments, sizeSymbol->st_value, sizeof(uint64_t), sizeOffset) ||
      !file.read(sizeOffset, sizeof(uint64_t), &size))
    return corrupt(std::string(hasten::kManifestSizeSymbol) + " is not in the file");
  if (size == 0 || size > kMaxManifestBytes || size > bytesSymbol->st_size ||
      !fileOffsetOf(segments, bytesSymbol->st_value, size, bytesOffset)) {
    error = "corrupt manifest (size " + std::to_string(size) + ", " +
            std::to_string(bytesSymbol->st_size) + " bytes in the file)";
    return HASTEN_ERROR_INVALID_MODULE;
  }
  manifest.resize(size);
  if (!file.read(bytesOffset, size, manifest.data()))
    return corrupt("the manifest cannot be read");
  if (hasten_status status = checkManifestBytes(manifest, error))
    return status;

  // The embedded weight segment: the non-allocated section the manifest
  // says is there, page-aligned, clear of every loaded segment, of the
  // manifest's size. It is not covered by the module hash (the manifest,
  // which is, carries its digest).
  const auto *module = hasten::manifest::GetModule(manifest.data());
  if (module->weight_storage() == hasten::manifest::WeightStorage_embedded) {
    const Elf64_Shdr *found = nullptr;
    if (header.e_shstrndx < sections.size()) {
      const Elf64_Shdr &namesSection = sections[header.e_shstrndx];
      std::vector<char> sectionNames;
      if (namesSection.sh_size <= (1u << 20) &&
          inside(namesSection.sh_offset, namesSection.sh_size, file.size)) {
        sectionNames.resize(namesSection.sh_size);
        if (!file.read(namesSection.sh_offset, sectionNames.size(), sectionNames.data()))
          sectionNames.clear();
      }
      size_t length = std::strlen(hasten::kWeightsSectionName);
      for (const Elf64_Shdr &section : sections)
        if (section.sh_name < sectionNames.size() &&
            sectionNames.size() - section.sh_name > length &&
            std::memcmp(&sectionNames[section.sh_name], hasten::kWeightsSectionName,
                        length + 1) == 0)
          found = &section;
    }
    if (!found)
      return corrupt(std::string("its manifest says the weights are embedded, but there is no ") +
                     hasten::kWeightsSectionName + " section");
    bool clear = !(found->sh_flags & SHF_ALLOC) &&
                 found->sh_offset % hasten::kWeightSegmentAlignment == 0 &&
                 found->sh_size == module->weight_segment_bytes() &&
                 inside(found->sh_offset, found->sh_size, file.size);
    for (const Elf64_Phdr &segment : segments)
      if (segment.p_type == PT_LOAD && segment.p_offset < found->sh_offset + found->sh_size &&
          found->sh_offset < segment.p_offset + segment.p_filesz)
        clear = false;
    if (!clear)
      return corrupt(std::string("its ") + hasten::kWeightsSectionName +
                     " section is misplaced or not the manifest's " +
                     std::to_string(module->weight_segment_bytes()) + " bytes");
    weights.offset = found->sh_offset;
    weights.size = found->sh_size;
  }

  // The whole file against the hash the compiler wrote into it.
  uint64_t hashOffset, expected;
  if (!hashSymbol || hashSymbol->st_size != sizeof(uint64_t) ||
      !fileOffsetOf(segments, hashSymbol->st_value, sizeof(uint64_t), hashOffset) ||
      !file.read(hashOffset, sizeof(uint64_t), &expected))
    return corrupt(std::string(hasten::kModuleHashSymbol) + " is not in the file");
  hasten::ModuleHasher hasher;
  std::vector<uint8_t> chunk(uint64_t(1) << 20);
  for (uint64_t at = 0; at < file.size;) {
    if (weights.size && at == weights.offset) {
      at += weights.size;
      continue;
    }
    uint64_t end = weights.size && at < weights.offset ? weights.offset : file.size;
    uint64_t length = std::min<uint64_t>(chunk.size(), end - at);
    if (!file.read(at, length, chunk.data()))
      return corrupt("it cannot be read");
    // The hash's own bytes count as zeros.
    for (uint64_t i = std::max(at, hashOffset); i < std::min(at + length, hashOffset + 8); ++i)
      chunk[i - at] = 0;
    hasher.update(chunk.data(), length);
    at += length;
  }
  if (hasher.finish() != expected) {
    error = "corrupt module: its bytes do not match the hash the compiler wrote (the file "
            "was damaged or modified after compilation)";
    return HASTEN_ERROR_INVALID_MODULE;
  }
  return HASTEN_OK;
}

hasten_status hasten::runtime::checkManifestBytes(const std::vector<uint8_t> &manifest,
                                                  std::string &error) {
  flatbuffers::Verifier verifier(manifest.data(), manifest.size());
  if (manifest.size() < 8 || !hasten::manifest::ModuleBufferHasIdentifier(manifest.data()) ||
      !hasten::manifest::VerifyModuleBuffer(verifier)) {
    error = "corrupt manifest (the FlatBuffers verifier rejects it)";
    return HASTEN_ERROR_INVALID_MODULE;
  }
  const auto *module = hasten::manifest::GetModule(manifest.data());
  if (module->format_version() != hasten::kManifestFormatVersion) {
    error = "module format version " + std::to_string(module->format_version()) +
            ", but this runtime reads version " + std::to_string(hasten::kManifestFormatVersion) +
            "; recompile the model with a matching hasten";
    return HASTEN_ERROR_INCOMPATIBLE;
  }
  if (!module->entries() || module->entries()->size() == 0) {
    error = "the manifest lists no entry";
    return HASTEN_ERROR_INVALID_MODULE;
  }
  for (const auto *entry : *module->entries()) {
    if (!entry->name() || !entry->symbol() || !entry->inputs() || !entry->outputs()) {
      error = "incomplete entry in manifest";
      return HASTEN_ERROR_INVALID_MODULE;
    }
    // Enum values index tables in the runtime and its tools: out-of-range
    // ones are corruption, not a newer module (the format version is equal).
    if (entry->kind() < hasten::manifest::EntryKind_MIN ||
        entry->kind() > hasten::manifest::EntryKind_MAX) {
      error = "entry '" + entry->name()->str() + "' has an unknown kind in the manifest";
      return HASTEN_ERROR_INVALID_MODULE;
    }
    for (const auto *tensors : {entry->inputs(), entry->outputs()})
      for (const auto *tensor : *tensors)
        if (tensor->role() < hasten::manifest::Role_MIN ||
            tensor->role() > hasten::manifest::Role_MAX ||
            tensor->dtype() < hasten::manifest::DType_MIN ||
            tensor->dtype() > hasten::manifest::DType_MAX) {
          error = "entry '" + entry->name()->str() +
                  "' has a tensor of unknown role or element type in the manifest";
          return HASTEN_ERROR_INVALID_MODULE;
        }
  }
  return HASTEN_OK;
}
