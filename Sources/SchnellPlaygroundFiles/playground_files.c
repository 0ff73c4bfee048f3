// The playground page's files, copied into the binary at compile time with C23 #embed (clang 19
// and later), so that `schnell serve` serves the page wherever the binary is copied. SwiftPM's
// resource bundles are found next to the executable or in the build folder, and Bundle.module
// stops the process (fatalError) when neither exists. Clang lists embedded files in its
// dependency file, so editing a page file rebuilds this one.
//
// A new page file needs a line here; the folder is excluded from the SchnellServer target.
#include "schnell_playground_files.h"

#if defined(__has_embed)
#pragma clang diagnostic ignored "-Wc23-extensions"

static const unsigned char index_html[] = {
#embed "../SchnellServer/Playground/index.html"
};
static const unsigned char playground_js[] = {
#embed "../SchnellServer/Playground/playground.js"
};
static const unsigned char playground_css[] = {
#embed "../SchnellServer/Playground/playground.css"
};

static const SchnellPlaygroundFile files[] = {
    {"index.html", index_html, sizeof index_html},
    {"playground.js", playground_js, sizeof playground_js},
    {"playground.css", playground_css, sizeof playground_css},
};

const SchnellPlaygroundFile *schnell_playground_files(size_t *count) {
    *count = sizeof files / sizeof files[0];
    return files;
}

#else

const SchnellPlaygroundFile *schnell_playground_files(size_t *count) {
    *count = 0;
    return NULL;
}

#endif
