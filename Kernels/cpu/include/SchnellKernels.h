// The C kernel module's umbrella header: every kernel family's declarations.
#include "schnell_kernels.h"
#include "schnell_conv.h"
#include "schnell_text.h"
