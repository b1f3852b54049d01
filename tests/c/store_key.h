/*
 * Opens a vault key through the akv provider's store, as nginx's store: does: the provider
 * in folder DIR is loaded into LIBCTX (NULL: the default context) after the default
 * provider (the order the README asks for). Shared by the test programs of tests/c.
 */
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/store.h>

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
