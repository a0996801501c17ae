//===- Generation.cpp - sequences, KV caches, sampling ---------------------===//
//
// Token generation on a compiled decoder: the prefill/decode entries read
// and write a KV cache in place; this file owns those caches (contiguous
// slabs, or blocks in a shared pool with copy-on-write sharing between
// forked sequences), feeds tokens through the entries, and samples.
// Built on the public C API only.
//
//===----------------------------------------------------------------------===//

#include "CudaDriver.h"
#include "RuntimeInternal.h"
#include "Sampling.h"
#include "TokenEmitter.h"
#include "hasten/runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using hasten::runtime::fail;
using hasten::runtime::seconds;

/// What a sequence needs to know about a decoder module: its prefill and
/// decode entries (found by kind), the role of each of their inputs, and
/// the KV cache the manifest describes. Nothing is found by name.
struct DecoderInfo {
  const char *prefillEntry = nullptr, *decodeEntry = nullptr;
  /// Logits for every token given; null when the module was compiled
  /// without it (--no-verify-entry).
  const char *verifyEntry = nullptr;
  /// The model namespace ("" for the main model).
  std::string model;
  int64_t vocab = 0, capacity = 0, blockSize = 0;
  /// The positions the model tells apart (0: unbounded); capacity <= it.
  int64_t positionLimit = 0;
  hasten_dtype dtype = HASTEN_F32;
  size_t elementBytes = 4;
  /// Contiguous: [layers, 2, kv_heads, capacity, head_dim]; paged:
  /// [blocks, layers, 2, kv_heads, block_size, head_dim].
  std::vector<int64_t> storageDims;
  int64_t tableLength = 0;
  uint64_t bytesPerToken = 0;
  /// Per entry, the role of each input in signature order.
  std::vector<hasten_tensor_role> prefillInputs, decodeInputs, verifyInputs;

  bool paged() const { return blockSize > 0; }
  /// Elements in one block (paged) or in the whole slab (contiguous).
  int64_t unitElements() const {
    int64_t n = 1;
    for (size_t d = paged() ? 1 : 0; d < storageDims.size(); ++d)
      n *= storageDims[d];
    return n;
  }
  size_t unitBytes() const { return (size_t)unitElements() * elementBytes; }
};

/// The roles of `entry`'s inputs, checked against what a decoder step
/// takes, and the vocabulary from its one output, the logits.
bool readRoles(const hasten_module *m, const char *entry, std::vector<hasten_tensor_role> &roles,
               DecoderInfo &info) {
  size_t inputs = 0, outputs = 0;
  if (hasten_entry_num_tensors(m, entry, 0, &inputs) != HASTEN_OK ||
      hasten_entry_num_tensors(m, entry, 1, &outputs) != HASTEN_OK || outputs != 1)
    return false;
  for (size_t i = 0; i < inputs; ++i) {
    hasten_tensor_role role;
    if (hasten_signature_role(m, entry, 0, i, &role) != HASTEN_OK)
      return false;
    int64_t dims[8];
    int rank = hasten_signature_dims(m, entry, 0, i, dims, 8);
    bool storage = role == HASTEN_ROLE_KV_CACHE || role == HASTEN_ROLE_KV_BLOCK_POOL;
    if (storage && (rank != (int)info.storageDims.size() ||
                    hasten_signature_dtype(m, entry, 0, i) != info.dtype))
      return false;
    if (role == HASTEN_ROLE_KV_BLOCK_TABLE && (rank != 1 || dims[0] != info.tableLength))
      return false;
    if (role != HASTEN_ROLE_TOKEN_IDS && role != HASTEN_ROLE_PAST_LENGTH && !storage &&
        role != HASTEN_ROLE_KV_BLOCK_TABLE)
      return false;
    roles.push_back(role);
  }
  hasten_tensor_role outputRole;
  int64_t logits[4];
  if (hasten_signature_role(m, entry, 1, 0, &outputRole) != HASTEN_OK ||
      outputRole != HASTEN_ROLE_LOGITS || hasten_signature_dims(m, entry, 1, 0, logits, 4) != 3)
    return false;
  info.vocab = logits[2];
  return true;
}

/// The entry of `kind` in `model`, or null, leaving the thread's last
/// error as it was: an optional entry that is absent is no error.
const char *findOptionalEntry(const hasten_module *m, const char *model,
                              hasten_entry_kind kind) {
  std::string error = hasten_last_error();
  const char *entry = nullptr;
  if (hasten_find_entry(m, model, kind, &entry) != HASTEN_OK)
    entry = nullptr;
  hasten::runtime::failWith(HASTEN_OK, error);
  return entry;
}

/// The decoder of model namespace `model` ("" for the main model).
bool readDecoderInfo(const hasten_module *m, DecoderInfo &info, const char *model = "") {
  hasten_kv_cache_info kv{};
  kv.struct_size = sizeof(kv);
  if (!m || hasten_find_entry(m, model, HASTEN_ENTRY_PREFILL, &info.prefillEntry) != HASTEN_OK ||
      hasten_find_entry(m, model, HASTEN_ENTRY_DECODE, &info.decodeEntry) != HASTEN_OK ||
      hasten_module_kv_cache(m, model, &kv) != HASTEN_OK)
    return false;
  // A module without a verify entry still generates; only verification
  // needs it.
  info.verifyEntry = findOptionalEntry(m, model, HASTEN_ENTRY_VERIFY);
  info.model = model;
  info.dtype = kv.dtype;
  info.elementBytes = hasten_dtype_size(kv.dtype);
  if (kv.layers <= 0 || kv.kv_heads <= 0 || kv.head_dim <= 0 || kv.capacity <= 0 ||
      (kv.paged && (kv.block_size <= 0 || kv.capacity % kv.block_size)) ||
      (kv.dtype != HASTEN_F32 && kv.dtype != HASTEN_BF16 && kv.dtype != HASTEN_F16))
    return false;
  info.capacity = kv.capacity;
  info.positionLimit = kv.position_limit;
  if (kv.paged) {
    info.blockSize = kv.block_size;
    info.tableLength = kv.capacity / kv.block_size;
    info.storageDims = {-1, kv.layers, 2, kv.kv_heads, kv.block_size, kv.head_dim};
  } else {
    info.storageDims = {kv.layers, 2, kv.kv_heads, kv.capacity, kv.head_dim};
  }
  info.bytesPerToken = uint64_t(kv.layers * 2 * kv.kv_heads * kv.head_dim) * info.elementBytes;
  if (!readRoles(m, info.prefillEntry, info.prefillInputs, info) ||
      !readRoles(m, info.decodeEntry, info.decodeInputs, info) ||
      (info.verifyEntry && !readRoles(m, info.verifyEntry, info.verifyInputs, info)))
    return false;
  return info.vocab > 0;
}

