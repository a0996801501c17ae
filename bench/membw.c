// Read bandwidth of this machine: THREADS threads each sum their share of a
// buffer far larger than the caches; prints the best GB/s of the passes.
//   membw THREADS [MiB] [PASSES]
// Built by bench/machine.py for the machine it runs on (-march=native is
// right here: it measures the host, and nothing ships it).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  const float *data;
  size_t count;
  float sum;
} Share;

// Four streams per thread, each with its own 16-lane accumulator: a core
// needs several independent streams to keep enough reads in flight, and
// independent accumulators keep the adds' latency out of the way.
static void *sumShare(void *arg) {
  Share *share = arg;
  size_t quarter = share->count / 4 / 16 * 16;
  const float *s0 = share->data, *s1 = s0 + quarter, *s2 = s1 + quarter, *s3 = s2 + quarter;
  float a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};
  for (size_t i = 0; i < quarter; i += 16)
    for (int l = 0; l < 16; ++l) {
      a0[l] += s0[i + l];
      a1[l] += s1[i + l];
      a2[l] += s2[i + l];
      a3[l] += s3[i + l];
    }
  float total = 0;
  for (int l = 0; l < 16; ++l)
    total += a0[l] + a1[l] + a2[l] + a3[l];
  share->sum = total;
  share->count = quarter * 4; // what was read
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 512;
  int passes = argc > 3 ? atoi(argv[3]) : 7;
  if (threads < 1 || threads > 256 || mib < 64 || passes < 1 || passes > 100) {
    fprintf(stderr, "usage: membw THREADS [MiB >= 64] [PASSES]\n");
    return 1;
  }
  size_t count = mib * 1024 * 1024 / sizeof(float);
  float *data = aligned_alloc(64, count * sizeof(float));
  if (!data)
    return 1;
  for (size_t i = 0; i < count; ++i)
    data[i] = (float)(i & 7);
  double *rates = calloc((size_t)passes, sizeof(double));
  Share *shares = calloc((size_t)threads, sizeof(Share));
  pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
  float sink = 0;
  for (int p = 0; p < passes; ++p) {
    size_t per = count / (size_t)threads / 64 * 64;
    double start = now();
    for (int t = 0; t < threads; ++t) {
      shares[t] = (Share){data + (size_t)t * per, per, 0};
      pthread_create(&ids[t], NULL, sumShare, &shares[t]);
    }
    for (int t = 0; t < threads; ++t) {
      pthread_join(ids[t], NULL);
      sink += shares[t].sum;
    }
    double seconds = now() - start, bytes = 0;
    for (int t = 0; t < threads; ++t)
      bytes += (double)shares[t].count * sizeof(float);
    rates[p] = bytes / seconds / 1e9;
  }
  qsort(rates, (size_t)passes, sizeof(double), compare);
  // The best pass: the floor is what the memory can deliver, and the
  // slower passes are other tenants of the machine.
  printf("read_gbps %.2f\n", rates[passes - 1]);
  return sink == -1.0f; // keeps the sums alive
}
