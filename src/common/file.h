/* SPDX-License-Identifier: MIT */
/* file.h — small state files written so that a crash or a full disk never
 * leaves a torn or empty one: the whole new content or the old. */
#ifndef P2P_FILE_H
#define P2P_FILE_H

#include <stdio.h>

/* Writes what fill() puts into its stream (fill returns 0 or a negative
 * errno) to PATH.tmp in PATH's directory, flushes it and, with FILE_SYNC,
 * fsyncs it, renames it over PATH and fsyncs the directory, so that after a
 * crash PATH holds the old content or the new, whole. Without FILE_SYNC
 * (a file that may lose its last minutes, written on an event loop: an
 * fsync may wait for a busy disk's journal) readers still never see a
 * torn file, but a crash may lose the new content. Returns 0 or a negative errno; on any
 * failure before the rename PATH is untouched and PATH.tmp removed (when
 * only the directory's fsync fails, PATH already has the new content but it
 * may not survive a crash). One writer per PATH at a time: PATH.tmp is a
 * fixed name, so a leftover of a crash is simply replaced. */
#define FILE_SYNC 1

int file_write_atomic(const char *path, int (*fill)(FILE *f, void *arg), void *arg, int flags);

#endif
