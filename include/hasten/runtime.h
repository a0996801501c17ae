/*===- hasten/runtime.h - the hasten runtime C API -------------------------===*
 *
 * Loads hasten-compiled shared libraries and runs their entry points.
 *
 * Versioning: HASTEN_RUNTIME_API_VERSION changes when this API changes (2:
 * sequences, KV caches and generation; 3: entry kinds, tensor roles and KV
 * cache descriptions, option and stats structs that carry their size, bad
 * indices reported as errors; 4: sequences of a model namespace, verification
 * and speculative generation; 5: tokenizers and text streams; 6: weights
 * mapped from the module or a sidecar, hasten_module_verify_weights; 7:
 * samplers' generate entries; 8: CUDA graphs of decode steps; 9: KV pools
 * that spill to host memory; 10: adaptive thread counts,
 * hasten_entry_last_threads);
 * hasten_runtime_api_version() reports the
 * version of the library actually loaded. Compiled modules carry a manifest with their own
 * format version, checked by hasten_module_load.
 *
 * Errors: every function returning hasten_status reports HASTEN_OK or an
 * error code; hasten_last_error() then returns a message for the calling
 * thread, naming the module, entry, tensor or file concerned. Accessors
 * that return a value report a bad module, entry or index the same way:
 * NULL (strings), -1 (counts and ranks) or HASTEN_DTYPE_INVALID, with the
 * message set.
 *
 * Lifetimes: strings returned for a module (entry names, tensor names,
 * dimension names, model namespaces, the compiler version, target, CPU,
 * features and device) live as long as the module; hasten_last_error()'s
 * until the calling thread's next failing call; hasten_dtype_name's and
 * hasten_runtime_kernel_isa's forever. A tensor's data lives as long as
 * the tensor (for hasten_tensor_wrap, as long as the caller's buffer).
 * Sequences and pools keep their module alive until they are freed; free
 * them before the module.
 *
 * Ownership: objects returned through `out` parameters belong to the caller
 * and are released with the matching *_free function. Tensors either own
 * their memory (hasten_tensor_create, outputs of hasten_run) or borrow it
 * (hasten_tensor_wrap: the caller keeps the memory alive and frees it).
 *
 * Threads: a loaded module may be used from several threads at once, each
 * with its own tensors; a single run is not split across calls.
 *
 *===----------------------------------------------------------------------===*/

#ifndef HASTEN_RUNTIME_H
#define HASTEN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HASTEN_RUNTIME_API_VERSION 10

typedef enum hasten_status {
  HASTEN_OK = 0,
  HASTEN_ERROR_INVALID_ARGUMENT = 1, /* bad shape, dtype, count, null */
  HASTEN_ERROR_NOT_FOUND = 2,        /* no such entry, input or file */
  HASTEN_ERROR_INVALID_MODULE = 3,   /* not a hasten module, or corrupt */
  HASTEN_ERROR_INCOMPATIBLE = 4,     /* version or CPU feature mismatch */
  HASTEN_ERROR_OUT_OF_MEMORY = 5,
  HASTEN_ERROR_RUNTIME = 6           /* a failure while running */
} hasten_status;

/* Element types, in the manifest's order. */
typedef enum hasten_dtype {
  HASTEN_F32 = 0,
  HASTEN_F64 = 1,
  HASTEN_F16 = 2,
  HASTEN_BF16 = 3,
  HASTEN_BOOL = 4, /* one byte per element, 0 or 1 */
  HASTEN_I8 = 5,
  HASTEN_I16 = 6,
  HASTEN_I32 = 7,
  HASTEN_I64 = 8,
  HASTEN_U8 = 9,
  HASTEN_U16 = 10,
  HASTEN_U32 = 11,
  HASTEN_U64 = 12,
  HASTEN_DTYPE_INVALID = -1 /* returned for a bad module, entry or index */
} hasten_dtype;

typedef struct hasten_module hasten_module;
typedef struct hasten_tensor hasten_tensor;

/* The API version of the loaded runtime library. */
int hasten_runtime_api_version(void);

/* The message of the calling thread's last error ("" if none). */
const char *hasten_last_error(void);

/* The size of the one thread pool that generated code and oneDNN share.
 * HASTEN_NUM_THREADS sets it when the runtime loads; this overrides it for
 * the calling thread's later runs. */
hasten_status hasten_set_num_threads(int threads);
int hasten_get_num_threads(void);

/* The thread count is a ceiling: a host module's entry runs on the calling
 * thread alone where that is faster for its input shape. The first calls
 * of each (entry, input shapes) alternate between the pool and one thread
 * (seven pairs of two calls on each side, the first after a switch
 * untimed), the side that the median of the pairs' time ratios favours is
 * kept, and every 4096 calls it is measured again; two calls of 20 ms or
 * more on the pool keep the pool. HASTEN_ADAPTIVE_THREADS=0 turns this
 * off. The threads the entry's last call on `module` ran with (0 before
 * any call, or for an unknown entry): */