/// Whether the module's entries run on a GPU (their caches live there).
bool isCuda(const hasten_module *module) {
  const char *device = hasten_module_device(module);
  return device && std::strcmp(device, "cuda") == 0;
}

/// Zero-filled bytes from calloc: a block this large comes as fresh zero
/// pages from the kernel, so a KV cache costs memory (and time) only as it
/// fills, not all at creation as a zeroed std::vector would. A CUDA
/// module's cache is device memory instead, which its entries write in
/// place.
class ZeroedBytes {
public:
  ZeroedBytes() = default;
  ZeroedBytes(const ZeroedBytes &) = delete;
  ZeroedBytes &operator=(const ZeroedBytes &) = delete;
  ~ZeroedBytes() { release(); }
  /// Replaces the contents with `size` zero bytes (on the GPU when
  /// `onDevice`); false, with the reason in `error`, when there is no room.
  bool assignZeros(size_t size, bool onDevice, std::string &error) {
    release();
    device = onDevice;
    if (device)
      bytes = static_cast<uint8_t *>(hasten::runtime::cudaZeros(size, error));
    else if (!(bytes = static_cast<uint8_t *>(std::calloc(size ? size : 1, 1))))
      error = "out of memory";
    count = bytes ? size : 0;
    return bytes != nullptr;
  }
  /// The same for a CUDA module's KV pool whose first `deviceBytes` (or a
  /// little more, `deviceMapped`) are device memory and the rest pinned host
  /// memory the GPU reads over the bus (hasten::runtime::cudaSpillZeros).
  bool assignSpilling(size_t size, size_t deviceBytes, size_t &deviceMapped,
                      std::string &error) {
    release();
    device = spill = true;
    bytes = static_cast<uint8_t *>(
        hasten::runtime::cudaSpillZeros(size, deviceBytes, deviceMapped, error));
    count = bytes ? size : 0;
    return bytes != nullptr;
  }
  /// Copies `size` bytes from `from` to `to` within these bytes.
  bool copyWithin(size_t to, size_t from, size_t size, std::string &error) {
    if (!device) {
      std::memcpy(bytes + to, bytes + from, size);
      return true;
    }
    return hasten::runtime::cudaCopy(bytes + to, bytes + from, size, error);
  }
  /// Copies `size` bytes at `offset` from `other` (same kind of memory).
  bool copyFrom(const ZeroedBytes &other, size_t offset, size_t size, std::string &error) {
    if (!device) {
      std::memcpy(bytes + offset, other.bytes + offset, size);
      return true;
    }
    return hasten::runtime::cudaCopy(bytes + offset, other.bytes + offset, size, error);
  }
  uint8_t *data() { return bytes; }
  const uint8_t *data() const { return bytes; }
  size_t size() const { return count; }
  bool onDevice() const { return device; }

private:
  void release() {
    if (spill)
      hasten::runtime::cudaSpillFree(bytes);
    else if (device)
      hasten::runtime::cudaFree(bytes);
    else
      std::free(bytes);
    bytes = nullptr;
    count = 0;
    spill = false;
  }
  uint8_t *bytes = nullptr;
  size_t count = 0;
  bool device = false, spill = false;
};

/// Blocks of a paged cache, shared by sequences. Each block has a
/// reference count; a block referenced by several sequences is copied
/// before one of them writes it. A CUDA module's pool is device memory; one
/// that spills (hasten_module_set_kv_device_tokens) keeps its first
/// `residentBlocks` there and the others in pinned host memory the GPU
/// reads over the bus.
struct BlockPool {
  DecoderInfo info;
  int64_t numBlocks = 0;
  /// Blocks [0, residentBlocks) lie wholly in the memory the module's code
  /// runs next to (all of them, unless the pool spills).
  int64_t residentBlocks = 0;
  bool spills = false;
  /// Elements of the cache's element type (f32, bf16 or f16).
  ZeroedBytes storage;
  std::vector<int32_t> refs;
  /// Free blocks, resident and spilled (each taken from the back: lowest
  /// index first).
  std::vector<int32_t> freeResident, freeSpilled;
  /// Older blocks moved to host memory to make room for newer ones.
  int64_t movedOut = 0;
  std::mutex mutex;

  bool resident(int32_t block) const { return block < residentBlocks; }
  int64_t freeBlocks() {
    std::lock_guard<std::mutex> lock(mutex);
    return (int64_t)(freeResident.size() + freeSpilled.size());
  }
  static int32_t takeFrom(std::vector<int32_t> &list) {
    if (list.empty())
      return -1;
    int32_t block = list.back();
    list.pop_back();
    return block;
  }
  /// A fresh block, resident if one is free, or -1.
  int32_t take() {
    int32_t block = takeFrom(freeResident);
    if (block < 0)
      block = takeFrom(freeSpilled);
    if (block >= 0)
      refs[block] = 1;
    return block;
  }
  /// A fresh spilled block, or -1.
  int32_t takeSpilled() {
    int32_t block = takeFrom(freeSpilled);
    if (block >= 0)
      refs[block] = 1;
    return block;
  }
  void release(int32_t block) {
    if (--refs[block] == 0)
      (resident(block) ? freeResident : freeSpilled).push_back(block);
  }
  /// Copies block `from` into block `to`.
  bool copyBlock(int32_t to, int32_t from, std::string &error) {
    size_t unit = info.unitBytes();
    return storage.copyWithin((size_t)to * unit, (size_t)from * unit, unit, error);
  }
};

} // namespace

struct hasten_kv_pool {
  std::shared_ptr<BlockPool> pool;
};

