// Private: the block types' and fp8 e5m2's conversions to float32 (quant.c), which
// schnell_convert_to_f32 and its reference hand these dtypes to.
#ifndef SCHNELL_QUANT_H
#define SCHNELL_QUANT_H

#include <stddef.h>

// `count` values of a block type (a multiple of its block values) or of F8_E5M2.
void schnell_dequantize(const void *source, int dtype, float *destination, size_t count);
void schnell_dequantize_reference(const void *source, int dtype, float *destination, size_t count);

#endif
