#ifndef CQOPT_SYSTEM_H
#define CQOPT_SYSTEM_H

#include <sys/types.h>

/// Linux calls that Swift's Glibc module leaves out (declared only under _GNU_SOURCE).

/// Allocates the blocks of bytes [0, len) of `fd` without changing its size
/// (fallocate with FALLOC_FL_KEEP_SIZE). 0 on success, else -1 with errno set; never emulated
/// by writing zeros (posix_fallocate would be, on a file system without it).
int qopt_reserve_blocks(int fd, off_t len);

#endif
