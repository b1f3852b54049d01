/*
 * Feeds hostile key strings and setting values to the e_akv engine through the real C entry
 * points. Every one must be refused with an error on OpenSSL's queue, nothing may crash, and
 * the engine must still work afterwards.
 *
 *   hostile GOOD_KEY
 *
 * Prints one line per case ("refused: <first error>" or "ACCEPTED") and exits 0 only if
 * every hostile case was refused and GOOD_KEY then loads.
 */
#include <openssl/engine.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refused(const char *what, int failed)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_peek_error_data(&data, &flags);
    char buf[512] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    if (failed && e) {
        printf("%s: refused: %.200s: %.200s\n", what, buf, data != NULL && (flags & ERR_TXT_STRING) ? data : "");
        ERR_clear_error();
        return 1;
    }
    ERR_clear_error();
    printf("%s: %s\n", what, failed ? "FAILED WITHOUT AN ERROR" : "ACCEPTED");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    ENGINE *e = ENGINE_by_id("e_akv");
    if (e == NULL || ENGINE_init(e) != 1) {
        ERR_print_errors_fp(stderr);
        return 3;
    }
    int ok = 1;
    size_t big = 200000;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = 0;
    char *huge_key = malloc(big + 16);
    snprintf(huge_key, big + 16, "vault:%s:k", huge);

    const char *keys[] = {"", huge_key, "vault:\xff\xfe\xfd:k", "vault:my\tvault:k", "vault:myvault",
                          "managedHsm:h:k:\x01\x02", "engine:e_akv:", "https://user@evil.example/keys/k",
                          "vault:myvault:k%00x", "\x1b[31mvault:red:k"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "key %zu", i);
        EVP_PKEY *k = ENGINE_load_private_key(e, keys[i], NULL, NULL);
        ok &= refused(what, k == NULL);
        EVP_PKEY_free(k);
    }
    EVP_PKEY *k = ENGINE_load_private_key(e, NULL, NULL, NULL);
    ok &= refused("NULL key", k == NULL);
    EVP_PKEY_free(k);

    struct { const char *cmd, *value; } settings[] = {
        {"BUDGET_MS", huge}, {"BUDGET_MS", "\xff\xfe"}, {"BUDGET_MS", "-5"}, {"BUDGET_MS", "99999999999999999999"},
        {"CLOUD", ""}, {"CLOUD", "\xc3\x28"}, {"ALLOWED_HOSTS", "a@b"}, {"API_VERSION", "7.5&x=1"},
        {"CREDENTIAL", huge}, {"LOG_LEVEL", "verbose"},
    };
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "setting %s #%zu", settings[i].cmd, i);
        ok &= refused(what, ENGINE_ctrl_cmd_string(e, settings[i].cmd, settings[i].value, 0) != 1);
    }
    ok &= refused("setting without a value", ENGINE_ctrl_cmd(e, "CLOUD", 0, NULL, NULL, 0) != 1);
    ok &= refused("unknown setting", ENGINE_ctrl_cmd_string(e, "NO_SUCH_SETTING", "x", 0) != 1);

    /* After all that, the engine still works. */
    k = ENGINE_load_private_key(e, argv[1], NULL, NULL);
    if (k == NULL) {
        ERR_print_errors_fp(stderr);
        ok = 0;
    } else {
        printf("good key: loaded\n");
    }
    EVP_PKEY_free(k);
    free(huge);
    free(huge_key);
    ENGINE_finish(e);
    ENGINE_free(e);
    return ok ? 0 : 1;
}