int hasten_entry_last_threads(hasten_module *module, const char *entry);

/* Bytes per element of `dtype` (0 for an invalid value). */
size_t hasten_dtype_size(hasten_dtype dtype);
/* "f32", "i64", ... ("?" for an invalid value). */
const char *hasten_dtype_name(hasten_dtype dtype);

/*---------------------------------------------------------------- modules --*/

/* Loads a compiled module, verifies its manifest, format version and CPU
 * features. */
hasten_status hasten_module_load(const char *path, hasten_module **out);
/* Unloads a module, with what the kernels packed from its weights (a module
 * loaded later may be mapped at the same addresses). No run of it may be in
 * flight. */
void hasten_module_free(hasten_module *module);

size_t hasten_module_num_entries(const hasten_module *module);
/* Entry names; `index` < hasten_module_num_entries (NULL and an error
 * otherwise). */
const char *hasten_module_entry_name(const hasten_module *module, size_t index);
/* Compiler version and target of the module. */
const char *hasten_module_compiler_version(const hasten_module *module);
const char *hasten_module_target(const hasten_module *module);

/* The CPU the module was compiled for, and the CPU features it requires
 * (comma-separated, /proc/cpuinfo names; "" when none). */
const char *hasten_module_cpu(const hasten_module *module);
const char *hasten_module_cpu_features(const hasten_module *module);

/* The instruction set the runtime's own kernels use on this machine, chosen
 * from CPUID when the runtime loads: "avx512_bf16", "avx512", "avx2" or
 * "baseline", followed by " (HASTEN_MAX_CPU_ISA=...)" when that environment
 * variable lowers it. A static string. */
const char *hasten_runtime_kernel_isa(void);

/* The weights the module stores: how many, and their total size. */
size_t hasten_module_num_weights(const hasten_module *module);
uint64_t hasten_module_weight_bytes(const hasten_module *module);
/* Weight `index`: its name and the format its kernel reads ("plain",
 * "f32-strips", "bf16-strips", "int8", "int4-g32", "int4-g64", "int4-g128",
 * "int8-zp", "int4-g32-zp", "int4-g64-zp", "int4-g128-zp"), its bytes. */
const char *hasten_module_weight_name(const hasten_module *module, size_t index);
const char *hasten_module_weight_format(const hasten_module *module, size_t index);
uint64_t hasten_module_weight_size(const hasten_module *module, size_t index);
/* The file the weights are mapped from (read-only, shared with every
 * process that maps it): the module itself, its sidecar (`model.weights`
 * next to `model.so`, compiled with --weights-file=sidecar), or "" when the
 * module has none. The load checks the sidecar's header against the
 * manifest (a sidecar from another compile is refused) but reads no
 * weight bytes; hasten_module_verify_weights reads them all against the
 * digest the compiler recorded and fails with HASTEN_ERROR_INVALID_MODULE
 * if they were damaged. */
const char *hasten_module_weights_path(const hasten_module *module);
hasten_status hasten_module_verify_weights(const hasten_module *module);

/* The signature of an entry: its inputs (is_output = 0) or outputs (1).
 * hasten_signature_dims writes up to `max_dims` sizes (-1 for dynamic) and
 * returns the rank. */
hasten_status hasten_entry_num_tensors(const hasten_module *module,
                                       const char *entry, int is_output,
                                       size_t *count);
const char *hasten_signature_name(const hasten_module *module,
                                  const char *entry, int is_output,
                                  size_t index);
hasten_dtype hasten_signature_dtype(const hasten_module *module,
                                    const char *entry, int is_output,
                                    size_t index);
int hasten_signature_dims(const hasten_module *module, const char *entry,
                          int is_output, size_t index, int64_t *dims,
                          int max_dims);
/* The symbolic name of dimension `dim` ("" when it is static or unnamed). */
const char *hasten_signature_dim_name(const hasten_module *module,
                                      const char *entry, int is_output,
                                      size_t index, int dim);

/* The typed contract between the compiler and the runtime (manifest format
 * version 4): what each entry is for, which model it belongs to, what each of
 * its tensors is, and the KV cache its model's entries share. The runtime's
 * own generation code finds entries and tensors this way, never by name.
 * The values match the hasten dialect's entry kinds and roles. */
typedef enum hasten_entry_kind {
  HASTEN_ENTRY_MAIN = 0,
  HASTEN_ENTRY_PREFILL = 1,
  HASTEN_ENTRY_DECODE = 2,
  HASTEN_ENTRY_VERIFY = 3,
  HASTEN_ENTRY_SPEC_STEP = 4,
  HASTEN_ENTRY_GENERATE = 5,
  HASTEN_ENTRY_SAMPLER_STREAM = 6
} hasten_entry_kind;