struct hasten_sequence {
  hasten_module *module = nullptr;
  DecoderInfo info;
  std::vector<int64_t> tokens;
  /// Logits after the last token, for generation to continue from.
  std::vector<float> lastLogits;
  /// Contiguous cache, in the cache's element type.
  ZeroedBytes cache;
  /// Paged cache: the pool and this sequence's block table (the first
  /// ceil(length / block_size) entries are its blocks).
  std::shared_ptr<BlockPool> pool;
  std::vector<int32_t> table;
  int64_t blocksHeld = 0;

  int64_t length() const { return (int64_t)tokens.size(); }

  /// Returns the blocks after the first `keep` to the pool; the caller
  /// holds the pool's mutex.
  void releaseBlocksFrom(int64_t keep) {
    for (int64_t b = keep; b < blocksHeld; ++b)
      pool->release(table[b]);
    blocksHeld = std::min(blocksHeld, keep);
  }
};

static hasten_status createPool(hasten_module *module, const DecoderInfo &info,
                                int64_t maxTokens, std::shared_ptr<BlockPool> &out) {
  auto pool = std::make_shared<BlockPool>();
  pool->info = info;
  pool->numBlocks = (maxTokens + info.blockSize - 1) / info.blockSize;
  if (pool->numBlocks <= 0 || pool->numBlocks > INT32_MAX)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "a KV pool of %lld tokens is not possible",
                (long long)maxTokens);
  std::string error;
  size_t unit = info.unitBytes(), bytes = (size_t)pool->numBlocks * unit;
  // A CUDA module's device budget, in whole blocks; the rest spills.
  int64_t deviceTokens = hasten::runtime::kvDeviceTokens(module);
  int64_t deviceBlocks = deviceTokens < 0 ? pool->numBlocks : deviceTokens / info.blockSize;
  pool->spills = isCuda(module) && deviceBlocks < pool->numBlocks;
  pool->residentBlocks = pool->numBlocks;
  bool ok;
  if (pool->spills) {
    size_t deviceMapped = 0;
    ok = pool->storage.assignSpilling(bytes, (size_t)deviceBlocks * unit, deviceMapped, error);
    pool->residentBlocks = std::min<int64_t>(pool->numBlocks, (int64_t)(deviceMapped / unit));
    pool->spills = pool->residentBlocks < pool->numBlocks;
  } else {
    ok = pool->storage.assignZeros(bytes, isCuda(module), error);
  }
  if (!ok)
    return fail(HASTEN_ERROR_OUT_OF_MEMORY,
                "no room for a KV pool of %lld blocks (%llu bytes%s): %s",
                (long long)pool->numBlocks, (unsigned long long)bytes,
                pool->spills ? ", spilling to host memory" : "", error.c_str());
  pool->refs.assign(pool->numBlocks, 0);
  for (int64_t b = pool->numBlocks - 1; b >= 0; --b)
    (pool->resident((int32_t)b) ? pool->freeResident : pool->freeSpilled)
        .push_back((int32_t)b);
  out = std::move(pool);
  return HASTEN_OK;
}

/// A block for position block `index` of `seq` in this append (the blocks
/// from `heldBefore` on are new in it, none written yet), placed so that a
/// spilling pool keeps a sequence's newest blocks in device memory: a free
/// resident block; else the resident block of an earlier new block (which
/// takes a spilled one: nothing to copy); else the sequence's oldest
/// resident block that only it holds, moved to a spilled block; else a
/// spilled block. -1 when none is free; -2 (with `error`) when a move
/// failed. The caller holds the pool's mutex.
static int32_t placeBlock(BlockPool &pool, hasten_sequence &seq, int64_t index,
                          int64_t heldBefore, std::string &error) {
  if (!pool.spills || !pool.freeResident.empty())
    return pool.take();
  for (int64_t j = heldBefore; j < index; ++j)
    if (pool.resident(seq.table[j])) {
      int32_t spilled = pool.takeSpilled();
      if (spilled < 0)
        break;
      int32_t block = seq.table[j];
      seq.table[j] = spilled;
      return block;
    }
  for (int64_t j = 0; j < heldBefore; ++j) {
    int32_t old = seq.table[j];
    if (!pool.resident(old) || pool.refs[old] != 1)
      continue;
    int32_t spilled = pool.takeSpilled();
    if (spilled < 0)
      break;
    if (!pool.copyBlock(spilled, old, error)) {
      pool.release(spilled);
      return -2;
    }
    seq.table[j] = spilled;
    ++pool.movedOut;
    return old; // still referenced once: now by position `index`
  }
  return pool.take();
}

extern "C" {

int hasten_module_is_decoder(const hasten_module *module) {
  DecoderInfo info;
  return readDecoderInfo(module, info);
}

int64_t hasten_module_vocab_size(const hasten_module *module) {
  DecoderInfo info;
  return readDecoderInfo(module, info) ? info.vocab : 0;
}

int64_t hasten_module_kv_capacity(const hasten_module *module) {
  DecoderInfo info;
  return readDecoderInfo(module, info) ? info.capacity : 0;
}

int64_t hasten_module_kv_block_size(const hasten_module *module) {
  DecoderInfo info;
  return readDecoderInfo(module, info) ? info.blockSize : 0;
}

uint64_t hasten_module_kv_bytes_per_token(const hasten_module *module) {
  DecoderInfo info;
  return readDecoderInfo(module, info) ? info.bytesPerToken : 0;
}

hasten_status hasten_kv_pool_create(hasten_module *module, int64_t maxTokens,
                                    hasten_kv_pool **out) {
  if (!out)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_kv_pool_create: null out");
  *out = nullptr;
  DecoderInfo info;
  if (!readDecoderInfo(module, info))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_kv_pool_create: the module has no prefill/decode entries");
  if (!info.paged())
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_kv_pool_create: the module's KV cache is contiguous; compile "
                "with --kv-block-size for a paged one");
  auto pool = std::make_unique<hasten_kv_pool>();
  if (hasten_status status = createPool(module, info, maxTokens, pool->pool))
    return status;
  *out = pool.release();
  return HASTEN_OK;
}

void hasten_kv_pool_free(hasten_kv_pool *pool) { delete pool; }

