// libjpeg-turbo (Debian: libjpeg-dev). jpeglib.h needs stdio's FILE and size_t first.
//
// libjpeg reports a fatal error by calling error_exit, which must not return; Swift cannot
// setjmp, so the two whole-image calls below run libjpeg under a setjmp here and turn every
// error (and every corrupt-data warning) into a return code and a message.
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

struct schnell_jpeg_error {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void schnell_jpeg_error_exit(j_common_ptr codec) {
    struct schnell_jpeg_error *error = (struct schnell_jpeg_error *)codec->err;
    (*codec->err->format_message)(codec, error->message);
    longjmp(error->jump, 1);
}

// Warnings (level < 0) are counted and the first one's text kept; trace messages are dropped.
static void schnell_jpeg_emit_message(j_common_ptr codec, int level) {
    struct schnell_jpeg_error *error = (struct schnell_jpeg_error *)codec->err;
    if (level >= 0) return;
    if (codec->err->num_warnings == 0) (*codec->err->format_message)(codec, error->message);
    codec->err->num_warnings++;
}

static void schnell_jpeg_install(struct schnell_jpeg_error *error) {
    jpeg_std_error(&error->manager);
    error->manager.error_exit = schnell_jpeg_error_exit;
    error->manager.emit_message = schnell_jpeg_emit_message;
    error->message[0] = 0;
}

// JPEG bytes -> packed RGB8 rows in a malloc'd *pixels (the caller frees it). Returns 0, or -1
// with the reason in `message` (JMSG_LENGTH_MAX bytes). Images over max_pixels are refused
// before any pixel memory is taken.
static inline int schnell_jpeg_decode_rgb(const unsigned char *data, unsigned long size, unsigned long max_pixels,
                                          unsigned char **pixels, int *width, int *height, char *message) {
    struct jpeg_decompress_struct codec;
    struct schnell_jpeg_error error;
    unsigned char *volatile buffer = NULL;
    *pixels = NULL;
    schnell_jpeg_install(&error);
    codec.err = &error.manager;
    if (setjmp(error.jump)) {
        jpeg_destroy_decompress(&codec);
        free(buffer);
        snprintf(message, JMSG_LENGTH_MAX, "%s", error.message);
        return -1;
    }
    jpeg_create_decompress(&codec);
    jpeg_mem_src(&codec, data, size);
    jpeg_read_header(&codec, TRUE);
    if (codec.image_width == 0 || codec.image_height == 0 ||
        (unsigned long)codec.image_width * codec.image_height > max_pixels) {
        snprintf(message, JMSG_LENGTH_MAX, "JPEG of %ux%u pixels is empty or larger than allowed",
                 (unsigned)codec.image_width, (unsigned)codec.image_height);
        jpeg_destroy_decompress(&codec);
        return -1;
    }
    codec.out_color_space = JCS_RGB;
    jpeg_start_decompress(&codec);
    size_t row_bytes = (size_t)codec.output_width * 3;
    buffer = malloc(row_bytes * codec.output_height);
    if (!buffer) {
        snprintf(message, JMSG_LENGTH_MAX, "out of memory for a %ux%u JPEG", codec.output_width, codec.output_height);
        jpeg_destroy_decompress(&codec);
        return -1;
    }
    while (codec.output_scanline < codec.output_height) {
        JSAMPROW row = buffer + (size_t)codec.output_scanline * row_bytes;
        jpeg_read_scanlines(&codec, &row, 1);
    }
    jpeg_finish_decompress(&codec);
    if (error.manager.num_warnings > 0) {
        snprintf(message, JMSG_LENGTH_MAX, "JPEG data is corrupt: %s", error.message);
        jpeg_destroy_decompress(&codec);
        free(buffer);
        return -1;
    }
    *width = (int)codec.output_width;
    *height = (int)codec.output_height;
    *pixels = buffer;
    jpeg_destroy_decompress(&codec);
    return 0;
}

// Packed RGB8 (channels 3) or RGBA8 (channels 4, alpha dropped) -> JPEG bytes in a malloc'd
// *output (the caller frees it). Returns 0, or -1 with the reason in `message`.
static inline int schnell_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                                      unsigned char **output, unsigned long *output_size, char *message) {
    struct jpeg_compress_struct codec;
    struct schnell_jpeg_error error;
    *output = NULL;
    *output_size = 0;
    schnell_jpeg_install(&error);
    codec.err = &error.manager;
    if (setjmp(error.jump)) {
        jpeg_destroy_compress(&codec);
        free(*output);
        *output = NULL;
        snprintf(message, JMSG_LENGTH_MAX, "%s", error.message);
        return -1;
    }
    jpeg_create_compress(&codec);
    jpeg_mem_dest(&codec, output, output_size);
    codec.image_width = (JDIMENSION)width;
    codec.image_height = (JDIMENSION)height;
    codec.input_components = channels;
    codec.in_color_space = channels == 4 ? JCS_EXT_RGBA : JCS_RGB;
    jpeg_set_defaults(&codec);
    jpeg_set_quality(&codec, quality, TRUE);
    jpeg_start_compress(&codec, TRUE);
    size_t row_bytes = (size_t)width * (size_t)channels;
    while (codec.next_scanline < codec.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)codec.next_scanline * row_bytes);
        jpeg_write_scanlines(&codec, &row, 1);
    }
    jpeg_finish_compress(&codec);
    jpeg_destroy_compress(&codec);
    return 0;
}