typedef enum hasten_tensor_role {
  HASTEN_ROLE_NONE = 0,
  HASTEN_ROLE_TOKEN_IDS = 1,
  HASTEN_ROLE_PAST_LENGTH = 2,
  HASTEN_ROLE_KV_CACHE = 3,
  HASTEN_ROLE_KV_BLOCK_POOL = 4,
  HASTEN_ROLE_KV_BLOCK_TABLE = 5,
  HASTEN_ROLE_LOGITS = 6,
  /* spec_step: the draft's cache and length (the target's are KV_CACHE and
   * PAST_LENGTH); its results are the emitted tokens (ACCEPTED_TOKENS), and
   * the new lengths of both caches (PAST_LENGTH, DRAFT_PAST_LENGTH). */
  HASTEN_ROLE_DRAFT_KV_CACHE = 7,
  HASTEN_ROLE_DRAFT_PAST_LENGTH = 8,
  HASTEN_ROLE_ACCEPTED_TOKENS = 9,
  /* generate: Gaussian noise the sampler starts from (or re-noises with);
   * hasten_generate_sample draws what the caller does not give. */
  HASTEN_ROLE_SAMPLER_NOISE = 10,
  /* sampler_stream: the frames in flight (and their conditioning), in and
   * out; hasten_sample_stream keeps them. */
  HASTEN_ROLE_SAMPLER_STATE = 11,
  /* An ONNX sequence of tensors crosses the ABI as two tensors, one after
   * the other: SEQUENCE_DATA, the elements' data back to back (1-D, each
   * row-major), then SEQUENCE_SHAPES, an int64 [count, width] table whose
   * row i is element i's rank followed by its dimensions, padded with 1 to
   * the width. hasten_run checks that they agree. */
  HASTEN_ROLE_SEQUENCE_DATA = 12,
  HASTEN_ROLE_SEQUENCE_SHAPES = 13,
  /* An ONNX optional: a rank-0 bool, nonzero when the value is there,
   * followed by the value's tensor or sequence (empty when absent). */
  HASTEN_ROLE_OPTIONAL_PRESENT = 14,
  /* An ONNX string tensor of shape S: STRING_BYTES, uint8 [S..., W], one
   * row per string padded to the width W, then STRING_LENGTHS, int64 [S...],
   * each string's length in bytes (at most W; hasten_run checks). */
  HASTEN_ROLE_STRING_BYTES = 15,
  HASTEN_ROLE_STRING_LENGTHS = 16,
  /* spec_step, sampling inside: the temperature, an f32 scalar (0 or less:
   * greedy), and UNIFORMS, f32 [2K + 1] draws in [0, 1): one per draft
   * proposal, one per acceptance test, one for the token after them. */
  HASTEN_ROLE_TEMPERATURE = 17,
  HASTEN_ROLE_UNIFORMS = 18,
  /* spec_step on paged caches: the draft's block table (its pool is
   * DRAFT_KV_CACHE; the target's are KV_BLOCK_POOL and KV_BLOCK_TABLE). */
  HASTEN_ROLE_DRAFT_KV_BLOCK_TABLE = 19
} hasten_tensor_role;

/* The kind of `entry` and its model namespace ("" for the module's main
 * model; the string lives as long as the module). Either pointer may be
 * NULL. HASTEN_ERROR_NOT_FOUND for an unknown entry. */
hasten_status hasten_entry_info(const hasten_module *module, const char *entry,
                                hasten_entry_kind *kind, const char **model);

/* The name of the entry of `kind` in model namespace `model` (NULL or ""
 * for the main model), valid as long as the module; HASTEN_ERROR_NOT_FOUND
 * when there is none. */
hasten_status hasten_find_entry(const hasten_module *module, const char *model,
                                hasten_entry_kind kind, const char **entry);

/* The role of input (is_output = 0) or output `index` of `entry`;
 * HASTEN_ERROR_NOT_FOUND for an unknown entry, HASTEN_ERROR_INVALID_ARGUMENT
 * for an index out of range. */
hasten_status hasten_signature_role(const hasten_module *module, const char *entry,
                                    int is_output, size_t index, hasten_tensor_role *role);

/* The KV cache of one model. The caller sets struct_size to
 * sizeof(hasten_kv_cache_info), so that the struct can grow (fields past
 * the caller's struct_size are not written). Contiguous storage is
 * [layers, 2, kv_heads, capacity, head_dim]; paged storage is a pool of
 * [blocks, layers, 2, kv_heads, block_size, head_dim] plus a table of
 * capacity / block_size block indices. position_limit: the positions the
 * model tells apart (the rows of the position table its positions index;
 * 0 when none bounds them); the capacity never exceeds it. */
typedef struct hasten_kv_cache_info {
  size_t struct_size;
  int paged;
  hasten_dtype dtype;
  int64_t layers, kv_heads, head_dim, capacity, block_size;
  int64_t position_limit;
} hasten_kv_cache_info;

/* HASTEN_ERROR_NOT_FOUND when the model has no KV cache. */
hasten_status hasten_module_kv_cache(const hasten_module *module, const char *model,
                                     hasten_kv_cache_info *info);

/* Where the module's code runs: "cpu" or "cuda". Lives as long as the module. */
const char *hasten_module_device(const hasten_module *module);

