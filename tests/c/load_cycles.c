/*
 * Loads a front end and a vault key, signs (naming no digest) and verifies with SHA-256,
 * then frees everything, CYCLES times. Run under valgrind to show that loading and unloading leaks nothing.
 *
 *   load_cycles KEY PUBKEY.pem CYCLES
 *
 * With AKV_TEST_PROVIDER_DIR set, each cycle makes a fresh library context, loads the akv
 * provider (and default) into it, opens the key with OSSL_STORE, signs, and unloads the
 * providers and the context. Otherwise each cycle loads and frees the e_akv engine (not
 * available when built against OpenSSL 4).
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "store_key.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef OPENSSL_NO_ENGINE
#include <openssl/engine.h>
#endif

static int sign_and_verify(EVP_PKEY *key, EVP_PKEY *pub, OSSL_LIB_CTX *libctx)
{
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    const unsigned char msg[] = "load cycle";
    EVP_MD_CTX *s = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    int ok = key != NULL
        /* No digest named: the key's default (SHA-256 for P-256), as some callers do. */
        && EVP_DigestSignInit_ex(s, NULL, NULL, libctx, NULL, key, NULL) == 1
        && EVP_DigestSign(s, sig, &siglen, msg, sizeof(msg)) == 1
        && EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, pub) == 1
        && EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)) == 1;
    if (!ok)
        ERR_print_errors_fp(stderr);
    EVP_MD_CTX_free(s);
    EVP_MD_CTX_free(v);
    return ok;
}

static int provider_cycle(const char *dir, const char *uri, EVP_PKEY *pub)
{
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    OSSL_PROVIDER *dflt = NULL, *akv = NULL;
    EVP_PKEY *key = libctx != NULL ? load_from_store(libctx, dir, uri, &dflt, &akv) : NULL;
    int ok = sign_and_verify(key, pub, libctx);
    EVP_PKEY_free(key);
    OSSL_PROVIDER_unload(akv);
    OSSL_PROVIDER_unload(dflt);
    OSSL_LIB_CTX_free(libctx);
    return ok;
}

#ifndef OPENSSL_NO_ENGINE
static int engine_cycle(const char *id, EVP_PKEY *pub)
{
    ENGINE *e = ENGINE_by_id("e_akv");
    if (e == NULL || ENGINE_init(e) != 1) {
        ERR_print_errors_fp(stderr);
        ENGINE_free(e);
        return 0;
    }
    EVP_PKEY *key = ENGINE_load_private_key(e, id, NULL, NULL);
    int ok = sign_and_verify(key, pub, NULL);
    EVP_PKEY_free(key);
    ENGINE_finish(e);
    ENGINE_free(e);
    return ok;
}
#endif

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s KEY PUBKEY.pem CYCLES\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    EVP_PKEY *pub = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (pub == NULL)
        return 3;
    const char *provider_dir = getenv("AKV_TEST_PROVIDER_DIR");
    int cycles = atoi(argv[3]), good = 0;
    for (int i = 0; i < cycles; i++) {
        if (provider_dir != NULL)
            good += provider_cycle(provider_dir, argv[1], pub);
        else
#ifndef OPENSSL_NO_ENGINE
            good += engine_cycle(argv[1], pub);
#else
            return 4;
#endif
    }
    EVP_PKEY_free(pub);
    printf("%d of %d cycles signed and verified\n", good, cycles);
    return good == cycles ? 0 : 1;
}