int64_t hasten_kv_pool_num_blocks(const hasten_kv_pool *pool) {
  return pool ? pool->pool->numBlocks : 0;
}

hasten_status hasten_module_set_kv_device_tokens(hasten_module *module, int64_t tokens) {
  DecoderInfo info;
  if (!module || !readDecoderInfo(module, info) || !info.paged() || !isCuda(module))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_module_set_kv_device_tokens: only a CUDA module with a paged KV cache "
                "(--target=cuda --kv-block-size) keeps part of it in host memory");
  if (tokens < -1)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_module_set_kv_device_tokens: %lld tokens (-1 for all of them)",
                (long long)tokens);
  hasten::runtime::setKVDeviceTokens(module, tokens);
  return HASTEN_OK;
}

int64_t hasten_module_kv_device_tokens(const hasten_module *module) {
  return module && isCuda(module) ? hasten::runtime::kvDeviceTokens(module) : -1;
}

/// Where `pool`'s blocks are; the caller checked `out`.
static void describePlacement(BlockPool &pool, bool cuda, hasten_kv_placement &out) {
  std::lock_guard<std::mutex> lock(pool.mutex);
  out = hasten_kv_placement{sizeof(hasten_kv_placement), 0, 0, 0, 0, pool.movedOut};
  for (int64_t b = 0; b < pool.numBlocks; ++b) {
    bool onDevice = cuda && pool.resident((int32_t)b);
    (onDevice ? out.device_blocks : out.host_blocks) += 1;
    if (pool.refs[b] > 0)
      (onDevice ? out.device_blocks_used : out.host_blocks_used) += 1;
  }
}

hasten_status hasten_kv_pool_placement(const hasten_kv_pool *pool,
                                       hasten_kv_placement *placement) {
  if (!pool || !placement || placement->struct_size < sizeof(hasten_kv_placement))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_kv_pool_placement: null pool or placement, or struct_size unset");
  describePlacement(*pool->pool, pool->pool->storage.onDevice(), *placement);
  return HASTEN_OK;
}

hasten_status hasten_sequence_kv_placement(const hasten_sequence *seq,
                                           hasten_kv_placement *placement) {
  if (!seq || !placement || placement->struct_size < sizeof(hasten_kv_placement))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_sequence_kv_placement: null sequence or placement, or struct_size "
                "unset");
  if (!seq->pool)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_sequence_kv_placement: the sequence's KV cache is contiguous, not in "
                "a pool");
  describePlacement(*seq->pool, seq->pool->storage.onDevice(), *placement);
  return HASTEN_OK;
}

int hasten_sequence_kv_block_on_device(const hasten_sequence *seq, int64_t index) {
  if (!seq || !seq->pool || index < 0 || index >= seq->blocksHeld) {
    fail(HASTEN_ERROR_INVALID_ARGUMENT,
         "hasten_sequence_kv_block_on_device: no paged sequence, or it holds no block %lld",
         (long long)index);
    return -1;
  }
  BlockPool &pool = *seq->pool;
  std::lock_guard<std::mutex> lock(pool.mutex);
  return pool.storage.onDevice() && pool.resident(seq->table[index]) ? 1 : 0;
}

int64_t hasten_kv_pool_free_blocks(const hasten_kv_pool *pool) {
  return pool ? pool->pool->freeBlocks() : 0;
}

hasten_status hasten_sequence_create(hasten_module *module, hasten_kv_pool *pool,
                                     hasten_sequence **out) {
  return hasten_sequence_create_for_model(module, "", pool, out);
}

hasten_status hasten_sequence_create_for_model(hasten_module *module, const char *model,
                                               hasten_kv_pool *pool, hasten_sequence **out) {
  if (!out)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_sequence_create: null out");
  *out = nullptr;
  if (!model)
    model = "";
  auto seq = std::make_unique<hasten_sequence>();
  if (!readDecoderInfo(module, seq->info, model))
    return *model ? fail(HASTEN_ERROR_INVALID_ARGUMENT,
                         "hasten_sequence_create: the module has no decoder in model "
                         "namespace '%s' (compile one with hasten-compile --draft)",
                         model)
                  : fail(HASTEN_ERROR_INVALID_ARGUMENT,
                         "hasten_sequence_create: the module has no prefill/decode entries "
                         "(compile a decoder with input_ids and past_key_values to get them)");
  seq->module = module;
  if (seq->info.paged()) {
    if (pool && pool->pool->info.prefillEntry != seq->info.prefillEntry)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "hasten_sequence_create: the pool belongs to another model's cache");
    if (pool)
      seq->pool = pool->pool;
    else if (hasten_status status =
                 createPool(module, seq->info, seq->info.capacity, seq->pool))
      return status;
    seq->table.assign(seq->info.tableLength, 0);
  } else {
    if (pool)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "hasten_sequence_create: a pool was given but the module's KV cache is "
                  "contiguous");
    std::string error;
    if (!seq->cache.assignZeros(seq->info.unitBytes(), isCuda(module), error))
      return fail(HASTEN_ERROR_OUT_OF_MEMORY,
                  "hasten_sequence_create: no room for a KV cache of %llu bytes: %s",
                  (unsigned long long)seq->info.unitBytes(), error.c_str());
  }
  *out = seq.release();
  return HASTEN_OK;
}

hasten_status hasten_sequence_truncate(hasten_sequence *seq, int64_t length) {
  if (!seq)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_sequence_truncate: null sequence");
  if (length < 0 || length > seq->length())
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_sequence_truncate: length %lld is outside [0, %lld]",
                (long long)length, (long long)seq->length());
  seq->tokens.resize(length);
  seq->lastLogits.clear();
  if (seq->pool) {
    int64_t keep = (length + seq->info.blockSize - 1) / seq->info.blockSize;
    std::lock_guard<std::mutex> lock(seq->pool->mutex);
    seq->releaseBlocksFrom(keep);
  }
  return HASTEN_OK;
}

void hasten_sequence_free(hasten_sequence *seq) {
  if (!seq)
    return;
  hasten_sequence_truncate(seq, 0);
  delete seq;
}

hasten_status hasten_sequence_reset(hasten_sequence *seq) {
  return hasten_sequence_truncate(seq, 0);
}