/* CUDA graphs: a CUDA module's decode steps run as one graph launch each
 * instead of one launch per kernel and GEMM. Per thread and entry, the
 * first call runs directly; each later one is captured and updates the
 * executable graph in place (instantiated again when the work changed
 * shape). Entries whose host code reads device memory (the manifest says
 * which) always run directly. On by default. */
hasten_status hasten_module_set_cuda_graphs(hasten_module *module, int enabled);

typedef struct hasten_cuda_graph_stats {
  size_t struct_size;      /* the caller sets sizeof(hasten_cuda_graph_stats) */
  uint64_t graph_launches; /* calls run as a graph launch */
  uint64_t instantiations; /* of those, calls whose graph was instantiated */
  uint64_t updates;        /* of those, calls that updated it in place */
  uint64_t direct_calls;   /* calls of graph entries run directly */
} hasten_cuda_graph_stats;

/* 1 when a CUDA graph can capture `entry`'s calls (its host code never
 * reads device memory, so it waits for the GPU once, at the end), 0 when
 * not or for a CPU module, -1 for an unknown entry. */
int hasten_entry_cuda_graph_capturable(const hasten_module *module, const char *entry);

/* What the module's decode steps did so far, over all threads. */
hasten_status hasten_module_cuda_graph_stats(const hasten_module *module,
                                             hasten_cuda_graph_stats *stats);
/* Why calls of a graph entry ran directly after their first ("" when none
 * did). Lives as long as the module. */
const char *hasten_module_cuda_graph_note(const hasten_module *module);

/*---------------------------------------------------------------- tensors --*/

/* A tensor owning zero-initialized, 64-byte aligned memory. */
hasten_status hasten_tensor_create(hasten_dtype dtype, int rank,
                                   const int64_t *dims, hasten_tensor **out);
/* A tensor borrowing `data` (row-major, contiguous); the caller keeps it
 * alive for as long as the tensor is used. */
hasten_status hasten_tensor_wrap(hasten_dtype dtype, int rank,
                                 const int64_t *dims, void *data,
                                 hasten_tensor **out);
void hasten_tensor_free(hasten_tensor *tensor);

hasten_dtype hasten_tensor_dtype(const hasten_tensor *tensor);
int hasten_tensor_rank(const hasten_tensor *tensor);
const int64_t *hasten_tensor_dims(const hasten_tensor *tensor);
size_t hasten_tensor_num_elements(const hasten_tensor *tensor);
size_t hasten_tensor_size_bytes(const hasten_tensor *tensor);
void *hasten_tensor_data(hasten_tensor *tensor);

/*-------------------------------------------------------------------- run --*/

/* Runs `entry` (NULL: the module's only entry) on `inputs`, in signature
 * order. On success `outputs[i]` receives a new owned tensor for each of the
 * entry's `num_outputs` outputs. Inputs are checked against the signature
 * (count, dtype, rank, static sizes, and equal sizes for equal symbolic
 * dimension names) before anything runs. */
hasten_status hasten_run(hasten_module *module, const char *entry,
                         hasten_tensor *const *inputs, size_t num_inputs,
                         hasten_tensor **outputs, size_t num_outputs);


/*--------------------------------------------------------------- samplers --*/

/* Denoisers compiled with hasten-compile --sampler carry a `generate`
 * entry (HASTEN_ENTRY_GENERATE) that runs the whole few-step sampler in one
 * call: the initial noise and the conditioning in, the sample out. */

/* The denoiser calls one run of `entry` makes (0 for other entries). */
int64_t hasten_entry_sampler_steps(const hasten_module *module, const char *entry);

typedef struct hasten_sample_stats {
  size_t struct_size;   /* the caller sets sizeof(hasten_sample_stats) */
  int64_t steps;        /* denoiser calls the sampler made */
  double seconds;       /* the generate call (drawing the noise excluded) */
} hasten_sample_stats;

/* Runs the generate entry `entry` (NULL: the module's) once. `inputs` are
 * given by name (`names[i]` names `inputs[i]`): every conditioning input,
 * and any noise input (role HASTEN_ROLE_SAMPLER_NOISE) the caller wants to
 * fix; the noise inputs not given are drawn from N(0, 1) with `seed`
 * (splitmix64 and Box-Muller: the same seed gives the same noise on every
 * machine). On success `*sample` receives a new tensor the caller frees;
 * `stats` may be NULL. */
hasten_status hasten_generate_sample(hasten_module *module, const char *entry, uint64_t seed,
                                     const char *const *names, hasten_tensor *const *inputs,
                                     size_t num_inputs, hasten_tensor **sample,
                                     hasten_sample_stats *stats);

/* StreamDiffusion's stream batch (hasten-compile --stream-batch=N): a
 * sampler_stream entry denoises N frames at N different steps in one call,
 * and the stream keeps the frames in flight between calls. The module must
 * outlive the stream; a stream is used from one thread at a time. */
typedef struct hasten_sample_stream hasten_sample_stream;

