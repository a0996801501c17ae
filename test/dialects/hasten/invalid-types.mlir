// RUN: hasten-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{KV cache layers must be positive, got 0}}
func.func private @f(!hasten.kv_cache<layers = 0, kv_heads = 4, head_dim = 64, capacity = 128, f32>)

// -----

// expected-error @+1 {{KV cache kv_heads must be positive, got -2}}
func.func private @f(!hasten.kv_cache<layers = 1, kv_heads = -2, head_dim = 64, capacity = 128, f32>)

// -----

// expected-error @+1 {{KV cache head_dim must be positive, got 0}}
func.func private @f(!hasten.kv_cache<layers = 1, kv_heads = 4, head_dim = 0, capacity = 128, f32>)

// -----

// expected-error @+1 {{KV cache capacity must be positive, got 0}}
func.func private @f(!hasten.kv_cache<layers = 1, kv_heads = 4, head_dim = 64, capacity = 0, f32>)

// -----

// expected-error @+1 {{KV cache element type must be a floating-point type, got 'i8'}}
func.func private @f(!hasten.kv_cache<layers = 1, kv_heads = 4, head_dim = 64, capacity = 128, i8>)

// -----

// expected-error @+1 {{a paged KV cache needs a positive block_size, got 0}}
func.func private @f(!hasten.kv_cache<layers = 1, kv_heads = 4, head_dim = 64, capacity = 128, f32, paged<block_size = 0>>)

// -----

// expected-error @+1 {{KV cache capacity (100) must be a multiple of block_size (16)}}
func.func private @f(!hasten.kv_cache<layers = 1, kv_heads = 4, head_dim = 64, capacity = 100, f32, paged<block_size = 16>>)

// -----

// expected-error @+1 {{unknown KV cache layout 'ring'; expected 'contiguous' or 'paged<block_size = N>'}}
func.func private @f(!hasten.kv_cache<layers = 1, kv_heads = 4, head_dim = 64, capacity = 128, f32, ring>)

// -----

// expected-error @+1 {{expected 'kv_heads'}}
func.func private @f(!hasten.kv_cache<layers = 1, heads = 4, head_dim = 64, capacity = 128, f32>)
