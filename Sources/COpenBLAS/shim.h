#include <cblas.h>

/* OpenBLAS's own: stops its worker threads (used by its fork handler); the next threaded call
   starts them again. Not in cblas.h. */
int blas_thread_shutdown_(void);
