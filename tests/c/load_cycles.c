/*
 * Loads the e_akv engine, loads a vault key, signs and verifies, then frees everything,
 * CYCLES times. Run under valgrind to show that loading and unloading leaks nothing.
 *
 *   load_cycles KEY PUBKEY.pem CYCLES
 */
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int cycles = atoi(argv[3]), good = 0;
    for (int i = 0; i < cycles; i++) {
        ENGINE *e = ENGINE_by_id("e_akv");
        if (e == NULL || ENGINE_init(e) != 1) {
            ERR_print_errors_fp(stderr);
            return 4;
        }
        EVP_PKEY *key = ENGINE_load_private_key(e, argv[1], NULL, NULL);
        unsigned char sig[1024];
        size_t siglen = sizeof(sig);
        const unsigned char msg[] = "load cycle";
        EVP_MD_CTX *s = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
        if (key != NULL
            && EVP_DigestSignInit(s, NULL, EVP_sha256(), NULL, key) == 1
            && EVP_DigestSign(s, sig, &siglen, msg, sizeof(msg)) == 1
            && EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, pub) == 1
            && EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)) == 1)
            good++;
        else
            ERR_print_errors_fp(stderr);
        EVP_MD_CTX_free(s);
        EVP_MD_CTX_free(v);
        EVP_PKEY_free(key);
        ENGINE_finish(e);
        ENGINE_free(e);
    }
    EVP_PKEY_free(pub);
    printf("%d of %d cycles signed and verified\n", good, cycles);
    return good == cycles ? 0 : 1;
}
