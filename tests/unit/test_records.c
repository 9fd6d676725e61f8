// SPDX-License-Identifier: MIT
// Userspace TLS records through hs_conn (the server) from a real OpenSSL client
// over memory BIOs, fed the ways a socket delivers them: several records at once,
// one byte at a time, a KeyUpdate whose following record is cut in two, a record
// larger than the read buffer, garbage, close_notify; in TLS 1.3 and 1.2. Guards
// hs_conn_read's shortcut of not calling SSL_read without a whole record, and checks
// that an idle connection gives back what its BIOs grew to (a 64 KiB write, a 40 KB
// read with part of a record still held) and reads and writes on after that.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "handshake.h"
#include "selfsigned.h"
#include "tap.h"

#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void); /* libasan's; no header on Debian */
static size_t heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
#include <malloc.h>
static size_t heap_in_use(void) { return mallinfo2().uordblks; }
#endif

static char cert_path[64], key_path[64];

static int write_identity(void)
{
	EVP_PKEY *pk = NULL;
	X509 *crt = NULL;
	int fd1, fd2, rc = -1;
	FILE *f1 = NULL, *f2 = NULL;
	snprintf(cert_path, sizeof(cert_path), "/tmp/ks-rec-crt-XXXXXX");
	snprintf(key_path, sizeof(key_path), "/tmp/ks-rec-key-XXXXXX");
	if (selfsigned_make(&pk, &crt) || (fd1 = mkstemp(cert_path)) < 0)
		goto out;
	if ((fd2 = mkstemp(key_path)) < 0) {
		close(fd1);
		goto out;
	}
	f1 = fdopen(fd1, "w");
	f2 = fdopen(fd2, "w");
	if (f1 && f2 && PEM_write_X509(f1, crt) && PEM_write_PrivateKey(f2, pk, NULL, NULL, 0, NULL, NULL))
		rc = 0;
out:
	if (f1)
		fclose(f1);
	if (f2)
		fclose(f2);
	X509_free(crt);
	EVP_PKEY_free(pk);
	return rc;
}

/* Ciphertext the client has written, taken out of its BIO. */
static int take(SSL *cli, unsigned char *buf, int cap)
{
	int n = BIO_read(SSL_get_wbio(cli), buf, cap);
	return n > 0 ? n : 0;
}

/* Server output back to the client. */
static void to_client(struct hs_conn *s, SSL *cli)
{
	unsigned char buf[8192];
	size_t n;
	while ((n = hs_conn_drain(s, buf, sizeof(buf))))
		BIO_write(SSL_get_rbio(cli), buf, (int)n);
}

/* Everything hs_conn_read gives until it wants more input (or fails: then *err). */
static size_t read_all(struct hs_conn *s, unsigned char *out, size_t cap, size_t chunk, int *err)
{
	size_t got = 0;
	int r;
	*err = 0;
	while (got < cap && (r = hs_conn_read(s, out + got, chunk < cap - got ? chunk : cap - got)) > 0)
		got += (size_t)r;
	if (got < cap && r < 0)
		*err = r;
	return got;
}

