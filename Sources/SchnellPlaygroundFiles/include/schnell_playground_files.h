#ifndef SCHNELL_PLAYGROUND_FILES_H
#define SCHNELL_PLAYGROUND_FILES_H

#include <stddef.h>

/// One file of the playground page (Sources/SchnellServer/Playground/), compiled into the binary.
typedef struct {
    const char *name;           // file name inside the Playground folder, e.g. "index.html"
    const unsigned char *bytes;
    size_t size;
} SchnellPlaygroundFile;

/// The page's files; *count is 0 when the compiler could not embed them (no C23 #embed).
const SchnellPlaygroundFile *schnell_playground_files(size_t *count);

#endif
