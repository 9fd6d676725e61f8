// SPDX-License-Identifier: MIT
// Private to sidecar/: the connection object shared by conn.c (negotiation,
// handshake, startup, connect, lifecycle) and relay.c (the data path).
#ifndef KS_CONN_INT_H
#define KS_CONN_INT_H

#include "sidecar.h"

#include <stdint.h>
#include <sys/socket.h>

#include "bufpool.h"
#include "handshake.h"
#include "log.h"
#include "pgproto.h"

#define TLS_HDR 5
#define TLS_MAX_RECORD (16384 + 2048) /* largest ciphertext body we accept */
#define CBUF_SIZE (TLS_HDR + TLS_MAX_RECORD)
/* A read from the pooler: 64 KiB, four full TLS records, so that bulk results take a
 * quarter of the recv and send calls of one record per read (bench/RESULTS.md) */
#define BBUF_SIZE 65536
/* TLS output drained into bbuf per send: the records made of a whole BBUF_SIZE read
 * (16 KiB + 22 bytes each in TLS 1.3, a little more in 1.2) go out in one send (in
 * two or more where the client asked for smaller records: max_fragment_length) */
#define BBUF_OUT BUFPOOL_SLOT
#define TLS_RECORD_OVERHEAD 256 /* header, explicit IV, MAC or tag, padding: at most */
/* A read from the client in the relay (ciphertext, or plaintext from kTLS), and the
 * plaintext sent on to the pooler at once: several records where they have arrived */
#define CLI_READ 65536
#define PIPE_CHUNK 65536 /* a default pipe holds 16 pages */
#define IDLE_RELEASE_MS 1000 /* a relay quiet this long gives its buffers' pages back */
_Static_assert(CBUF_SIZE <= BUFPOOL_SLOT && CLI_READ <= BUFPOOL_SLOT && BBUF_SIZE <= BUFPOOL_SLOT,
	       "relay buffers fit a pool slot");
_Static_assert(BBUF_OUT >= BBUF_SIZE + (BBUF_SIZE / 16384) * TLS_RECORD_OVERHEAD,
	       "the records of one bbuf read fit");
/* TLS output a client may leave unread while it sends: what reading made (KeyUpdate
 * answers, alerts), and the little of the relay's own records queued behind it */
#define TLS_SIDE_OUT_MAX (64 * 1024)

enum phase { PH_NEGOTIATE, PH_HANDSHAKE, PH_STARTUP, PH_CONNECT, PH_CANCEL_WAIT, PH_RELAY, PH_FINAL, PH_CLOSING };

/* What to do once the client-bound output queue is flushed. */
enum after { AF_NONE, AF_NEGOTIATE, AF_HANDSHAKE_READ, AF_HANDSHAKE_DONE, AF_CLOSE };

struct dir {
	unsigned len, off;  /* bytes in the send window */
	uint8_t done;       /* this direction saw EOF and propagated it */
	uint8_t eof_pending;
	uint8_t splicing;   /* the write in flight moves bytes out of the pipe */
	uint8_t spl_in;     /* the read in flight splices into the pipe */
	int pipe[2];        /* splice relay: read end, write end */
};

