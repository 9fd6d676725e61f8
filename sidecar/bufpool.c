// SPDX-License-Identifier: MIT
// Relay buffer pool, see bufpool.h. Why not malloc: glibc serves buffers of this size
// from the heap, which a kernel with transparent huge pages set to "always"
// (Debian's default) backs with 2 MiB pages; madvise(MADV_DONTNEED) on a few
// pages inside them does not lower RSS for long (khugepaged fills them back).
#include "bufpool.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define CHUNK_SLOTS 64u /* 4.25 MiB of address space per mapping */

static int grow(struct bufpool *p)
{
	size_t len = (size_t)CHUNK_SLOTS * BUFPOOL_SLOT;
	if (p->total + CHUNK_SLOTS > p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 256;
		while (cap < p->total + CHUNK_SLOTS)
			cap *= 2;
		void **f = realloc(p->free, cap * sizeof(*f));
		if (!f)
			return -1;
		p->free = f;
		p->cap = cap;
	}
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -1;
	madvise(m, len, MADV_NOHUGEPAGE); /* best effort: no THP, no khugepaged */
	p->total += CHUNK_SLOTS;
	for (unsigned i = CHUNK_SLOTS; i-- > 0;)
		p->free[p->nfree++] = m + (size_t)i * BUFPOOL_SLOT;
	return 0;
}

void *bufpool_get(struct bufpool *p)
{
	p->taken++;
	if (p->nhot)
		return p->hot[--p->nhot];
	if (!p->nfree && grow(p))
		return NULL;
	return p->free[--p->nfree];
}

void bufpool_release(void *buf)
{
	if (buf)
		madvise(buf, BUFPOOL_SLOT, MADV_DONTNEED);
}

void bufpool_put(struct bufpool *p, void *buf)
{
	if (!buf)
		return;
	if (p->nhot < BUFPOOL_HOT) {
		p->hot[p->nhot++] = buf;
		return;
	}
	bufpool_release(buf);
	p->free[p->nfree++] = buf; /* fits: nfree + nhot < total <= cap */
}

unsigned bufpool_trim(struct bufpool *p)
{
	unsigned n = 0;
	if (!p->taken)
		for (; p->nhot; n++) {
			void *buf = p->hot[--p->nhot];
			bufpool_release(buf);
			p->free[p->nfree++] = buf;
		}
	p->taken = 0;
	return n;
}

void bufpool_destroy(struct bufpool *p)
{
	free(p->free);
	p->free = NULL;
	p->nfree = p->cap = 0;
	p->nhot = 0;
}
