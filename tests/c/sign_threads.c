/*
 * Signs with a vault key from many threads at once, optionally after fork(), and verifies
 * every signature locally with the exported public key.
 *
 *   sign_threads KEY PUBKEY.pem THREADS ROUNDS [FORKS]
 *
 * With AKV_TEST_PROVIDER_DIR set, the key comes from the akv provider in that folder
 * through OSSL_STORE_open (as nginx's store: does); otherwise from the e_akv engine loaded by
 * id (OPENSSL_ENGINES must point at e_akv.so; not available when built against OpenSSL 4).
 * Settings come from the AKV_* environment. With FORKS > 0 the key is loaded and used once in the parent, then
 * FORKS children each run the threads (as nginx workers would) and the parent waits.
 * Exit status 0 only if every signature verified.
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "store_key.h"
#ifndef OPENSSL_NO_ENGINE
#include <openssl/engine.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static EVP_PKEY *key;
static EVP_PKEY *pub;
static int rounds;

static int sign_and_verify(int n)
{
    unsigned char msg[64], sig[1024];
    size_t siglen = sizeof(sig);
    int ok = 0;
    snprintf((char *)msg, sizeof(msg), "message %d from thread %lu", n, (unsigned long)pthread_self());
    EVP_MD_CTX *s = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(s, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestSign(s, sig, &siglen, msg, strlen((char *)msg)) == 1
        && EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, pub) == 1
        && EVP_DigestVerify(v, sig, siglen, msg, strlen((char *)msg)) == 1)
        ok = 1;
    else
        ERR_print_errors_fp(stderr);
    /* A success must leave the thread's error queue empty: libssl reads a dirty queue as
     * a failure of the next operation. */
    if (ok && ERR_peek_error() != 0) {
        fprintf(stderr, "error queue not empty after a successful signature:\n");
        ERR_print_errors_fp(stderr);
        ok = 0;
    }
    EVP_MD_CTX_free(s);
    EVP_MD_CTX_free(v);
    return ok;
}

static void *worker(void *arg)
{
    long good = 0;
    for (int i = 0; i < rounds; i++)
        good += sign_and_verify(i);
    return (void *)good;
}

static int run_threads(int threads)
{
    pthread_t t[64];
    long total = 0;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) {
        void *good;
        pthread_join(t[i], &good);
        total += (long)good;
    }
    printf("pid %d: %ld of %d signatures verified\n", (int)getpid(), total, threads * rounds);
    fflush(stdout);
    return total == (long)threads * rounds ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s KEY PUBKEY.pem THREADS ROUNDS [FORKS]\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[3]), forks = argc > 5 ? atoi(argv[5]) : 0;
    rounds = atoi(argv[4]);
    if (threads < 1 || threads > 64)
        return 2;
    struct test_keys keys;
    int loaded = load_test_keys(argv[1], argv[2], &keys);
    if (loaded != 0)
        return loaded;
    key = keys.key;
    pub = keys.pub;
    int status = 0;
    if (forks == 0) {
        status = run_threads(threads);
    } else {
        /* The parent uses the key once, so it holds a connection the children must not share. */
        if (!sign_and_verify(-1))
            return 5;
        status = in_children(forks, run_threads, threads);
        if (!sign_and_verify(-2))
            status = 1;
    }
    release_test_keys(&keys);
    return status;
}
