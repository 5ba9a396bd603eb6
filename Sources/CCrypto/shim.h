#ifndef CCrypto_SHIM_H
#define CCrypto_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/md5.h>
#include <openssl/rand.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum S3 takes as
// x-amz-checksum-crc32c. OpenSSL has none. x86-64 CPUs since 2008 compute it with SSE4.2's crc32
// instruction, several bytes per cycle; elsewhere a bitwise loop gives the same result, slowly.
// `crc` is the value returned for the data before (0 to start).

static inline uint32_t ferry_crc32c_bitwise(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static inline uint32_t ferry_crc32c_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

static inline uint32_t ferry_crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ferry_crc32c_sse42(crc, (const unsigned char *)data, n);
#endif
    return ferry_crc32c_bitwise(crc, (const unsigned char *)data, n);
}

// Both implementations, for tests that check they agree on every machine.
static inline uint32_t ferry_crc32c_portable(uint32_t crc, const void *data, size_t n) {
    return ferry_crc32c_bitwise(crc, (const unsigned char *)data, n);
}
#endif
