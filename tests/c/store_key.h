/*
 * Opens a vault key through the akv provider's store, as nginx's store: does: the provider
 * in folder DIR is loaded into LIBCTX (NULL: the default context) after the default
 * provider (the order the README asks for). Shared by the test programs of tests/c, with
 * load_test_keys, which takes the key from the provider or the engine as the test asks,
 * and in_children, which runs a test's work in forked children.
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#ifndef OPENSSL_NO_ENGINE
#include <openssl/engine.h>
#endif

static EVP_PKEY *load_from_store(OSSL_LIB_CTX *libctx, const char *dir, const char *uri,
                                 OSSL_PROVIDER **dflt, OSSL_PROVIDER **akv)
{
    *dflt = *akv = NULL;
    if (!OSSL_PROVIDER_set_default_search_path(libctx, dir)
        || (*dflt = OSSL_PROVIDER_load(libctx, "default")) == NULL
        || (*akv = OSSL_PROVIDER_load(libctx, "akv")) == NULL)
        return NULL;
    OSSL_STORE_CTX *store = OSSL_STORE_open_ex(uri, libctx, NULL, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *found = NULL;
    while (store != NULL && found == NULL && !OSSL_STORE_eof(store)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(store);
        if (info != NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            found = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(store);
    return found;
}

/* A test program's vault key, its exported public key, and the engine that loaded the key
 * (NULL with the provider). */
struct test_keys {
    EVP_PKEY *key;
    EVP_PKEY *pub;
    void *engine;
};

/* Loads vault key KEY_ID from the akv provider in AKV_TEST_PROVIDER_DIR (kept loaded for the
 * life of the process) or else from the e_akv engine (found through OPENSSL_ENGINES), and
 * the public key in PUB_PEM. Returns 0, or the exit status to fail with (errors printed). */
static inline int load_test_keys(const char *key_id, const char *pub_pem, struct test_keys *k)
{
    const char *provider_dir = getenv("AKV_TEST_PROVIDER_DIR");
    k->key = k->pub = NULL;
    k->engine = NULL;
    if (provider_dir != NULL) {
        OSSL_PROVIDER *dflt, *akv;
        k->key = load_from_store(NULL, provider_dir, key_id, &dflt, &akv);
    } else {
#ifndef OPENSSL_NO_ENGINE
        ENGINE *e = ENGINE_by_id("e_akv");
        if (e == NULL || ENGINE_init(e) != 1) {
            ERR_print_errors_fp(stderr);
            return 3;
        }
        k->engine = e;
        k->key = ENGINE_load_private_key(e, key_id, NULL, NULL);
#else
        fprintf(stderr, "this OpenSSL has no engines: set AKV_TEST_PROVIDER_DIR\n");
        return 3;
#endif
    }
    FILE *f = fopen(pub_pem, "r");
    k->pub = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (k->key == NULL || k->pub == NULL) {
        ERR_print_errors_fp(stderr);
        return 4;
    }
    return 0;
}

static inline void release_test_keys(struct test_keys *k)
{
    EVP_PKEY_free(k->key);
    EVP_PKEY_free(k->pub);
#ifndef OPENSSL_NO_ENGINE
    if (k->engine != NULL) {
        ENGINE_finish(k->engine);
        ENGINE_free(k->engine);
    }
#endif
}

/* Runs RUN(ARG) in FORKS child processes at once (as a server's forked workers would) and
 * waits for them all; returns 0 only if every child exited with 0. */
static inline int in_children(int forks, int (*run)(int), int arg)
{
    int status = 0;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(run(arg));
    }
    for (int i = 0; i < forks; i++) {
        int st;
        wait(&st);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            status = 1;
    }
    return status;
}
