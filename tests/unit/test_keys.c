// SPDX-License-Identifier: MIT
// Key derivation for kTLS against published vectors: RFC 8448 section 3
// (TLS 1.3 application traffic keys) and the TLS 1.2 PRF (SHA-256) vector.
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "handshake.h"
#include "tap.h"

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;
	for (; h[0] && h[1];) {
		if (h[0] == ' ') {
			h++;
			continue;
		}
		unsigned v;
		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
		h += 2;
	}
	return n;
}

static int same(const uint8_t *got, const char *want_hex)
{
	uint8_t w[128];
	size_t n = unhex(want_hex, w);
	return memcmp(got, w, n) == 0;
}

int main(void)
{
	uint8_t sec[64], out[128];
	size_t n = unhex("a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43",
			 sec);
	is(hs_kdf_tls13_expand("SHA256", sec, n, "key", out, 16), 0, "TLS 1.3 expand (server key) runs");
	ok(same(out, "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"), "RFC 8448 server application key");
	is(hs_kdf_tls13_expand("SHA256", sec, n, "iv", out, 12), 0, "TLS 1.3 expand (server iv) runs");
	ok(same(out, "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"), "RFC 8448 server application iv");
	n = unhex("9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5", sec);
	hs_kdf_tls13_expand("SHA256", sec, n, "key", out, 16);
	ok(same(out, "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"), "RFC 8448 client application key");
	hs_kdf_tls13_expand("SHA256", sec, n, "iv", out, 12);
	ok(same(out, "5b 78 92 3d ee 08 57 90 33 e5 23 d9"), "RFC 8448 client application iv");
	is(hs_kdf_tls13_expand("NOPE", sec, n, "iv", out, 12), -EINVAL, "unknown digest refused");

	/* TLS 1.2 PRF with SHA-256: the widely used "test label" vector */
	uint8_t s[16], seed[16];
	unhex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35", s);
	unhex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c", seed);
	is(hs_kdf_tls12_prf("SHA256", s, 16, "test label", seed, 16, seed, 0, out, 100), 0, "TLS 1.2 PRF runs");
	ok(same(out, "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a"),
	   "TLS 1.2 PRF SHA-256 vector (first 32 bytes)");
	/* s1 || s2 must equal one concatenated seed */
	uint8_t a[100], b[100];
	hs_kdf_tls12_prf("SHA256", s, 16, "key expansion", seed, 8, seed + 8, 8, a, 100);
	hs_kdf_tls12_prf("SHA256", s, 16, "key expansion", seed, 16, seed, 0, b, 100);
	ok(memcmp(a, b, 100) == 0, "split seed equals the concatenated seed");
	return done_testing();
}
