#ifndef WAN_COPENSSL_SHIM_H
#define WAN_COPENSSL_SHIM_H

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#endif