struct conn {
	struct conn *prev, *next;
	struct worker *w;
	uint64_t id;
	int cfd, bfd;
	uint8_t phase;
	uint8_t after;            /* enum after */
	uint8_t saw_ssl, saw_gss, direct, cancel, plain;
	uint8_t connecting, connect_timed_out;
	uint8_t be_idx, be_tried; /* the backend address in use, and how many were tried */
	uint8_t be_errs[KS_MAX_BACKENDS]; /* the errno each address failed with, 0 if none */
	uint8_t ktls_tx, ktls_rx, notify_sent, splice;
	uint8_t tx_rekey;         /* the client asked for our KeyUpdate: send it when TX is idle */
	uint8_t tls_rd_failed;    /* a client record failed behind the batch being sent */
	uint8_t bufs_released;    /* cbuf/bbuf pages given back since the last completion */
	uint8_t reason;           /* enum close_reason once closing */
	struct io_op cli_rd, cli_wr, be_rd, be_wr;
	struct hs_conn *tls;
	struct hs_traffic traffic; /* TLS 1.3 in kTLS: secrets to follow KeyUpdates */
	uint8_t *cbuf;            /* client reads: startup packets, TLS records, c2b relay */
	uint8_t *bbuf;            /* client writes: TLS output, b2c relay */
	uint8_t *pkt;             /* the first packet to forward (StartupMessage/CancelRequest) */
	char *cert_users;         /* --client-user-match: the users the client's certificate may log
	                             in as, "a\0b\0\0"; NULL: any user */
	unsigned have, need;      /* exact-read progress into cbuf or pkt */
	unsigned pkt_len;
	struct dir c2b, b2c;
	uint64_t started_ms, deadline_ms, active_ms;
	uint64_t hs_start_us;
	struct sockaddr_storage local;
	unsigned backend_port;
	uint64_t bytes_in, bytes_out;
	struct sockaddr_storage peer;
	char user[64], database[64];
	/* kept after the SSL is freed; written under w->conns_lock for show conns */
	char tls_version[8], tls_cipher[48], tls_peer[128], tls_sni[128];
	/* The message boundaries of both directions, walked wherever the relay sees the
	 * plaintext: --idle-timeout counts the answers the pooler owes (ReadyForQuery
	 * ends the answer to a Query, Sync or FunctionCall), and a close of the
	 * sidecar's own sends its FATAL only between two client-bound messages */
	struct pg_frames c2b_frames, b2c_frames;
	uint32_t owed;
	uint8_t track_owed;       /* boundaries known: the relay sees the plaintext */
	uint8_t copy_in;          /* the backend entered a COPY FROM STDIN since its last ReadyForQuery */
	uint8_t tx_status;        /* of the last ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' failed one; 0 */
	uint8_t unsynced;         /* the client sent extended-protocol messages with no Sync after them yet */
	uint8_t counted_tls;      /* counted in the active_* gauges */
	int err;                  /* the errno that ended the connection, for the close log */
};


static inline struct engine *E(struct conn *c) { return c->w->eng; }
static inline struct config *CFG(struct conn *c) { return c->w->sc->cfg; }

/* The last ReadyForQuery said the session is inside a transaction, or a failed one. */
static inline int conn_in_transaction(const struct conn *c) { return c->tx_status == 'T' || c->tx_status == 'E'; }

/* The shorter of --idle-timeout and --idle-in-transaction-timeout (not in splice: no
 * transaction status there), of those set; 0 if neither is: the idle timer's first
 * check. Inline: every completion of a relayed connection asks. */
static inline uint64_t relay_idle_first_ms(const struct conn *c)
{
	const struct config *cfg = c->w->sc->cfg;
	uint64_t a = (uint64_t)cfg->idle_timeout_ms, b = c->track_owed ? (uint64_t)cfg->idle_tx_timeout_ms : 0;
	return a && b ? (a < b ? a : b) : a ? a : b;
}

/* *slot (c->cbuf or c->bbuf), taken from the worker's pool on first use; NULL if out of memory. */
static inline uint8_t *conn_buf(struct conn *c, uint8_t **slot)
{
	if (!*slot)
		*slot = bufpool_get(&c->w->bufs);
	return *slot;
}

/* Send n bytes of buf on fd as direction d's window; the completion comes back on op. */
static inline void dir_send(struct conn *c, struct io_op *op, struct dir *d, int fd, const void *buf, unsigned n)
{
	d->len = n;
	d->off = 0;
	d->splicing = 0;
	engine_send(c->w->eng, op, fd, buf, n);
}

/* Move n bytes from d's pipe to fd; the completion comes back on op. */
static inline void dir_splice_out(struct conn *c, struct io_op *op, struct dir *d, int fd, unsigned n)
{
	d->len = n;
	d->off = 0;
	d->splicing = 1;
	engine_splice(c->w->eng, op, d->pipe[0], fd, n, 0);
}

