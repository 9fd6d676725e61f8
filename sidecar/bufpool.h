// SPDX-License-Identifier: MIT
// Relay buffers: fixed-size page-aligned slots carved from large mappings that
// are kept out of transparent huge pages, so that the pages of a buffer can be
// given back to the kernel (idle connection, closed connection) and RSS
// follows. One pool per worker; not thread-safe.
//
// Slots given back while the "hot" cache has room keep their pages, so that a
// new connection right after a closed one reuses them without an madvise (a
// TLB shootdown on every CPU the process runs on) and five page faults per
// buffer. bufpool_trim() gives those pages back once no slot was taken for a
// whole period.
#ifndef KS_BUFPOOL_H
#define KS_BUFPOOL_H

#include <stddef.h>

/* 17 pages: a 64 KiB read and the four TLS records made of it. A buffer's pages are
 * touched only as far as data reaches, so a connection of short queries keeps one or
 * two of them. */
#define BUFPOOL_SLOT 69632u
#define BUFPOOL_HOT 16u     /* slots kept with their pages: at most 1.1 MiB per pool */

struct bufpool {
	void **free;     /* stack of free slots (kept apart so that a free slot stays untouched) */
	size_t nfree, cap;
	size_t total;    /* slots mapped so far: cap >= total, so every slot fits back */
	void *hot[BUFPOOL_HOT]; /* free slots whose pages are still there, newest last */
	unsigned nhot;
	unsigned taken;  /* slots taken since the last bufpool_trim() */
};

/* A BUFPOOL_SLOT-byte buffer, page-aligned; NULL when out of memory. */
void *bufpool_get(struct bufpool *p);
/* Give a buffer back (NULL is fine). Its pages go back to the kernel, unless it
 * fits in the hot cache: then they go back at a bufpool_trim(). */
void bufpool_put(struct bufpool *p, void *buf);
/* Call periodically: when no slot was taken since the previous call, the hot
 * slots' pages go back to the kernel. Returns how many slots it released. */
unsigned bufpool_trim(struct bufpool *p);
/* Drop the pages of a buffer still in use; its contents become zeroes. */
void bufpool_release(void *buf);
/* Free the bookkeeping; the mappings stay (the process is ending). */
void bufpool_destroy(struct bufpool *p);

#endif
