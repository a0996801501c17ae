// RUN: hasten-opt %s -verify-diagnostics -hasten-gpu-attention=target=cpu

// The kernel follows a GPU's plan; a CPU target is refused.
// expected-error @+1 {{hasten-gpu-attention: 'cpu' is not a GPU target (sm_70, sm_80 or sm_90)}}
module {
}