/* entry NULL: the module's sampler_stream entry. Frame k's noise is drawn
 * with `seed` unless given (noise stream k * 65536 + input index). */
hasten_status hasten_sample_stream_create(hasten_module *module, const char *entry,
                                          uint64_t seed, hasten_sample_stream **out);
void hasten_sample_stream_free(hasten_sample_stream *stream);
/* Frames in flight at once: the sampler's steps. */
int64_t hasten_sample_stream_depth(const hasten_sample_stream *stream);
/* Pushes one frame (its conditioning, and optionally its noise, by name, as
 * hasten_generate_sample takes them) and runs one tick. `*sample` receives
 * the frame pushed depth - 1 pushes earlier, which finished its last step
 * in this tick (a new tensor the caller frees), or NULL during the first
 * depth - 1 pushes. */
hasten_status hasten_sample_stream_push(hasten_sample_stream *stream, const char *const *names,
                                        hasten_tensor *const *inputs, size_t num_inputs,
                                        hasten_tensor **sample);

/* Fills `data` with `count` draws from N(0, 1) of the generator
 * hasten_generate_sample uses for the noise input with index `stream`. */
void hasten_gaussian_noise(uint64_t seed, uint64_t stream, float *data, size_t count);

/*------------------------------------------------------------- generation --*/

/* Decoders compiled by hasten-compile carry `prefill` and `decode` entries
 * that read and write a preallocated KV cache in place. A sequence owns one
 * such cache (contiguous modules) or a block table into a block pool (paged
 * modules, compiled with --kv-block-size), plus the tokens it holds.
 *
 * Sequences are not thread-safe: use each from one thread at a time. A pool
 * may be shared by sequences on several threads. */

typedef struct hasten_sequence hasten_sequence;
typedef struct hasten_kv_pool hasten_kv_pool;

/* Whether `module` has the decoder entries; its vocabulary size and the
 * tokens one sequence can hold (0 when it is not a decoder). */
int hasten_module_is_decoder(const hasten_module *module);
int64_t hasten_module_vocab_size(const hasten_module *module);
int64_t hasten_module_kv_capacity(const hasten_module *module);
/* Tokens per block for a paged module, 0 for a contiguous one. */
int64_t hasten_module_kv_block_size(const hasten_module *module);
/* Bytes one cached token takes, all layers, keys and values. */
uint64_t hasten_module_kv_bytes_per_token(const hasten_module *module);

/* Packs the weights of a decoder's prefill and decode entries now (by
 * running both once on a scratch sequence) instead of at their first use,
 * so that the first request does not pay for it. Other modules: no-op. */
hasten_status hasten_module_prepare(hasten_module *module);

/* A pool of `max_tokens` tokens (rounded up to whole blocks) for the paged
 * caches of several sequences of a paged module. Blocks are taken as
 * sequences grow and returned when they shrink or are freed; sequences
 * forked from one another share their full blocks until one writes them. */
hasten_status hasten_kv_pool_create(hasten_module *module, int64_t max_tokens,
                                    hasten_kv_pool **out);
/* Frees the pool; every sequence using it must be freed first. */
void hasten_kv_pool_free(hasten_kv_pool *pool);
int64_t hasten_kv_pool_num_blocks(const hasten_kv_pool *pool);
int64_t hasten_kv_pool_free_blocks(const hasten_kv_pool *pool);

/* CUDA modules with a paged cache: how many tokens of each KV pool created
 * from now on (a sequence's private pool included) live in device memory,
 * in whole blocks (rounded up to the driver's mapping granularity). The
 * rest of the pool is pinned host memory mapped into the same device
 * address range, which the kernels read in place over the bus, so a
 * context is bounded by host memory rather than by the GPU's. A sequence's
 * newest blocks are kept in device memory: when it needs a block and none
 * is free there, its oldest block moves to host memory. -1 (the default,
 * unless the module was compiled with --kv-device-tokens): all in device
 * memory. HASTEN_ERROR_INVALID_ARGUMENT for a CPU module or a contiguous
 * cache; pools created when the GPU cannot map host memory fail, saying so. */
hasten_status hasten_module_set_kv_device_tokens(hasten_module *module, int64_t tokens);
/* The current setting: -1 when pools are wholly in device memory (and for
 * CPU modules). */
int64_t hasten_module_kv_device_tokens(const hasten_module *module);

/* Where a pool's blocks are. A pool that does not spill has every block in
 * the memory its module runs next to (device memory for a CUDA module; a
 * CPU module's are all host blocks). */
typedef struct hasten_kv_placement {
  size_t struct_size;          /* the caller sets sizeof(hasten_kv_placement) */
  int64_t device_blocks;       /* blocks wholly in device memory */
  int64_t host_blocks;         /* the others */
  int64_t device_blocks_used;  /* of those, the ones sequences hold */
  int64_t host_blocks_used;
  int64_t blocks_moved_to_host; /* older blocks moved out for newer ones */
} hasten_kv_placement;
hasten_status hasten_kv_pool_placement(const hasten_kv_pool *pool,
                                       hasten_kv_placement *placement);
