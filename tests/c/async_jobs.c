/*
 * Signs with a vault key in many OpenSSL ASYNC jobs at once from one thread, as a server in
 * async mode does, and verifies every signature locally with the exported public key.
 *
 *   async_jobs KEY PUBKEY.pem JOBS [FORKS]
 *
 * Each job signs its own message with EVP_DigestSign; the thread starts every job, then
 * waits (poll) on the descriptors the paused jobs registered and resumes them until all
 * have finished. It prints how many jobs were paused at once: with a slow vault, all of them
 * if signing does not hold the thread. With FORKS > 0 the parent runs the jobs once, then
 * FORKS children each run them (the process's async runtime must not cross a fork).
 * The key comes from the akv provider in AKV_TEST_PROVIDER_DIR, or the e_akv engine. With
 * AKV_TEST_WAIT_STDIN set, it says "key loaded" once it has the key and waits for a line on
 * stdin before signing (a test stops the vault meanwhile).
 * Exit status 0 only if every signature verified.
 */
#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "store_key.h"
#ifndef OPENSSL_NO_ENGINE
#include <openssl/engine.h>
#endif
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_JOBS 256

static EVP_PKEY *key;
static EVP_PKEY *pub;

struct work {
    int n;
    unsigned char msg[64];
    unsigned char sig[1024];
    size_t siglen;
};

/* Runs inside a job, on OpenSSL's small stack. */
static int sign_in_job(void *arg)
{
    struct work *w = *(struct work **)arg;
    EVP_MD_CTX *s = EVP_MD_CTX_new();
    w->siglen = sizeof(w->sig);
    int ok = EVP_DigestSignInit(s, NULL, EVP_sha256(), NULL, key) == 1
             && EVP_DigestSign(s, w->sig, &w->siglen, w->msg, strlen((char *)w->msg)) == 1;
    EVP_MD_CTX_free(s);
    return ok;
}

static int verify(struct work *w)
{
    EVP_MD_CTX *v = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, pub) == 1
             && EVP_DigestVerify(v, w->sig, w->siglen, w->msg, strlen((char *)w->msg)) == 1;
    EVP_MD_CTX_free(v);
    return ok;
}

static int run_jobs(int jobs)
{
    static struct work work[MAX_JOBS];
    ASYNC_JOB *job[MAX_JOBS] = {0};
    ASYNC_WAIT_CTX *ctx[MAX_JOBS];
    int finished[MAX_JOBS] = {0}, result[MAX_JOBS] = {0};
    int remaining = jobs, most_paused = 0, verified = 0, failed = 0;
    for (int i = 0; i < jobs; i++) {
        work[i].n = i;
        snprintf((char *)work[i].msg, sizeof(work[i].msg), "job %d of pid %d", i, (int)getpid());
        ctx[i] = ASYNC_WAIT_CTX_new();
    }
    while (remaining > 0) {
        int paused = 0;
        struct pollfd fds[MAX_JOBS];
        int nfds = 0;
        for (int i = 0; i < jobs; i++) {
            if (finished[i])
                continue;
            struct work *w = &work[i];
            switch (ASYNC_start_job(&job[i], ctx[i], &result[i], sign_in_job, &w, sizeof(w))) {
            case ASYNC_PAUSE: {
                paused++;
                OSSL_ASYNC_FD fd[4];
                size_t n = 0;
                if (ASYNC_WAIT_CTX_get_all_fds(ctx[i], NULL, &n) && n <= 4
                    && ASYNC_WAIT_CTX_get_all_fds(ctx[i], fd, &n))
                    for (size_t k = 0; k < n; k++)
                        fds[nfds++] = (struct pollfd){.fd = fd[k], .events = POLLIN};
                break;
            }
            case ASYNC_FINISH:
                finished[i] = 1;
                remaining--;
                if (result[i] && verify(&work[i]))
                    verified++;
                else {
                    failed++;
                    ERR_print_errors_fp(stderr);
                }
                break;
            default:
                fprintf(stderr, "job %d: ASYNC_start_job failed\n", i);
                ERR_print_errors_fp(stderr);
                return 1;
            }
        }
        if (paused > most_paused)
            most_paused = paused;
        if (remaining > 0 && nfds > 0 && poll(fds, nfds, 30000) <= 0) {
            fprintf(stderr, "no job's descriptor fired within 30 s\n");
            return 1;
        }
    }
    for (int i = 0; i < jobs; i++)
        ASYNC_WAIT_CTX_free(ctx[i]);
    printf("pid %d: %d of %d signatures verified, %d failed, %d jobs paused at once\n",
           (int)getpid(), verified, jobs, failed, most_paused);
    fflush(stdout);
    return verified == jobs ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s KEY PUBKEY.pem JOBS [FORKS]\n", argv[0]);
        return 2;
    }
    int jobs = atoi(argv[3]), forks = argc > 4 ? atoi(argv[4]) : 0;
    if (jobs < 1 || jobs > MAX_JOBS)
        return 2;
    struct test_keys keys;
    int loaded = load_test_keys(argv[1], argv[2], &keys);
    if (loaded != 0)
        return loaded;
    key = keys.key;
    pub = keys.pub;
    if (getenv("AKV_TEST_WAIT_STDIN") != NULL) {
        char line[16];
        printf("key loaded\n");
        fflush(stdout);
        if (fgets(line, sizeof(line), stdin) == NULL)
            return 6;
    }
    int status = run_jobs(jobs);
    if (in_children(forks, run_jobs, jobs) != 0)
        status = 1;
    release_test_keys(&keys);
    return status;
}
