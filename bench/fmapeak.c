// f32 FMA peak of this machine: THREADS threads each run independent
// vector FMA chains (enough of them to cover the FMA latency on every
// port); prints the best GFLOP/s of the passes (an FMA is 2 flops).
//   fmapeak THREADS
// Built by bench/machine.py for the machine it runs on (-march=native is
// right here: it measures the host, and nothing ships it).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
typedef float vec __attribute__((vector_size(LANES * 4)));

enum { CHAINS = 12 };
static const long kIterations = 40 * 1000 * 1000;

typedef struct {
  float result;
} Job;

static void *run(void *arg) {
  Job *job = arg;
  vec acc[CHAINS], x, y;
  for (int l = 0; l < LANES; ++l) {
    x[l] = 0.999999f;
    y[l] = 1e-7f;
  }
  for (int c = 0; c < CHAINS; ++c)
    for (int l = 0; l < LANES; ++l)
      acc[c][l] = (float)c;
  for (long i = 0; i < kIterations; ++i)
    for (int c = 0; c < CHAINS; ++c)
      acc[c] = acc[c] * x + y; // contracted to one FMA (-ffp-contract=fast)
  float sum = 0;
  for (int c = 0; c < CHAINS; ++c)
    for (int l = 0; l < LANES; ++l)
      sum += acc[c][l];
  job->result = sum;
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1 || threads > 256)
    return 1;
  pthread_t ids[256];
  Job jobs[256];
  double best = 0, check = 0;
  for (int pass = 0; pass < 3; ++pass) {
    double start = now();
    for (int t = 0; t < threads; ++t)
      pthread_create(&ids[t], NULL, run, &jobs[t]);
    for (int t = 0; t < threads; ++t)
      pthread_join(ids[t], NULL);
    double seconds = now() - start;
    double gflops = 2.0 * threads * kIterations * CHAINS * LANES / seconds / 1e9;
    if (gflops > best)
      best = gflops;
    check += jobs[0].result;
  }
  printf("fma_gflops %.1f lanes %d check %g\n", best, LANES, check);
  return 0;
}