static void records(struct hs_ctx *ctx, int version)
{
	const char *v = version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2";
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(cctx, version);
	SSL_CTX_set_max_proto_version(cctx, version);
	SSL *cli = SSL_new(cctx);
	SSL_set_bio(cli, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_connect_state(cli);
	struct hs_conn *s = NULL;
	is(hs_conn_new(ctx, 0, &s), 0, "%s: server connection", v);
	unsigned char wire[70000], out[70000], big[40000];
	int n, hs = 0, err;
	for (int i = 0; i < 10 && hs != 1; i++) {
		SSL_do_handshake(cli);
		n = take(cli, wire, sizeof(wire));
		hs_conn_feed(s, wire, (size_t)n);
		hs = hs_conn_handshake(s);
		to_client(s, cli);
	}
	SSL_do_handshake(cli);
	n = take(cli, wire, sizeof(wire)); /* TLS 1.3: nothing; the client is done */
	ok(hs == 1 && SSL_is_init_finished(cli), "%s: handshake done", v);
	if (n)
		hs_conn_feed(s, wire, (size_t)n);

	/* two records in one feed */
	SSL_write(cli, "first", 5);
	SSL_write(cli, "second", 6);
	hs_conn_feed(s, wire, (size_t)take(cli, wire, sizeof(wire)));
	size_t got = read_all(s, out, sizeof(out), sizeof(out), &err);
	ok(got == 11 && memcmp(out, "firstsecond", 11) == 0 && !err, "%s: two records in one feed", v);
	is(hs_conn_read(s, out, sizeof(out)), 0, "%s: ... then it wants more", v);

	/* one byte at a time: nothing until the record is whole, then all of it */
	SSL_write(cli, "byte by byte", 12);
	n = take(cli, wire, sizeof(wire));
	int early = 0;
	for (int i = 0; i < n - 1; i++) {
		hs_conn_feed(s, wire + i, 1);
		early += hs_conn_read(s, out, sizeof(out)) != 0;
	}
	ok(!early, "%s: a record fed a byte at a time gives nothing before its last byte", v);
	hs_conn_feed(s, wire + n - 1, 1);
	got = read_all(s, out, sizeof(out), sizeof(out), &err);
	ok(got == 12 && memcmp(out, "byte by byte", 12) == 0, "%s: ... and the whole record with it", v);

	/* a record larger than the caller's buffer: SSL_pending holds the rest */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 7 + 3);
	SSL_write(cli, big, sizeof(big));
	n = take(cli, wire, sizeof(wire));
	hs_conn_feed(s, wire, (size_t)(n - 100)); /* the last record stays incomplete */
	got = read_all(s, out, sizeof(out), 1000, &err);
	ok(got < sizeof(big) && got >= 16384 && !err, "%s: 1000-byte reads of 40 KB give whole records only (%zu)", v, got);
	/* idle with part of a record held: the input BIO keeps only that part */
	size_t before = heap_in_use();
	hs_conn_shrink_bios(s);
	size_t after = heap_in_use();
	ok(after + 30000 < before, "%s: idle, a part record held, the input BIO gives back %zu bytes", v,
	   before - after);
	hs_conn_feed(s, wire + n - 100, 100);
	got += read_all(s, out + got, sizeof(out) - got, 1000, &err);
	ok(got == sizeof(big) && memcmp(out, big, sizeof(big)) == 0, "%s: ... and then the rest, intact", v);

	/* idle: OpenSSL's buffers go back, and the next record still reads */
	hs_conn_release_buffers(s);
	SSL_write(cli, "after idle", 10);
	hs_conn_feed(s, wire, (size_t)take(cli, wire, sizeof(wire)));
	got = read_all(s, out, sizeof(out), sizeof(out), &err);
	ok(got == 10 && memcmp(out, "after idle", 10) == 0, "%s: a record after the buffers were released", v);
	to_client(s, cli);

	if (version == TLS1_3_VERSION) {
		/* KeyUpdate, then a data record cut in the middle: OpenSSL takes the KeyUpdate
		 * and part of the next record, so the next read must go to OpenSSL again */
		SSL_key_update(cli, SSL_KEY_UPDATE_NOT_REQUESTED);
		SSL_write(cli, "rekeyed", 7);
		n = take(cli, wire, sizeof(wire));
		int r1 = 5 + (wire[3] << 8 | wire[4]);
		hs_conn_feed(s, wire, (size_t)r1 + 3);
		is(hs_conn_read(s, out, sizeof(out)), 0, "TLS 1.3: KeyUpdate, then a cut record: wants more");
		hs_conn_feed(s, wire + r1 + 3, (size_t)(n - r1 - 3));
		got = read_all(s, out, sizeof(out), sizeof(out), &err);
		ok(got == 7 && memcmp(out, "rekeyed", 7) == 0, "TLS 1.3: ... then the record under the new key");
		to_client(s, cli);
	}

	/* answers from the server reach the client */
	is(hs_conn_write(s, "answer", 6), 0, "%s: server writes", v);
	to_client(s, cli);
	n = SSL_read(cli, out, sizeof(out));
	ok(n == 6 && memcmp(out, "answer", 6) == 0, "%s: the client reads the answer", v);

	/* a relay's 64 KiB read from the pooler: four records, drained in one piece of at
	 * most 256 bytes of overhead each (the sidecar's buffer is sized on that) */
	for (size_t i = 0; i < 65536; i++)
		out[i] = (unsigned char)(i * 13 + 1);
	is(hs_conn_write(s, out, 65536), 0, "%s: a 64 KiB write", v);
	size_t ct = hs_conn_drain(s, wire, sizeof(wire));
	ok(ct > 65536 && ct <= 65536 + 4 * 256 && !hs_conn_pending_out(s),
	   "%s: ... is %zu bytes of records, drained at once", v, ct);
	BIO_write(SSL_get_rbio(cli), wire, (int)ct);
	got = 0;
	while (got < 65536 && (n = SSL_read(cli, big, sizeof(big))) > 0)
		got += memcmp(big, out + got, (size_t)n) ? 0 : (size_t)n;
	is(got, (size_t)65536, "%s: ... and the client reads it intact", v);
	before = heap_in_use();
	hs_conn_shrink_bios(s);
	after = heap_in_use();
	ok(after + 60000 < before, "%s: idle, the output BIO's %zu bytes go back", v, before - after);
	is(hs_conn_write(s, "still", 5), 0, "%s: a write after that", v);
	to_client(s, cli);
	n = SSL_read(cli, out, sizeof(out));
	ok(n == 5 && memcmp(out, "still", 5) == 0, "%s: ... reaches the client", v);

	/* close_notify */
	SSL_shutdown(cli);
	hs_conn_feed(s, wire, (size_t)take(cli, wire, sizeof(wire)));
	is(hs_conn_read(s, out, sizeof(out)), -EPIPE, "%s: close_notify reads as -EPIPE", v);
	hs_conn_free(s);
	SSL_free(cli);
	SSL_CTX_free(cctx);
}

static void garbage(struct hs_ctx *ctx)
{
	struct hs_conn *s = NULL;
	unsigned char junk[64];
	memset(junk, 0x41, sizeof(junk));
	hs_conn_new(ctx, 0, &s);
	hs_conn_feed(s, junk, sizeof(junk));
	ok(hs_conn_handshake(s) < 0, "garbage instead of a ClientHello fails the handshake");
	hs_conn_free(s);
}

int main(void)
{
	if (write_identity()) {
		ok(0, "test identity written");
		return done_testing();
	}
	struct hs_settings set = {
		.cert = cert_path,
		.key = key_path,
		.ciphers = "HIGH:!aNULL",
		.ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
	};
	struct hs_ctx *ctx = NULL;
	char err[256] = "";
	is(hs_ctx_load(&set, &ctx, err, sizeof(err)), 0, "server context loads (%s)", err);
	unlink(cert_path);
	unlink(key_path);
	if (!ctx)
		return done_testing();
	records(ctx, TLS1_3_VERSION);
	records(ctx, TLS1_2_VERSION);
	garbage(ctx);
	hs_ctx_put(ctx);
	return done_testing();
}
