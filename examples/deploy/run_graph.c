/* Runs the `main` entry of a compiled graph with one f32 input of static
 * shape, filled with x[i] = (i % 7) * 0.5 - 1, and prints every output value. */
#include <hasten/runtime.h>
#include <stdio.h>

static int fail(void) { fprintf(stderr, "error: %s\n", hasten_last_error()); return 1; }

int main(int argc, char **argv) {
  hasten_module *module;
  hasten_tensor *x, *y[1];
  int64_t dims[8];
  if (argc != 2) { fprintf(stderr, "usage: %s model.so\n", argv[0]); return 2; }
  if (hasten_module_load(argv[1], &module) != HASTEN_OK) return fail();
  int rank = hasten_signature_dims(module, "main", 0, 0, dims, 8);
  if (rank < 0 || hasten_tensor_create(HASTEN_F32, rank, dims, &x) != HASTEN_OK) return fail();
  float *in = hasten_tensor_data(x);
  for (size_t i = 0; i < hasten_tensor_num_elements(x); ++i)
    in[i] = (float)(i % 7) * 0.5f - 1.0f;
  if (hasten_run(module, "main", &x, 1, y, 1) != HASTEN_OK) return fail();
  const float *out = hasten_tensor_data(y[0]);
  for (size_t i = 0; i < hasten_tensor_num_elements(y[0]); ++i)
    printf("%.9g\n", out[i]);
  hasten_tensor_free(y[0]);
  hasten_tensor_free(x);
  hasten_module_free(module);
  return 0;
}
