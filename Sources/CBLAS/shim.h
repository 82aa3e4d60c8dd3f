// The only C surface of OpenBLAS that distill uses. Everything above sees Swift types
// through Sources/Core/BLAS.swift.
#ifndef DISTILL_CBLAS_SHIM_H
#define DISTILL_CBLAS_SHIM_H

#include <cblas.h>
#include <dlfcn.h>
#include <stddef.h>

// OpenBLAS built with DYNAMIC_ARCH (Debian's is) picks its kernel table once, in a library
// constructor, from OPENBLAS_CORETYPE or its own CPU detection. These entry points are
// exported by such builds but are not in any header; they are looked up at run time so
// that a single-architecture OpenBLAS still links and simply reports that it cannot switch.
typedef void (*distill_void_fn)(void);

static inline int distill_blas_can_reselect(void) {
    return dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init") != NULL
        && dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit") != NULL;
}

/// Re-runs OpenBLAS's kernel selection (which reads OPENBLAS_CORETYPE again).
/// Returns 0 on success, -1 when this OpenBLAS build cannot switch kernels.
static inline int distill_blas_reselect(void) {
    distill_void_fn quit = (distill_void_fn)dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    distill_void_fn init = (distill_void_fn)dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    if (quit == NULL || init == NULL) return -1;
    quit();
    init();
    return 0;
}


/// Re-reads OpenBLAS's environment variables and restarts its thread server, so that a
/// changed OPENBLAS_THREAD_TIMEOUT (how long idle workers spin before sleeping) applies.
/// Returns 0 on success, -1 when this OpenBLAS build lacks the entry points.
static inline int distill_blas_restart_threads(void) {
    distill_void_fn read_env = (distill_void_fn)dlsym(RTLD_DEFAULT, "openblas_read_env");
    distill_void_fn shutdown = (distill_void_fn)dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
    distill_void_fn init = (distill_void_fn)dlsym(RTLD_DEFAULT, "blas_thread_init");
    if (read_env == NULL || shutdown == NULL || init == NULL) return -1;
    read_env();
    shutdown();
    init();
    return 0;
}

#endif
