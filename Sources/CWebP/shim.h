// libwebp (Debian: libwebp-dev).
#include <webp/encode.h>
#include <webp/decode.h>