/* The same for the pool a paged sequence's cache is in (its private one,
 * or the one it was created with). */
hasten_status hasten_sequence_kv_placement(const hasten_sequence *sequence,
                                           hasten_kv_placement *placement);
/* 1 when the sequence's block `index` (its tokens index * block_size on) is
 * in device memory, 0 when in host memory (every block of a CPU module's),
 * -1 for a contiguous cache or a block the sequence does not hold. */
int hasten_sequence_kv_block_on_device(const hasten_sequence *sequence, int64_t index);

/* A new, empty sequence. `pool` may be NULL: a paged module then gets a
 * private pool for one full sequence; it must be NULL for a contiguous
 * module. The module (and pool) must outlive the sequence. */
hasten_status hasten_sequence_create(hasten_module *module, hasten_kv_pool *pool,
                                     hasten_sequence **out);
void hasten_sequence_free(hasten_sequence *sequence);
/* A copy of `sequence` (tokens and cache) that continues independently.
 * Paged sequences share blocks instead of copying them. */
hasten_status hasten_sequence_fork(const hasten_sequence *sequence, hasten_sequence **out);
/* Forgets every token; keeps the memory. */
hasten_status hasten_sequence_reset(hasten_sequence *sequence);
/* Keeps the first `length` tokens (to roll back rejected ones). */
hasten_status hasten_sequence_truncate(hasten_sequence *sequence, int64_t length);
int64_t hasten_sequence_length(const hasten_sequence *sequence);
/* The module the sequence runs (NULL for a NULL sequence). */
hasten_module *hasten_sequence_module(const hasten_sequence *sequence);
/* The tokens the sequence holds, hasten_sequence_length of them. */
const int64_t *hasten_sequence_tokens(const hasten_sequence *sequence);

/* Runs `count` tokens through the model after the ones the sequence holds
 * (the prefill entry for several, decode for one), appending them to its
 * cache, and writes the last token's logits (vocab_size floats) to `logits`
 * when it is not NULL. Fails, changing nothing, when the cache (or pool)
 * cannot take `count` more tokens, or a token is outside the vocabulary. */
hasten_status hasten_sequence_append(hasten_sequence *sequence, const int64_t *tokens,
                                     size_t count, float *logits);

/* Streaming callback: receives each generated token as it is chosen. A
 * nonzero return stops the generation after that token. */
typedef int (*hasten_token_callback)(int64_t token, void *user_data);

typedef struct hasten_generate_options {
  size_t struct_size;       /* sizeof(hasten_generate_options): set by _init */
  int64_t max_new_tokens;   /* default 32 */
  float temperature;        /* 0 (default): greedy */
  int32_t top_k;            /* 0 (default): no top-k cut */
  float top_p;              /* 1 (default): no nucleus cut */
  uint64_t seed;            /* for temperature > 0 */
  const int64_t *stop_tokens; /* generation ends after any of these */
  size_t num_stop_tokens;
  hasten_token_callback on_token; /* may be NULL */
  void *user_data;
} hasten_generate_options;

typedef struct hasten_generate_stats {
  size_t struct_size;                 /* the caller sets sizeof(hasten_generate_stats) */
  int64_t prompt_tokens;
  int64_t generated_tokens;
  double prefill_seconds;             /* the prompt through the model */
  double time_to_first_token_seconds; /* prefill plus choosing the first token */
  double decode_seconds;              /* every later token */
  int stopped_by_token;               /* 1 when a stop token ended it */
} hasten_generate_stats;

void hasten_generate_options_init(hasten_generate_options *options);

/* One token from `logits` (vocab floats) by the sampling fields of
 * `options` (temperature, top_k, top_p; the rest are ignored): greedy at
 * temperature 0, else drawn from softmax(logits / temperature) restricted
 * to the top_k most likely tokens and then to the smallest set whose
 * probability reaches top_p. `state` is the random state: set it to a seed
 * once; each call advances it. hasten_generate draws the same way, with its
 * state starting at options->seed. */
hasten_status hasten_sample(const float *logits, int64_t vocab,
                            const hasten_generate_options *options, uint64_t *state,
                            int64_t *token);

/* Appends `prompt` to the sequence (it may be empty right after an append,
 * to continue from there), then generates up to max_new_tokens tokens. Each
 * generated token but the last is run through the model and appended; the
 * last one is only returned, so pass it as the prompt to continue. The
 * generated tokens are written to `generated` when not NULL (room for
 * max_new_tokens). An exhausted cache is an error
 * (HASTEN_ERROR_OUT_OF_MEMORY), reported after the tokens that fitted;
 * `stats` (may be NULL) is filled either way. */
hasten_status hasten_generate(hasten_sequence *sequence, const int64_t *prompt,
                              size_t prompt_length, const hasten_generate_options *options,
                              int64_t *generated, hasten_generate_stats *stats);

/*----------------------------------------------------------- speculation --*/

