/* The C API, as translate-c sees it (build.zig: b.addTranslateC; the include path comes from
 * pkg-config). */
#include <rocmforge.h>
