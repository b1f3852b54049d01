/*
 * Benchmark of signing through the e_akv engine, as an application sees it.
 *
 *   bench_engine KEY MODE THREADS OPS
 *
 * MODE is pkcs1, pss or ecdsa. Measures the time to load the engine and the key, the memory
 * that adds (RSS), then OPS signatures of one fixed SHA-256 digest spread over THREADS
 * threads, each timed, and the CPU time (user + system) the process spent on them. Prints
 * one JSON line.
 */
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static EVP_PKEY *key;
static const char *mode;
static int per_thread;
static double *latencies;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static long rss_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int sign_once(void)
{
    unsigned char digest[32], sig[1024];
    size_t siglen = sizeof(sig);
    memset(digest, 0x42, sizeof(digest));
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    int ok = ctx != NULL && EVP_PKEY_sign_init(ctx) == 1;
    if (ok && strcmp(mode, "ecdsa") != 0) {
        ok = EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1
             && EVP_PKEY_CTX_set_rsa_padding(ctx, strcmp(mode, "pss") == 0 ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) == 1;
        if (ok && strcmp(mode, "pss") == 0)
            ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    }
    ok = ok && EVP_PKEY_sign(ctx, sig, &siglen, digest, sizeof(digest)) == 1;
    if (!ok)
        ERR_print_errors_fp(stderr);
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static void *worker(void *arg)
{
    long index = (long)arg;
    for (int i = 0; i < per_thread; i++) {
        double t0 = now_us();
        if (!sign_once())
            exit(5);
        latencies[index * per_thread + i] = now_us() - t0;
    }
    return NULL;
}

/* CPU time (user + system) this process has used so far, in microseconds. */
static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s KEY MODE THREADS OPS\n", argv[0]);
        return 2;
    }
    mode = argv[2];
    int threads = atoi(argv[3]), ops = atoi(argv[4]);
    if (threads < 1 || threads > 64 || ops < threads)
        return 2;
    per_thread = ops / threads;
    latencies = calloc((size_t)threads * per_thread, sizeof(double));

    long rss_before = rss_kb();
    double t0 = now_us();
    ENGINE *e = ENGINE_by_id("e_akv");
    if (e == NULL || ENGINE_init(e) != 1) {
        ERR_print_errors_fp(stderr);
        return 3;
    }
    key = ENGINE_load_private_key(e, argv[1], NULL, NULL);
    if (key == NULL) {
        ERR_print_errors_fp(stderr);
        return 4;
    }
    double load_ms = (now_us() - t0) / 1e3;
    long rss_after = rss_kb();
    /* One warm-up operation outside the measurement (connection already open from the load). */
    if (!sign_once())
        return 5;

    pthread_t t[64];
    double cpu_start = cpu_us();
    double start = now_us();
    for (long i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double secs = (now_us() - start) / 1e6;
    double cpu = cpu_us() - cpu_start;
    int n = threads * per_thread;
    qsort(latencies, n, sizeof(double), cmp);
    printf("{\"ops\":%d,\"secs\":%.4f,\"cpu_us\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"load_ms\":%.2f,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld}\n",
           n, secs, cpu, latencies[n / 2], latencies[(n * 99) / 100], load_ms, rss_before, rss_after);
    EVP_PKEY_free(key);
    ENGINE_finish(e);
    ENGINE_free(e);
    return 0;
}
