#include <cblas.h>

/* LAPACK's Cholesky routines, which OpenBLAS exports but ships no header for (Fortran ABI:
   every argument by pointer, column-major storage). */
void dpotrf_(const char *uplo, const blasint *n, double *a, const blasint *lda, blasint *info);
void dpotri_(const char *uplo, const blasint *n, double *a, const blasint *lda, blasint *info);
