// SPDX-License-Identifier: MIT
// Unit tests for client-certificate allow-list matching.
#include "handshake.h"
#include "tap.h"

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
	return done_testing();
}
