/* File: agent/process/testdata/clock_step_shim.c
 *
 * Test support: an LD_PRELOAD library that steps the wall clock. While the file named by
 * $KILN_CLOCK_STEP_FILE exists, CLOCK_REALTIME (and its coarse variant), gettimeofday(2) and
 * time(2) read one hour later than the real clock; CLOCK_MONOTONIC is untouched. It stands in
 * for settimeofday in a VM restored from a snapshot, without changing the host's clock. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const long kStepSeconds = 3600;

static int Stepped(void) {
  const char* path = getenv("KILN_CLOCK_STEP_FILE");
  return path != NULL && path[0] != '\0' && access(path, F_OK) == 0;
}

int clock_gettime(clockid_t id, struct timespec* ts) {
  static int (*real)(clockid_t, struct timespec*) = NULL;
  if (real == NULL) real = (int (*)(clockid_t, struct timespec*))dlsym(RTLD_NEXT, "clock_gettime");
  int r = real(id, ts);
  if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) && Stepped()) {
    ts->tv_sec += kStepSeconds;
  }
  return r;
}

int gettimeofday(struct timeval* tv, void* tz) {
  static int (*real)(struct timeval*, void*) = NULL;
  if (real == NULL) real = (int (*)(struct timeval*, void*))dlsym(RTLD_NEXT, "gettimeofday");
  int r = real(tv, tz);
  if (r == 0 && tv != NULL && Stepped()) tv->tv_sec += kStepSeconds;
  return r;
}

time_t time(time_t* out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out != NULL) *out = ts.tv_sec;
  return ts.tv_sec;
}
