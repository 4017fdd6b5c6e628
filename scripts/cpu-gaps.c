/* How often this machine takes a busy CPU away from a user-space thread, and for how long
 * (scripts/bench-reaction): spins for SECONDS reading CLOCK_MONOTONIC and prints every gap
 * between two consecutive reads longer than MIN_NS (a timer tick, an interrupt, the
 * hypervisor: the thread was not running), one per line in ns, then "total NS".
 * usage: cpu-gaps SECONDS MIN_NS      (pin it with taskset; run nothing else beside it) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: cpu-gaps SECONDS MIN_NS\n");
        return 2;
    }
    double secs = atof(argv[1]);
    long long min_ns = atoll(argv[2]);
    if (secs <= 0 || secs > 60 || min_ns < 100) {
        fprintf(stderr, "cpu-gaps: SECONDS in (0, 60], MIN_NS at least 100\n");
        return 2;
    }
    /* Gaps are kept in memory while spinning (printing would make gaps of its own): at
     * most one per MIN_NS of the run, and never more than this many. */
    enum { MAX_GAPS = 1 << 20 };
    static long long gaps[MAX_GAPS];
    long n = 0;
    long long start = now_ns(), end = start + (long long)(secs * 1e9), last = start, t;
    do {
        t = now_ns();
        if (t - last > min_ns && n < MAX_GAPS)
            gaps[n++] = t - last;
        last = t;
    } while (t < end);
    for (long i = 0; i < n; i++)
        printf("%lld\n", gaps[i]);
    printf("total %lld\n", t - start);
    return 0;
}