hasten_module *hasten_sequence_module(const hasten_sequence *sequence) {
  return sequence ? sequence->module : nullptr;
}

int64_t hasten_sequence_length(const hasten_sequence *seq) { return seq ? seq->length() : 0; }

const int64_t *hasten_sequence_tokens(const hasten_sequence *seq) {
  return seq ? seq->tokens.data() : nullptr;
}

hasten_status hasten_sequence_fork(const hasten_sequence *seq, hasten_sequence **out) {
  if (!seq || !out)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_sequence_fork: null argument");
  auto copy = std::make_unique<hasten_sequence>();
  copy->module = seq->module;
  copy->info = seq->info;
  copy->tokens = seq->tokens;
  copy->lastLogits = seq->lastLogits;
  if (seq->pool) {
    copy->pool = seq->pool;
    copy->table = seq->table;
    copy->blocksHeld = seq->blocksHeld;
    std::lock_guard<std::mutex> lock(seq->pool->mutex);
    for (int64_t b = 0; b < seq->blocksHeld; ++b)
      ++seq->pool->refs[seq->table[b]];
  } else {
    // Only the rows holding tokens are copied.
    const std::vector<int64_t> &d = seq->info.storageDims;
    std::string error;
    if (!copy->cache.assignZeros(seq->cache.size(), seq->cache.onDevice(), error))
      return fail(HASTEN_ERROR_OUT_OF_MEMORY,
                  "hasten_sequence_fork: no room for a KV cache of %zu bytes: %s",
                  seq->cache.size(), error.c_str());
    int64_t rows = d[0] * d[1] * d[2], capacity = d[3], dim = d[4];
    size_t element = seq->info.elementBytes;
    for (int64_t r = 0; r < rows; ++r)
      if (!copy->cache.copyFrom(seq->cache, r * capacity * dim * element,
                                seq->length() * dim * element, error))
        return fail(HASTEN_ERROR_RUNTIME, "hasten_sequence_fork: %s", error.c_str());
  }
  *out = copy.release();
  return HASTEN_OK;
}

} // extern "C"

/// Paged: blocks for positions [past, total) of `seq`; a shared block about
/// to be written is copied first. On failure the sequence holds the blocks
/// it held before. Contiguous: nothing to do.
static hasten_status reserveBlocks(hasten_sequence &seq, int64_t past, int64_t total) {
  if (!seq.pool)
    return HASTEN_OK;
  const DecoderInfo &info = seq.info;
  BlockPool &pool = *seq.pool;
  std::lock_guard<std::mutex> lock(pool.mutex);
  int64_t heldBefore = seq.blocksHeld;
  int64_t firstWritten = past / info.blockSize;
  int64_t needed = (total + info.blockSize - 1) / info.blockSize;
  if (firstWritten < seq.blocksHeld && pool.refs[seq.table[firstWritten]] > 1) {
    int32_t fresh = pool.take();
    if (fresh < 0)
      return fail(HASTEN_ERROR_OUT_OF_MEMORY, "KV block pool exhausted: all %lld blocks are in use",
                  (long long)pool.numBlocks);
    std::string error;
    if (!pool.copyBlock(fresh, seq.table[firstWritten], error)) {
      pool.release(fresh);
      return fail(HASTEN_ERROR_RUNTIME, "copying a shared KV block: %s", error.c_str());
    }
    pool.release(seq.table[firstWritten]);
    seq.table[firstWritten] = fresh;
  }
  for (int64_t b = seq.blocksHeld; b < needed; ++b) {
    std::string error;
    int32_t fresh = placeBlock(pool, seq, b, heldBefore, error);
    if (fresh < 0) {
      seq.releaseBlocksFrom(heldBefore);
      if (fresh == -2)
        return fail(HASTEN_ERROR_RUNTIME, "moving a KV block to host memory: %s", error.c_str());
      return fail(HASTEN_ERROR_OUT_OF_MEMORY,
                  "KV block pool exhausted: all %lld blocks of %lld tokens are in use",
                  (long long)pool.numBlocks, (long long)info.blockSize);
    }
    seq.table[b] = fresh;
    seq.blocksHeld = b + 1;
  }
  return HASTEN_OK;
}

/// Paged: returns the blocks past the first `length` tokens to the pool, as
/// a truncate does (blocks past a sequence's length are never held, so that
/// only the block its next write starts in can be shared).
static void keepBlocksFor(hasten_sequence &seq, int64_t length) {
  if (!seq.pool)
    return;
  std::lock_guard<std::mutex> lock(seq.pool->mutex);
  seq.releaseBlocksFrom((length + seq.info.blockSize - 1) / seq.info.blockSize);
}

/// A sequence's cache as entry inputs: its storage (the contiguous cache,
/// or the pool's blocks) and, paged, its block table.
struct CacheTensors {
  hasten_tensor *storage = nullptr, *table = nullptr;
  explicit CacheTensors(hasten_sequence &seq) {
    const DecoderInfo &info = seq.info;
    std::vector<int64_t> dims = info.storageDims;
    uint8_t *data = seq.pool ? seq.pool->storage.data() : seq.cache.data();
    if (seq.pool)
      dims[0] = seq.pool->numBlocks;
    if (seq.pool ? seq.pool->storage.onDevice() : seq.cache.onDevice())
      hasten::runtime::wrapDeviceTensor(info.dtype, (int)dims.size(), dims.data(), data, &storage);
    else
      hasten_tensor_wrap(info.dtype, (int)dims.size(), dims.data(), data, &storage);
    int64_t tableDims[1] = {info.tableLength};
    if (seq.pool)
      hasten_tensor_wrap(HASTEN_I32, 1, tableDims, seq.table.data(), &table);
  }
  ~CacheTensors() {
    hasten_tensor_free(storage);
    hasten_tensor_free(table);
  }
  CacheTensors(const CacheTensors &) = delete;
  CacheTensors &operator=(const CacheTensors &) = delete;
};

