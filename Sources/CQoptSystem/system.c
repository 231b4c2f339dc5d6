// Linux calls that Swift's Glibc module leaves out (see CQoptSystem.h).
#define _GNU_SOURCE
#include "CQoptSystem.h"

#include <errno.h>
#include <fcntl.h>

int qopt_reserve_blocks(int fd, off_t len) {
#if defined(__linux__)
  return fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, len);
#else
  (void)fd;
  (void)len;
  errno = ENOSYS;
  return -1;
#endif
}
