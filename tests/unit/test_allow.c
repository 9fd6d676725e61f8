// SPDX-License-Identifier: MIT
// Unit tests for client-certificate allow-list matching.
#include <stdio.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "handshake.h"
#include "tap.h"

/* An unsigned certificate with subject CN cn (cnlen bytes, NULs allowed) and
 * the DNS SANs in dns; the allow-lists only look at names. */
static X509 *cert_with(const char *cn, int cnlen, const char *const *dns, int ndns)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_get_subject_name(x);
	if (cn)
		X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING, (const unsigned char *)cn, cnlen,
					   -1, 0);
	if (ndns) {
		GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
		for (int i = 0; i < ndns; i++) {
			GENERAL_NAME *g = GENERAL_NAME_new();
			ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
			ASN1_STRING_set(ia5, dns[i], (int)strlen(dns[i]));
			GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
			sk_GENERAL_NAME_push(gens, g);
		}
		X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0);
		GENERAL_NAMES_free(gens);
	}
	return x;
}

static void test_certificates(void)
{
	char *bob[] = { "bob" }, *app[] = { "app.example.com" };
	struct hs_settings s = { .allow_cn = bob, .n_allow_cn = 1 };
	char peer[192];
	const char *why = NULL;
	X509 *x = cert_with("bob", 3, NULL, 0);
	ok(hs_identity_check(&s, x, peer, sizeof(peer), &why), "CN=bob admitted by --allow-cn bob");
	is_str(peer, "CN=bob", "and logged as CN=bob");
	X509_free(x);
	x = cert_with("bob\0.attacker.example", 21, NULL, 0);
	ok(!hs_identity_check(&s, x, peer, sizeof(peer), &why), "CN 'bob\\0.attacker.example' refused");
	ok(why && strstr(why, "NUL"), "the reason names the NUL byte (%s)", why ? why : "");
	is_str(peer, "(unusable CN)", "and the log does not name it bob");
	X509_free(x);
	char longcn[300];
	memset(longcn, 'b', sizeof(longcn));
	memcpy(longcn, "bob", 3);
	x = cert_with(longcn, (int)sizeof(longcn), NULL, 0);
	ok(!hs_identity_check(&s, x, peer, sizeof(peer), &why), "a 300-byte CN is refused, not cut");
	struct hs_settings none = { 0 };
	ok(hs_identity_check(&none, x, peer, sizeof(peer), &why), "... but admitted where no CN is compared");
	X509_free(x);

	/* the matching DNS name after 20 others */
	const char *many[21];
	char names[20][32];
	for (int i = 0; i < 20; i++) {
		snprintf(names[i], sizeof(names[i]), "n%d.other.example", i);
		many[i] = names[i];
	}
	many[20] = "app.example.com";
	struct hs_settings d = { .allow_dns = app, .n_allow_dns = 1 };
	x = cert_with("client", 6, many, 21);
	ok(hs_identity_check(&d, x, peer, sizeof(peer), &why), "the 21st DNS SAN is matched");
	X509_free(x);
	x = cert_with("client", 6, many, 20);
	ok(!hs_identity_check(&d, x, peer, sizeof(peer), &why), "without it: refused");
	X509_free(x);
}

int main(void)
{
	ok(allow_match_dns("db.example.com", "db.example.com"), "exact DNS");
	ok(allow_match_dns("db.example.com", "DB.Example.COM"), "DNS is case-insensitive");
	ok(!allow_match_dns("db.example.com", "db.example.com.evil"), "DNS suffix is not a match");
	ok(allow_match_dns("*.example.com", "a.example.com"), "wildcard one label");
	ok(!allow_match_dns("*.example.com", "a.b.example.com"), "wildcard is one label only");
	ok(!allow_match_dns("*.example.com", "example.com"), "wildcard needs a label");
	ok(!allow_match_dns("*.example.com", ".example.com"), "wildcard needs a non-empty label");
	ok(!allow_match_dns("", "x"), "empty pattern matches nothing");

	const char *id = "spiffe://example.org/ns/app/sa/alice";
	ok(allow_match_uri(id, id), "exact URI");
	ok(!allow_match_uri(id, "spiffe://example.org/ns/app/sa/alice2"), "URI is not a prefix match");
	ok(allow_match_uri("spiffe://example.org/ns/app/*", id), "trailing * is a prefix");
	ok(allow_match_uri("spiffe://example.org/ns/*/sa/alice", id), "inner * matches one segment");
	ok(!allow_match_uri("spiffe://example.org/ns/*/alice", id), "inner * does not cross '/'");
	ok(!allow_match_uri("spiffe://example.org/ns/app/*", "spiffe://example.org/ns/other/sa/x"),
	   "prefix mismatch");
	ok(!allow_match_uri("spiffe://evil.org/*", id), "other trust domain refused");
	ok(allow_match_uri("spiffe://example.org/ns/app/sa/a*", id), "* at segment end");
	ok(allow_match_uri("spiffe://example.org/ns/**/sa/alice", id), "** is * (within a segment)");
	ok(allow_match_uri("spiffe://example.org/ns/a**", id), "trailing ** is a prefix");
	ok(!allow_match_uri("spiffe://example.org/*/app", "spiffe://example.org/ns/x/app"), "* does not cross '/' to match");
	ok(allow_match_uri("*a*b", "xxaxxb") && !allow_match_uri("*a*b", "xxaxxbx"), "two stars in a segment");
	char stars[80] = "", aaa[3001];
	for (int i = 0; i < 30; i++)
		strcat(stars, "*a");
	strcat(stars, "b");
	memset(aaa, 'a', 3000);
	aaa[3000] = 0;
	/* a recursion per star takes longer than the test's life here */
	ok(!allow_match_uri(stars, aaa), "30 stars against a 3000-byte URI: no match, answered at once");

	char *cns[] = { "alice" }, *dns[] = { "*.app.example.org" }, *uris[] = { "spiffe://example.org/ns/app/*" };
	struct hs_settings s = { 0 };
	ok(allow_check(&s, "anyone", NULL, 0, NULL, 0), "no rules: everyone allowed");
	s.allow_cn = cns;
	s.n_allow_cn = 1;
	ok(allow_check(&s, "alice", NULL, 0, NULL, 0), "CN allowed");
	ok(!allow_check(&s, "mallory", NULL, 0, NULL, 0), "other CN refused");
	ok(!allow_check(&s, NULL, NULL, 0, NULL, 0), "no CN refused");
	s.allow_dns = dns;
	s.n_allow_dns = 1;
	const char *d1[] = { "x.y", "bob.app.example.org" };
	ok(allow_check(&s, "bob", d1, 2, NULL, 0), "any DNS SAN may match");
	s.allow_uri = uris;
	s.n_allow_uri = 1;
	const char *u1[] = { "spiffe://example.org/ns/app/sa/carol" }, *u2[] = { "spiffe://evil.org/x" };
	ok(allow_check(&s, "carol", NULL, 0, u1, 1), "URI SAN allowed");
	ok(!allow_check(&s, "mallory", NULL, 0, u2, 1), "foreign URI SAN refused");
	test_certificates();
	return done_testing();
}
