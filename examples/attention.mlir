// A GPT-2-small-shaped decode step on a preallocated KV cache: append the new
// token's keys and values in place, view the cache up to the new length, and
// attend over it. The default example for scripts/run-default.sh.

!cache = !hasten.kv_cache<layers = 12, kv_heads = 12, head_dim = 64, capacity = 1024, f32>

func.func @decode_layer0(%cache: !cache, %q: tensor<1x12x1x64xf32>,
                         %k: tensor<1x12x1x64xf32>, %v: tensor<1x12x1x64xf32>,
                         %pos: index) -> tensor<1x12x1x64xf32> {
  hasten.kv_cache.append %k, %v into %cache[layer 0] at %pos
      : tensor<1x12x1x64xf32>, tensor<1x12x1x64xf32> into !cache
  %c1 = arith.constant 1 : index
  %len = arith.addi %pos, %c1 : index
  %keys, %values = hasten.kv_cache.view %cache[layer 0] length %len : !cache
  %o = hasten.attention %q, %keys, %values heads(12, 12) causal
      : tensor<1x12x1x64xf32>, tensor<1x12x?x64xf32>, tensor<1x12x?x64xf32>
      -> tensor<1x12x1x64xf32>
  return %o : tensor<1x12x1x64xf32>
}
