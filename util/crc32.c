/* crc32.c: CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), the
 * checksum of every dataset in an exported model; zlib's crc32() and
 * Python's zlib.crc32 give the same value, so any reader can check it. */
#include "util.h"

uint32_t crc32_update(uint32_t crc, const void *data, size_t n) {
    /* the table is rebuilt per call (2K steps, nothing next to a dataset's
     * bytes) so that there is no shared state */
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}