/* Speculative decoding: a drafter proposes up to K tokens, the target scores
 * all of them in one pass of its verify entry, and the longest acceptable
 * prefix is kept; rejected tokens leave both caches by truncation, never by
 * copying. The drafter is a second sequence (a draft model, typically the
 * "draft" namespace of a module compiled with hasten-compile --draft, or any
 * decoder with the same vocabulary) or, without one, prompt lookup: the
 * tokens that followed the latest earlier occurrence of the last n-gram.
 *
 * Greedy (temperature 0) output is the target's own greedy output. With
 * temperature > 0, proposals are accepted by rejection sampling (accept d
 * with probability min(1, p(d) / q(d)), else draw from the normalized
 * max(0, p - q)), so that tokens follow the target's distribution, with
 * temperature, top_k and top_p applied to both models. The BiLD rollback
 * policy and nothing else changes the output. */

/* A sequence of the decoder in model namespace `model` (NULL or "": the main
 * model, as hasten_sequence_create). */
hasten_status hasten_sequence_create_for_model(hasten_module *module, const char *model,
                                               hasten_kv_pool *pool, hasten_sequence **out);

/* Like hasten_sequence_append, but writes the logits of every token
 * (count x vocab floats) to `logits` when it is not NULL. Needs the verify
 * entry for more than one token (HASTEN_ERROR_NOT_FOUND when the module was
 * compiled with --no-verify-entry). */
hasten_status hasten_sequence_verify(hasten_sequence *sequence, const int64_t *tokens,
                                     size_t count, float *logits);
/* Whether the sequence's decoder has a verify entry; its vocabulary size and
 * the tokens it can hold. */
int hasten_sequence_can_verify(const hasten_sequence *sequence);
int64_t hasten_sequence_vocab_size(const hasten_sequence *sequence);
int64_t hasten_sequence_capacity(const hasten_sequence *sequence);

typedef struct hasten_speculation_options {
  size_t struct_size;         /* sizeof(hasten_speculation_options): set by _init */
  int32_t k;                  /* tokens proposed per step, 1 to 32; 0 (default):
                                 adapted while generating, from measured step
                                 costs and acceptance: a draft model proposes
                                 (up to 12) while its confidence in the next
                                 proposal makes it worth verifying; prompt
                                 lookup proposes K chosen from its acceptance
                                 rate (up to 8) */
  float fallback_threshold;   /* BiLD fallback: the draft stops proposing when its
                                 most likely token's probability is below this;
                                 0 (default): off */
  float rollback_threshold;   /* BiLD rollback: a proposal is also accepted while
                                 -log p_target(token) <= this; 0 (default): off.
                                 Changes the output by design. */
  int32_t ngram_min, ngram_max; /* prompt lookup without a draft: the n-gram
                                   lengths tried, longest first (default 1, 3) */
  int64_t rapid_context;      /* RAPID: when the context is longer, the draft reads
                                 only this many of its tokens: the most recent
                                 rapid_chunk, plus the earlier chunks that rank
                                 best by BM25 against them; 0 (default): off */
  int32_t rapid_chunk;        /* tokens per RAPID chunk (default 64) */
} hasten_speculation_options;

typedef struct hasten_speculation_stats {
  size_t struct_size;          /* the caller sets sizeof(hasten_speculation_stats) */
  int64_t steps;               /* target passes after the first token */
  int64_t drafted;             /* tokens proposed */
  int64_t accepted;            /* proposals accepted */
  int64_t draft_context_tokens; /* context tokens the draft read (RAPID shortens it) */
  double draft_seconds;        /* proposing, including the draft's prefill */
  double verify_seconds;       /* the target's verification passes */
  int32_t last_k;              /* K of the last step (for k = 0: the adapted one, or
                                 with a draft model the tokens it proposed) */
  int64_t fused_steps;         /* steps run by the module's fused spec_step entry */
} hasten_speculation_stats;

void hasten_speculation_options_init(hasten_speculation_options *options);

/* hasten_generate with speculation: the same arguments and results for the
 * `target` sequence (it holds what hasten_generate would leave in it), with
 * `draft` proposing (NULL: prompt lookup). The draft sequence is brought up
 * to the target's tokens (or RAPID's shortened context) first; it must have
 * the target's vocabulary. `speculation` and `speculation_stats` may be NULL.
 * When the module has a fused spec_step entry (hasten-compile --spec-k=K),
 * the draft is its "draft" namespace, generation is greedy with k = K and
 * neither BiLD nor RAPID is on, each step is one call of that entry; the
 * output is the same. The target's last logits are then not kept: continue
 * with a non-empty prompt (the last generated token). */
hasten_status hasten_generate_speculative(hasten_sequence *target, hasten_sequence *draft,
                                          const int64_t *prompt, size_t prompt_length,
                                          const hasten_generate_options *options,
                                          const hasten_speculation_options *speculation,
                                          int64_t *generated, hasten_generate_stats *stats,
                                          hasten_speculation_stats *speculation_stats);

