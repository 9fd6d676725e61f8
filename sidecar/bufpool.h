// SPDX-License-Identifier: MIT
// Relay buffers: fixed-size page-aligned slots carved from large mappings that
// are kept out of transparent huge pages, so that the pages of a buffer can be
// given back to the kernel (idle connection, closed connection) and RSS
// follows. One pool per worker; not thread-safe.
#ifndef KS_BUFPOOL_H
#define KS_BUFPOOL_H

#include <stddef.h>

#define BUFPOOL_SLOT 20480u /* 5 pages: a whole TLS record with its header */

struct bufpool {
	void **free;     /* stack of free slots (kept apart so that a free slot stays untouched) */
	size_t nfree, cap;
	size_t total;    /* slots mapped so far: cap >= total, so every slot fits back */
};

/* A BUFPOOL_SLOT-byte buffer, page-aligned; NULL when out of memory. */
void *bufpool_get(struct bufpool *p);
/* Give a buffer back (NULL is fine); its pages go back to the kernel. */
void bufpool_put(struct bufpool *p, void *buf);
/* Drop the pages of a buffer still in use; its contents become zeroes. */
void bufpool_release(void *buf);
/* Free the bookkeeping; the mappings stay (the process is ending). */
void bufpool_destroy(struct bufpool *p);

#endif
