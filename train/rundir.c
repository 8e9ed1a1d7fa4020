/* rundir.c: the run-directory lock (see rundir.h). */
#define _DEFAULT_SOURCE /* flock */
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "train/config.h"
#include "util/util.h"

void rundir_lock(RunLock *l, const char *dir) {
    xmkdir_p(dir, "out_dir");
    char path[CONFIG_PATH_MAX + 32];
    xsnprintf(path, sizeof path, "out_dir", "%s/.qat.lock", dir);
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) qat_fail("%s: cannot open the run lock: %s", path, strerror(errno));
    if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(l->fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(l->fd);
        if (e == EWOULDBLOCK)
            qat_fail("out_dir %s: another qat (pid %s) is training into this directory; wait for it or choose another "
                     "out_dir", dir, *pid ? pid : "unknown");
        qat_fail("%s: cannot lock: %s", path, strerror(e));
    }
    /* the holder's pid, for the message the next one prints; best effort:
     * the flock is the lock, and a full disk must not stop a run here */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(l->fd, 0) == 0 && pwrite(l->fd, pid, (size_t)n, 0) != n) (void)ftruncate(l->fd, 0);
}

void rundir_unlock(RunLock *l) {
    if (l->fd >= 0) close(l->fd); /* closing drops the flock */
    l->fd = -1;
}