/*------------------------------------------------------------- tokenizers --*/

/* Text to token ids and back with the tokenizer a model ships with:
 * Hugging Face's tokenizer.json for byte-level BPE (GPT-2, Llama 3, Qwen2:
 * added tokens, the NFC normalizer on text NFC leaves alone, their split
 * expressions, merges, a BOS template), or a SentencePiece model file (Llama
 * 2, Mistral, T5; through libhasten_sentencepiece.so, loaded from the
 * runtime's folder on first use). A tokenizer.json asking for anything else
 * is refused by name at load, never approximated. A tokenizer is immutable:
 * several threads may use one at once. */

typedef struct hasten_tokenizer hasten_tokenizer;
typedef struct hasten_text_stream hasten_text_stream;

/* `path`: a tokenizer.json, a SentencePiece .model, or a folder holding
 * either (tokenizer.json first). A tokenizer_config.json beside it supplies
 * the BOS and EOS tokens and the chat template. */
hasten_status hasten_tokenizer_load(const char *path, hasten_tokenizer **out);
void hasten_tokenizer_free(hasten_tokenizer *tokenizer);
/* "byte-level BPE" or "SentencePiece"; lives as long as the tokenizer. */
const char *hasten_tokenizer_kind(const hasten_tokenizer *tokenizer);
/* One past the largest token id; -1 for a NULL tokenizer. */
int64_t hasten_tokenizer_vocab_size(const hasten_tokenizer *tokenizer);
/* The id of the token spelled `token` ("<|endoftext|>"), or -1. */
int64_t hasten_tokenizer_token_id(const hasten_tokenizer *tokenizer, const char *token);
/* The BOS and EOS ids, or -1 when the tokenizer names none. */
int64_t hasten_tokenizer_bos_id(const hasten_tokenizer *tokenizer);
int64_t hasten_tokenizer_eos_id(const hasten_tokenizer *tokenizer);
/* tokenizer_config.json's chat template ("" when none); lives as long as the
 * tokenizer. */
const char *hasten_tokenizer_chat_template(const hasten_tokenizer *tokenizer);

/* Renders the chat template for `count` messages (roles such as "system",
 * "user", "assistant", and their contents), as Hugging Face's
 * apply_chat_template does (Jinja with trim_blocks and lstrip_blocks; the
 * template sees `messages`, `add_generation_prompt`, `bos_token` and
 * `eos_token`); the text, to be encoded without add_special_tokens, goes to
 * `text` as for hasten_tokenizer_decode. HASTEN_ERROR_NOT_FOUND without a
 * template; a template using Jinja that hasten does not implement, or calling
 * raise_exception, is an error that names it. */
hasten_status hasten_tokenizer_apply_chat_template(const hasten_tokenizer *tokenizer,
                                                   const char *const *roles,
                                                   const char *const *contents, size_t count,
                                                   int add_generation_prompt, char *text,
                                                   size_t capacity, size_t *length);

/* Encodes `length` bytes of UTF-8 `text`. `*count` receives the number of
 * ids; they are written to `ids` when it has room (`capacity`), else the call
 * fails with HASTEN_ERROR_INVALID_ARGUMENT and `*count` says how many are
 * needed (pass ids = NULL, capacity = 0 to ask). `add_special_tokens`: the
 * tokens the model's template adds (a BOS). */
hasten_status hasten_tokenizer_encode(const hasten_tokenizer *tokenizer, const char *text,
                                      size_t length, int add_special_tokens, int64_t *ids,
                                      size_t capacity, size_t *count);
/* Decodes `count` ids into `text` the same way: `*length` receives the byte
 * count (no terminating NUL is written or counted). The bytes may end inside
 * a UTF-8 character that a later token completes; text streams handle that.
 * `skip_special_tokens` leaves out special and control tokens. An id outside
 * the vocabulary is an error. */
hasten_status hasten_tokenizer_decode(const hasten_tokenizer *tokenizer, const int64_t *ids,
                                      size_t count, int skip_special_tokens, char *text,
                                      size_t capacity, size_t *length);

/* Incremental decoding for streaming output: push each generated token and
 * print what comes back. Text is released only as whole UTF-8 characters,
 * and (SentencePiece) only once later tokens cannot change it. Free the
 * stream before its tokenizer. */
hasten_status hasten_text_stream_create(hasten_tokenizer *tokenizer, int skip_special_tokens,
                                        hasten_text_stream **out);
void hasten_text_stream_free(hasten_text_stream *stream);
/* `*text` (not NUL-terminated, `*length` bytes, possibly 0) is valid until
 * the stream's next call. */
hasten_status hasten_text_stream_push(hasten_text_stream *stream, int64_t token,
                                      const char **text, size_t *length);
/* What is left at the end (an incomplete UTF-8 tail becomes U+FFFD); the
 * stream is then empty and may be reused. */
hasten_status hasten_text_stream_finish(hasten_text_stream *stream, const char **text,
                                        size_t *length);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HASTEN_RUNTIME_H */