/// Runs `count` tokens through the sequence's decoder and appends them:
/// the decode entry for one token, else prefill, or verify when every
/// token's logits are wanted (`allLogits`: count x vocab floats written to
/// `logits`; otherwise the last token's vocab floats, when not null).
static hasten_status runTokens(const char *caller, hasten_sequence *seq, const int64_t *tokens,
                               size_t count, bool allLogits, float *logits) {
  if (!seq || (!tokens && count))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: null argument", caller);
  if (count == 0)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: no tokens", caller);
  const DecoderInfo &info = seq->info;
  if (allLogits && count > 1 && !info.verifyEntry)
    return fail(HASTEN_ERROR_NOT_FOUND,
                "%s: the module has no verify entry (it was compiled with "
                "--no-verify-entry)",
                caller);
  int64_t past = seq->length(), total = past + (int64_t)count;
  if (total > info.capacity) {
    // A larger cache helps only below the positions the model knows.
    bool atLimit = info.positionLimit > 0 && info.capacity >= info.positionLimit;
    return fail(HASTEN_ERROR_OUT_OF_MEMORY,
                "KV cache full: the sequence holds %lld tokens and %zu more would exceed "
                "its capacity of %lld (%s)",
                (long long)past, count, (long long)info.capacity,
                atLimit ? "all the positions the model's position table holds: it cannot "
                          "attend further"
                        : "compile with a larger --kv-capacity or --kv-budget");
  }
  for (size_t i = 0; i < count; ++i)
    if (tokens[i] < 0 || tokens[i] >= info.vocab)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "token %lld (position %lld) is outside the vocabulary [0, %lld)",
                  (long long)tokens[i], (long long)(past + i), (long long)info.vocab);

  int64_t heldBefore = seq->blocksHeld;
  if (hasten_status status = reserveBlocks(*seq, past, total))
    return status;

  std::vector<int64_t> ids(tokens, tokens + count);
  int64_t pastValue = past;
  int64_t idsDims[2] = {1, (int64_t)count};
  hasten_tensor *idsT = nullptr, *pastT = nullptr;
  hasten_tensor_wrap(HASTEN_I64, 2, idsDims, ids.data(), &idsT);
  hasten_tensor_wrap(HASTEN_I64, 0, nullptr, &pastValue, &pastT);
  auto cacheT = std::make_unique<CacheTensors>(*seq);
  const char *entry = count == 1 ? info.decodeEntry
                      : allLogits ? info.verifyEntry
                                  : info.prefillEntry;
  const std::vector<hasten_tensor_role> &roles = count == 1 ? info.decodeInputs
                                                 : allLogits ? info.verifyInputs
                                                             : info.prefillInputs;
  std::vector<hasten_tensor *> inputs;
  for (hasten_tensor_role role : roles)
    inputs.push_back(role == HASTEN_ROLE_TOKEN_IDS        ? idsT
                     : role == HASTEN_ROLE_PAST_LENGTH    ? pastT
                     : role == HASTEN_ROLE_KV_BLOCK_TABLE ? cacheT->table
                                                          : cacheT->storage);
  hasten_tensor *out = nullptr;
  hasten_status status =
      hasten_run(seq->module, entry, inputs.data(), inputs.size(), &out, 1);
  hasten_tensor_free(idsT);
  hasten_tensor_free(pastT);
  cacheT.reset();
  if (status != HASTEN_OK) {
    if (seq->pool) {
      std::lock_guard<std::mutex> lock(seq->pool->mutex);
      seq->releaseBlocksFrom(heldBefore);
    }
    return status;
  }
  const float *values = static_cast<const float *>(hasten_tensor_data(out));
  size_t rows = hasten_tensor_num_elements(out) / info.vocab;
  seq->lastLogits.assign(values + (rows - 1) * info.vocab, values + rows * info.vocab);
  if (logits)
    std::memcpy(logits, allLogits ? values : seq->lastLogits.data(),
                (allLogits ? rows : 1) * info.vocab * sizeof(float));
  hasten_tensor_free(out);
  seq->tokens.insert(seq->tokens.end(), tokens, tokens + count);
  return HASTEN_OK;
}

std::vector<float> &hasten::runtime::lastLogits(hasten_sequence *seq) { return seq->lastLogits; }