/* conn.c */
/* After a TLS read: records OpenSSL made while reading (a KeyUpdate's answer, a
 * no_renegotiation alert) go out now unless a send is in flight, which drains them
 * in order after its own. A client that makes more pile up than TLS_SIDE_OUT_MAX
 * without reading is closed. 0, or -1 if c is closing. */
int conn_tls_side_output(struct conn *c);
/* Start closing: cancel what is in flight; the last completion frees c. */
void conn_close(struct conn *c, enum close_reason why);
/* conn_close for an I/O error: res (-errno) is logged with the close line. */
void conn_fail(struct conn *c, enum close_reason why, int res);
/* One log line about c with extra key=value pairs (may be NULL). */
void conn_log(struct conn *c, enum log_level lvl, const char *msg, const char *extra);
/* Note that kTLS was not (wholly) used for c: counted per step in the worker's
 * stats, logged once per step per process. */
void conn_ktls_fallback(struct conn *c, enum ktls_step step, int err);
/* A client read completed (any phase). */
void conn_on_cli_read(struct conn *c, int res);
/* Read the first packet inside TLS. */
void conn_startup_pump(struct conn *c);

/* relay.c */
/* The first packet reached the pooler: relay both ways (copy or splice). */
void relay_start(struct conn *c);
/* Client -> pooler: decrypt what is buffered, or read/splice more. */
void relay_c2b_pump(struct conn *c);
/* Pooler -> client: send queued ciphertext, then read the pooler again. */
void relay_b2c_flush(struct conn *c);
/* Completions of the relay's reads. */
void relay_cli_read(struct conn *c, int res);
void relay_cli_spliced(struct conn *c, int res);
void relay_be_read(struct conn *c, int res);
/* kTLS RX stopped at a non-data record: read and act on it. */
void relay_ktls_record(struct conn *c);
/* A send or pipe splice finished: 1 if more of d is in flight, 0 if done, -errno. */
int relay_send_progress(struct conn *c, struct io_op *op, struct dir *d, int res, int fd);
/* Nothing is being sent to the client: answer a requested KeyUpdate now. 1 if c closed. */
int relay_tx_rekey(struct conn *c);
/* An idle connection gives back what OpenSSL's BIOs grew to, its record buffers and,
 * with POOL_TOO (the engine has no read in flight into them), the pages of its relay
 * buffers, keeping the buffers (the recvs waiting on them refault fresh pages when
 * data comes). */
void relay_release_idle(struct conn *c, int pool_too);
/* Whether the pooler still owes the client an answer (a query is running): such a
 * connection is not idle. 0 where the relay does not see the plaintext (splice), once
 * the pooler hung up, or while a send to the client is stuck. */
int relay_owed(const struct conn *c);
/* The idle limit for c now (0: none): inside a transaction the shorter of the two set,
 * else --idle-timeout; *in_tx_limit: 1 where --idle-in-transaction-timeout is it. */
uint64_t relay_idle_limit(const struct conn *c, int *in_tx_limit);
/* Closing c on the sidecar's own account (idle timeout, shutdown): PostgreSQL's
 * FATAL for it first, the way a backend ends a session, so that the client can tell
 * why. Best effort and never blocking, like the close_notify that follows it; sent
 * only where the client-bound stream is known to sit between two messages with
 * nothing of it still going out, in the kernel's send queue as well (not in splice
 * mode, which sees no plaintext). 1 if it went out (or is queued in front of the
 * close_notify). */
int relay_send_fatal(struct conn *c, const char *sqlstate, const char *msg);
/* Whether c waits between transactions (--drain-close-idle): its last ReadyForQuery
 * said idle ('I'), no answer is owed, no extended-protocol batch waits for its Sync,
 * both directions sit between two messages and nothing is going out. 0 where the
 * relay does not see the plaintext. */
int relay_between_transactions(const struct conn *c);
/* For show conns, read from the admin thread (single bytes, at worst a step stale):
 * login, idle, active, in_transaction, failed_transaction, or "" (splice). */
const char *relay_txn_state(const struct conn *c);

#endif
