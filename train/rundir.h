/* rundir.h: a run directory owned by one training at a time. The lock is an
 * flock on out_dir/.qat.lock held for the whole run (the kernel drops it when
 * the process ends, even by kill -9), so a second training into the same
 * directory stops at once instead of interleaving its metrics and
 * checkpoints with the first one's. */
#ifndef QAT_RUNDIR_H
#define QAT_RUNDIR_H

typedef struct RunLock {
    int fd;
} RunLock;

/* Creates dir if needed and takes its lock, or fails with one line naming
 * the directory and the process that holds it. */
void rundir_lock(RunLock *l, const char *dir);
void rundir_unlock(RunLock *l);

#endif