extern "C" {

hasten_status hasten_sequence_append(hasten_sequence *seq, const int64_t *tokens, size_t count,
                                     float *logits) {
  return runTokens("hasten_sequence_append", seq, tokens, count, false, logits);
}

hasten_status hasten_sequence_verify(hasten_sequence *seq, const int64_t *tokens, size_t count,
                                     float *logits) {
  return runTokens("hasten_sequence_verify", seq, tokens, count, true, logits);
}

int hasten_sequence_can_verify(const hasten_sequence *seq) {
  return seq && seq->info.verifyEntry != nullptr;
}

int64_t hasten_sequence_capacity(const hasten_sequence *seq) {
  return seq ? seq->info.capacity : 0;
}

int64_t hasten_sequence_vocab_size(const hasten_sequence *seq) {
  return seq ? seq->info.vocab : 0;
}

hasten_status hasten_module_prepare(hasten_module *module) {
  // Every decoder of the module (the main model and a draft), each through
  // a short prefill, a verification and a decode step on a private
  // sequence, which packs every weight those entries use; the tokens are
  // token 0, always valid.
  std::vector<std::string> models;
  for (size_t i = 0; i < hasten_module_num_entries(module); ++i) {
    hasten_entry_kind kind;
    const char *model = nullptr;
    if (hasten_entry_info(module, hasten_module_entry_name(module, i), &kind, &model) ==
            HASTEN_OK &&
        kind == HASTEN_ENTRY_PREFILL)
      models.push_back(model ? model : "");
  }
  for (const std::string &model : models) {
    DecoderInfo info;
    if (!readDecoderInfo(module, info, model.c_str()))
      continue; // nothing to warm: the first run packs what it uses
    hasten_sequence *seq = nullptr;
    if (hasten_status status =
            hasten_sequence_create_for_model(module, model.c_str(), nullptr, &seq))
      return status;
    int64_t tokens[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t prefill = (size_t)std::min<int64_t>(8, info.capacity - 3);
    hasten_status status = prefill >= 2 ? hasten_sequence_append(seq, tokens, prefill, nullptr)
                                        : HASTEN_OK;
    if (status == HASTEN_OK && info.verifyEntry && info.capacity >= 4)
      status = runTokens("hasten_module_prepare", seq, tokens, 2, true, nullptr);
    if (status == HASTEN_OK)
      status = hasten_sequence_append(seq, tokens, 1, nullptr);
    hasten_sequence_free(seq);
    if (status != HASTEN_OK)
      return status;
  }
  return HASTEN_OK;
}

void hasten_generate_options_init(hasten_generate_options *options) {
  if (!options)
    return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->max_new_tokens = 32;
  options->top_p = 1.0f;
}

} // extern "C"

using hasten::runtime::checkGenerateArguments;
using hasten::runtime::Random;
using hasten::runtime::sampleToken;
using hasten::runtime::TokenEmitter;

extern "C" hasten_status hasten_sample(const float *logits, int64_t vocab,
                                       const hasten_generate_options *options,
                                       uint64_t *state, int64_t *token) {
  if (!logits || vocab <= 0 || !options || !state || !token)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_sample: null or empty argument");
  if (options->struct_size < sizeof(hasten_generate_options))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_sample: options->struct_size is %zu, expected %zu (initialize the "
                "options with hasten_generate_options_init)",
                options->struct_size, sizeof(hasten_generate_options));
  if (options->top_k < 0 || options->top_p < 0.0f || std::isnan(options->temperature))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_sample: top_k and top_p must not be negative");
  Random random{*state};
  *token = sampleToken(logits, vocab, *options, random);
  *state = random.state;
  return HASTEN_OK;
}

extern "C" hasten_status hasten_generate(hasten_sequence *seq, const int64_t *prompt,
                                         size_t promptLength,
                                         const hasten_generate_options *options,
                                         int64_t *generated, hasten_generate_stats *stats) {
  hasten_generate_stats local{};
  hasten_generate_stats &st = stats ? *stats : local;
  if (hasten_status status = checkGenerateArguments("hasten_generate", options, stats))
    return status;
  st.struct_size = sizeof(st);
  if (!seq)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_generate: null sequence");
  hasten_generate_options defaults;
  hasten_generate_options_init(&defaults);
  const hasten_generate_options &o = options ? *options : defaults;
  st.prompt_tokens = (int64_t)promptLength;
  TokenEmitter emitter{o, generated, st};
  if (promptLength > 0) {
    if (hasten_status status = hasten_sequence_append(seq, prompt, promptLength, nullptr))
      return status;
  } else if (seq->lastLogits.empty()) {
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_generate: an empty prompt needs a sequence that was just fed tokens");
  }
  st.prefill_seconds = seconds() - emitter.start;
  Random random{o.seed};
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    int64_t token = sampleToken(seq->lastLogits.data(), (int64_t)seq->lastLogits.size(), o,
                                random);
    if (emitter.emit(token))
      break;
    // The next token's logits; the last generated token is not run.
    if (hasten_status status = hasten_sequence_append(seq, &token, 1, nullptr))
      return emitter.finish(status);
  }
  return emitter.finish(HASTEN_OK);
}

namespace {

/// The module's fused spec_step, when `target` (the main model) and
/// `draft` (its "draft" namespace) of one module can run it. K is read off
/// its accepted_tokens result ([1, K + 1]); a step that takes a temperature
/// and uniforms can sample; one that takes block tables runs on paged
/// sequences.
struct SpecStep {
  const char *entry = nullptr;
  int64_t k = 0;
  bool samples = false;
  std::vector<hasten_tensor_role> inputs, outputs;
};

bool findSpecStep(const hasten_sequence *target, const hasten_sequence *draft, SpecStep &step) {
  if (!target || !draft || target->module != draft->module || !target->info.model.empty() ||
      draft->info.model != "draft")
    return false;
  const hasten_module *m = target->module;
  step.entry = findOptionalEntry(m, "", HASTEN_ENTRY_SPEC_STEP);
  size_t inputs = 0, outputs = 0;
  if (!step.entry || hasten_entry_num_tensors(m, step.entry, 0, &inputs) != HASTEN_OK ||
      hasten_entry_num_tensors(m, step.entry, 1, &outputs) != HASTEN_OK)
    return false;
  for (int isOutput = 0; isOutput < 2; ++isOutput)
    for (size_t i = 0; i < (isOutput ? outputs : inputs); ++i) {
      hasten_tensor_role role;
      if (hasten_signature_role(m, step.entry, isOutput, i, &role) != HASTEN_OK)
        return false;
      (isOutput ? step.outputs : step.inputs).push_back(role);
      int64_t dims[4];
      if (isOutput && role == HASTEN_ROLE_ACCEPTED_TOKENS &&
          hasten_signature_dims(m, step.entry, 1, i, dims, 4) == 2)
        step.k = dims[1] - 1;
    }
  auto takes = [&](hasten_tensor_role role) {
    return std::count(step.inputs.begin(), step.inputs.end(), role) == 1;
  };
  step.samples = takes(HASTEN_ROLE_TEMPERATURE) && takes(HASTEN_ROLE_UNIFORMS);
  bool paged = target->pool != nullptr, draftPaged = draft->pool != nullptr;
  size_t expected = 5 + (step.samples ? 2 : 0) + (paged ? 1 : 0) + (draftPaged ? 1 : 0);
  return step.k > 0 && step.inputs.size() == expected && step.outputs.size() == 3 &&
         takes(HASTEN_ROLE_TOKEN_IDS) && takes(HASTEN_ROLE_PAST_LENGTH) &&
         takes(HASTEN_ROLE_DRAFT_PAST_LENGTH) && takes(HASTEN_ROLE_DRAFT_KV_CACHE) &&
         takes(paged ? HASTEN_ROLE_KV_BLOCK_POOL : HASTEN_ROLE_KV_CACHE) &&
         (!paged || takes(HASTEN_ROLE_KV_BLOCK_TABLE)) &&
         (!draftPaged || takes(HASTEN_ROLE_DRAFT_KV_BLOCK_TABLE));
}

} // namespace

int64_t hasten::runtime::fusedSpeculationK(const hasten_sequence *target,
                                           const hasten_sequence *draft, bool sampled) {
  SpecStep step;
  return findSpecStep(target, draft, step) && (step.samples || !sampled) ? step.k : 0;
}

