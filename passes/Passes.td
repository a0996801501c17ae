//===- Passes.td - hasten pass definitions -------------------*- tablegen -*-===//
//
// Every hasten pass is declared here; docs/passes.md is generated from this
// file with `mlir-tblgen -gen-pass-doc` (target `hasten-docs`).
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_TD
#define HASTEN_PASSES_TD

include "mlir/Pass/PassBase.td"

def MaterializeAttentionScale : Pass<"hasten-materialize-attention-scale"> {
  let summary = "Make the implicit softmax scale of hasten.attention explicit";
  let description = [{
    `hasten.attention` without a `scale` attribute scales the scores by
    `1/sqrt(head_dim)`. This pass writes that value into the op wherever
    `head_dim` is static, so that later passes and kernels read one attribute
    instead of re-deriving the default. Ops with a dynamic `head_dim` keep
    their implicit scale; with `report-dynamic` each one gets a remark.

    ```mlir
    // Before
    %o = hasten.attention %q, %k, %v heads(8, 8)
        : tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32> -> tensor<1x8x?x64xf32>
    // After
    %o = hasten.attention %q, %k, %v heads(8, 8) scale(1.250000e-01)
        : tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32> -> tensor<1x8x?x64xf32>
    ```
  }];
  let options = [
    Option<"reportDynamic", "report-dynamic", "bool", /*default=*/"false",
           "Emit a remark for each attention whose scale stays implicit "
           "because its head_dim is dynamic">
  ];
}

#endif // HASTEN_PASSES_TD