hasten_status hasten::runtime::runFusedSpeculation(hasten_sequence *target,
                                                   hasten_sequence *draft, int64_t pending,
                                                   float temperature, const float *uniforms,
                                                   std::vector<int64_t> &emitted) {
  SpecStep step;
  if (!findSpecStep(target, draft, step))
    return fail(HASTEN_ERROR_NOT_FOUND, "the module has no spec_step entry for this pair");
  if (temperature > 0.0f && (!step.samples || !uniforms))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "this module's spec_step is greedy only (compiled before sampling moved "
                "inside it): recompile it to sample");
  if (draft->tokens != target->tokens)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "spec_step needs the draft to hold the target's tokens");
  if (target->length() + step.k + 1 > target->info.capacity ||
      draft->length() + step.k > draft->info.capacity)
    return fail(HASTEN_ERROR_OUT_OF_MEMORY, "KV cache full: no room for a spec_step of %lld",
                (long long)step.k);
  int64_t token = pending, targetPast = target->length(), draftPast = draft->length();
  // Paged: blocks for every position the step may write; those past the
  // new lengths go back afterwards.
  if (hasten_status status = reserveBlocks(*target, targetPast, targetPast + step.k + 1))
    return status;
  if (hasten_status status = reserveBlocks(*draft, draftPast, draftPast + step.k)) {
    keepBlocksFor(*target, targetPast);
    return status;
  }
  int64_t tokenDims[2] = {1, 1};
  hasten_tensor *tokenT = nullptr, *targetPastT = nullptr, *draftPastT = nullptr;
  hasten_tensor_wrap(HASTEN_I64, 2, tokenDims, &token, &tokenT);
  hasten_tensor_wrap(HASTEN_I64, 0, nullptr, &targetPast, &targetPastT);
  hasten_tensor_wrap(HASTEN_I64, 0, nullptr, &draftPast, &draftPastT);
  auto targetCacheT = std::make_unique<CacheTensors>(*target);
  auto draftCacheT = std::make_unique<CacheTensors>(*draft);
  // A greedy step ignores the uniforms; they are still an input.
  std::vector<float> noDraws(2 * step.k + 1, 0.0f);
  int64_t drawDims[1] = {2 * step.k + 1};
  hasten_tensor *temperatureT = nullptr, *uniformsT = nullptr;
  hasten_tensor_wrap(HASTEN_F32, 0, nullptr, &temperature, &temperatureT);
  hasten_tensor_wrap(HASTEN_F32, 1, drawDims,
                     const_cast<float *>(temperature > 0.0f ? uniforms : noDraws.data()),
                     &uniformsT);
  std::vector<hasten_tensor *> inputs;
  for (hasten_tensor_role role : step.inputs)
    inputs.push_back(role == HASTEN_ROLE_TOKEN_IDS              ? tokenT
                     : role == HASTEN_ROLE_KV_CACHE             ? targetCacheT->storage
                     : role == HASTEN_ROLE_KV_BLOCK_POOL        ? targetCacheT->storage
                     : role == HASTEN_ROLE_KV_BLOCK_TABLE       ? targetCacheT->table
                     : role == HASTEN_ROLE_PAST_LENGTH          ? targetPastT
                     : role == HASTEN_ROLE_DRAFT_KV_CACHE       ? draftCacheT->storage
                     : role == HASTEN_ROLE_DRAFT_KV_BLOCK_TABLE ? draftCacheT->table
                     : role == HASTEN_ROLE_DRAFT_PAST_LENGTH    ? draftPastT
                     : role == HASTEN_ROLE_TEMPERATURE          ? temperatureT
                     : role == HASTEN_ROLE_UNIFORMS             ? uniformsT
                                                                : nullptr);
  hasten_tensor *outputs[3] = {nullptr, nullptr, nullptr};
  hasten_status status =
      hasten_run(target->module, step.entry, inputs.data(), inputs.size(), outputs, 3);
  for (hasten_tensor *t : {tokenT, targetPastT, draftPastT, temperatureT, uniformsT})
    hasten_tensor_free(t);
  targetCacheT.reset();
  draftCacheT.reset();
  if (status != HASTEN_OK) {
    keepBlocksFor(*target, targetPast);
    keepBlocksFor(*draft, draftPast);
    return status;
  }
  const int64_t *tokens = nullptr;
  int64_t newTarget = -1, newDraft = -1;
  for (size_t i = 0; i < 3; ++i) {
    const auto *data = static_cast<const int64_t *>(hasten_tensor_data(outputs[i]));
    if (step.outputs[i] == HASTEN_ROLE_ACCEPTED_TOKENS)
      tokens = data;
    else if (step.outputs[i] == HASTEN_ROLE_PAST_LENGTH)
      newTarget = *data;
    else if (step.outputs[i] == HASTEN_ROLE_DRAFT_PAST_LENGTH)
      newDraft = *data;
  }
  emitted.clear();
  for (int64_t i = 0; tokens && i <= step.k && tokens[i] >= 0; ++i)
    emitted.push_back(tokens[i]);
  // The tokens and the lengths must agree: the target keeps the pending
  // token and the accepted proposals, the draft what it ran of them.
  int64_t kept = (int64_t)emitted.size();
  bool consistent = kept >= 1 && newTarget == targetPast + kept &&
                    newDraft == draftPast + std::min(kept, step.k);
  for (hasten_tensor *t : outputs)
    hasten_tensor_free(t);
  if (!consistent) {
    keepBlocksFor(*target, targetPast);
    keepBlocksFor(*draft, draftPast);
    return fail(HASTEN_ERROR_RUNTIME,
                "spec_step returned %lld tokens with lengths %lld and %lld, which disagree",
                (long long)kept, (long long)newTarget, (long long)newDraft);
  }
  keepBlocksFor(*target, newTarget);
  keepBlocksFor(*draft, newDraft);
  target->tokens.push_back(pending);
  target->tokens.insert(target->tokens.end(), emitted.begin(), emitted.end() - 1);
  draft->tokens.assign(target->tokens.begin(), target->tokens.begin() + newDraft);
  target->lastLogits.clear();
  draft->lastLogits.clear();
  return HASTEN_OK;
}
