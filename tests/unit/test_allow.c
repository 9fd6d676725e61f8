// SPDX-License-Identifier: MIT
// Unit tests for client-certificate allow-list matching.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The users list as "a,b" for comparisons. */
static const char *joined(const char *list)
{
	static char out[512];
	size_t n = 0;
	out[0] = 0;
	for (const char *u = list; *u; u += strlen(u) + 1)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", n ? "," : "", u);
	return out;
}

/* "a,b": the users m gives a certificate with this CN and DN and no SAN. */
static const char *users_of(const struct user_map *m, const char *cn, const char *dn)
{
	char *users = NULL;
	if (user_map_users(m, cn, dn, NULL, 0, NULL, 0, &users))
		return "(out of memory)";
	const char *j = joined(users);
	free(users);
	return j;
}

static void test_user_map(void)
{
	const char *text = "# identity                          users\n"
			   "CN=alice                            app alice   # both\n"
			   "\t\n"
			   "URI:spiffe://example.org/ns/app/*   app_ro\r\n"
			   "DNS:*.reports.example.org           reports\n"
			   "CN=bob app";
	struct user_map *m = NULL;
	char err[256] = "", *users = NULL;
	is(user_map_parse(text, strlen(text), &m, err, sizeof(err)), 0, "a user map parses (%s)", err);
	is((int)user_map_rules(m), 4, "... four rules: comments, blank lines and CRLF skipped, no final newline needed");
	const char *u1[] = { "spiffe://example.org/ns/app/sa/web" }, *d1[] = { "x.reports.example.org" };
	user_map_users(m, "alice", NULL, NULL, 0, u1, 1, &users);
	is_str(joined(users), "app,alice,app_ro", "CN and URI rules both give their users");
	ok(user_list_has(users, "alice") && user_list_has(users, "app_ro"), "user_list_has finds them");
	ok(!user_list_has(users, "Alice") && !user_list_has(users, "ap") && !user_list_has(users, ""),
	   "... exactly: no case folding, no prefix, not the empty name");
	free(users);
	user_map_users(m, "Alice", NULL, d1, 1, NULL, 0, &users);
	is_str(joined(users), "reports", "CN is exact (Alice is not alice); a DNS wildcard rule matches");
	free(users);
	user_map_users(m, "", NULL, NULL, 0, NULL, 0, &users);
	ok(users && !*users && !user_list_has(users, "app"), "no name matches: the empty list, no user");
	free(users);
	user_map_users(m, "carol", NULL, NULL, 0, (const char *[]){ "spiffe://example.org/ns/other/sa/x" }, 1, &users);
	is_str(joined(users), "", "a foreign URI gets nothing");
	free(users);
	user_map_free(m);
	char long_user[80];
	memset(long_user, 'u', 64);
	long_user[64] = 0;
	ok(!user_list_has("\0", long_user), "a 64-byte name is in no list");
	char list[70] = { 0 };
	memcpy(list, long_user, 64);
	ok(!user_list_has(list, long_user), "... not even one that holds it: PostgreSQL would cut it to 63 bytes");

	const struct {
		const char *text, *why;
	} bad[] = {
		{ "alice app\n", "line 1: 'alice' is not CN=name, DN:subject, DNS:name or URI:pattern" },
		{ "DN: app\n", "line 1: 'DN:' is not CN=name" },
		{ "\"DN:\" app\n", "line 1: 'DN:' is not CN=name" },
		{ "DN:CN=etl,O=Example Corp etl\n", "line 1: 'DN:CN=etl,O=Example': double-quote a DN: identity" },
		{ "\"CN=etl,O=Example Corp,C=US\" etl\n",
		  "line 1: 'CN=etl,O=Example Corp,C=US' reads as a whole subject: to match the subject (as clientname=DN), "
		  "write the whole field double-quoted with DN: before it" },
		{ "\"DN:/C=US/O=Example Corp/CN=etl\" etl\n", "is a subject in OpenSSL's /C=../CN=.. form, read as a /regex" },
		{ "certmap /^(.*)$ \\1\n", "'certmap': there is no map-name column (pg_ident's first): drop it, and say which name" },
		{ "CN=a+UID=b x\n", "reads as a whole subject" },
		{ "\"CN=etl, o=x\" x\n", "reads as a whole subject" },
		{ "\n# x\nCN=alice\n", "line 3: 'CN=alice' names no user" },
		{ "CN= app\n", "line 1: 'CN=' is not CN=name" },
		{ "CN=a app\nCN=b a\001b\n", "line 2: a control character (byte 1)" },
		{ "CN=a uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu\n", "line 1: user 'uuuuuuuuuuuuuuuu...' is over 63 bytes" },
		{ "mymap CN=alice alice\n", "line 1: 'mymap': there is no map-name column (pg_ident's first): drop it" },
		{ "CN=alice alice,bob\n", "line 1: 'alice,bob': users are separated by blanks, not commas" },
		{ "CN=a a\rCN=b b\n", "line 1: a control character (byte 13)" },
		{ "\"CN=a b\n", "line 1: a quote is not closed" },
		{ "\"CN=a\"b c\n", "line 1: text right after a closing quote" },
		{ "/^(.*)@corp$ \\1\n", "line 1: '/^(.*)@corp$': say which name the /regex is for: CN=/..." },
		{ "CN=/^(a \\1\n", "line 1: '/^(a': " },
		{ "CN=/^a$ \\1\n", "'/^a$': a user holds \\1, but the /regex has no (group) for it" },
		{ "CN=/^(a)\\1$ x\n", "back-references (\\1 in the pattern) are not supported" },
		{ "CN=/^a{2,3}$ x\n", "counted repetition ({n,m}) is not supported" },
		{ "CN=/^[[:alpha:]]{9}$ x\n", "counted repetition" },
		{ "CN=/(a) \\1\\1\n", "'\\1\\1': \\1 more than once" },
		{ "CN=/^a++++++++++++++++++++++++++++++++++++++++$ x\n", "a *, + or ? that follows no character or group" },
		{ "CN=/^(*a)$ x\n", "follows no character or group" },
		{ "CN=/a|?b x\n", "follows no character or group" },
		{ "CN=/^*a x\n", "follows no character or group" },
		{ "CN=/^[[:alpha:][]a{3}]?$ x\n", "counted repetition" },
		{ "CN=/^[[:alpha:][](a)\\1]?$ x\n", "back-references" },
		{ "CN=/^[[=a=][]a{3}]$ x\n", "counted repetition" },
		{ "CN=/^(((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)$ x\n", "hold + too deeply" },
		{ "CN=/(a) \\1\\2\n", "'\\1\\2': a backslash other than one \\1" },
		{ "CN=a +admins\n", "line 1: '+admins': role membership (pg_ident's +role) is not supported" },
		{ "CN=a x\\1\n", "line 1: 'x\\1': \\1 needs a /regex identity" },
		{ "CN=a x\\y\n", "line 1: 'x\\y': a backslash" },
		{ "CN=a \"\"\n", "line 1: an empty user name" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = NULL;
		err[0] = 0;
		is(user_map_parse(bad[i].text, strlen(bad[i].text), &m, err, sizeof(err)), -EINVAL, "bad map %zu refused", i);
		ok(strstr(err, bad[i].why) != NULL && m == NULL, "... saying %s (%s)", bad[i].why, err);
	}
	const char *quoted = "\"CN=John Smith\"  jsmith \"+odd \"\"name\"\"\" # \"CN=x\" y\r\n"
			     "\"URI:spiffe://td/ns/a b/*\" \"all\"\n";
	is(user_map_parse(quoted, strlen(quoted), &m, err, sizeof(err)), 0, "quoted fields parse (%s)", err);
	user_map_users(m, "John Smith", NULL, NULL, 0, NULL, 0, &users);
	is_str(joined(users), "jsmith,+odd \"name\"", "a quoted CN with a space; \"\" is a quote; # after a field is a comment");
	free(users);
	user_map_users(m, "x", NULL, NULL, 0, (const char *[]){ "spiffe://td/ns/a b/sa/c" }, 1, &users);
	is_str(joined(users), "all", "a quoted URI pattern; 'all' is a role name, not a keyword");
	free(users);
	user_map_free(m);
	const char *dns = "\"DN:CN=app,OU=payments,O=Example Corp,C=US\" app_rw\n"
			  "\"DN:CN=alice\" alice\n"
			  "\"CN=Smith, John\" jsmith\n"
			  "DNS:CN=bob dns_rule\n";
	is(user_map_parse(dns, strlen(dns), &m, err, sizeof(err)), 0, "DN: rules parse (%s)", err);
	is_str(users_of(m, "app", "CN=app,OU=payments,O=Example Corp,C=US"), "app_rw",
	       "a DN: rule matches the whole subject in RFC 2253 form");
	is_str(users_of(m, "app", "CN=app,OU=payments,O=Example Corp"), "",
	       "... exactly: a DN that lacks the last RDN is another DN");
	is_str(users_of(m, "app", "cn=app,ou=payments,o=Example Corp,c=US"), "",
	       "... byte for byte, as pg_ident compares it");
	is_str(users_of(m, "alice", ""), "", "a DN: rule is not a CN= rule: an unusable DN matches nothing");
	is_str(users_of(m, "x", "CN=alice"), "alice", "DN:CN=alice matches the DN CN=alice");
	is_str(users_of(m, "bob", "CN=bob"), "", "DNS:CN=bob is a DNS-name rule: the DN CN=bob does not match it");
	is_str(users_of(m, "Smith, John", ""), "jsmith", "a CN with a comma not followed by name= is a CN");
	user_map_free(m);
	const char *res = "CN=/^(.*)@example\\.com$ \\1 \"ro_\\1\" audit\n"
			  "URI:/^spiffe://td/ns/billing/sa/([a-z_]+)$ \\1\n"
			  "\"DN:/^CN=([^,]*),OU=data,O=Example Corp,C=US$\" etl_\\1\n"
			  "CN=/^[]x]+$ bracket\n"
			  "CN=/^(q*)$ \\1\n"
			  "CN=/^(x)|^yy$ u_\\1\n"
			  "CN=/^[[:alpha:]\\1]+z$ class\n"
			  "CN=/^(([a-z0-9-]+\\.)+)example\\.com$ dom\n";
	is(user_map_parse(res, strlen(res), &m, err, sizeof(err)), 0, "/regex rules parse (%s)", err);
	is_str(users_of(m, "a\\1z", ""), "class", "[[:alpha:]\\1] is a bracket, not a back-reference");
	is_str(users_of(m, "a.b.example.com", ""), "dom", "a + over a group holding + is fine at this depth");
	is_str(users_of(m, "alice@example.com", ""), "alice,ro_alice,audit",
	       "a CN /regex: \\1 is the first group's match, in any user, quoted or not");
	is_str(users_of(m, "alice@example.com.evil", ""), "", "... anchored with ^ and $, it matches nothing else");
	is_str(users_of(m, "alice@exampleXcom", ""), "", "... and \\. is a literal dot");
	is_str(users_of(m, "none", "CN=load,OU=data,O=Example Corp,C=US"), "etl_load", "a DN /regex gives etl_load");
	is_str(users_of(m, "]x]", ""), "bracket", "a bracket expression may hold ]");
	is_str(users_of(m, "", ""), "", "no CN: no CN rule, regex or not, matches");
	is_str(users_of(m, "qq", ""), "qq", "a group that matches gives that user");
	is_str(users_of(m, "yy", ""), "", "... a group that took no part gives no user with \\1");
	char q64[65];
	memset(q64, 'q', 64);
	q64[64] = 0;
	is_str(users_of(m, q64, ""), "", "... but not one over 63 bytes, which no login could match");
	char *users_re = NULL;
	const char *u2[] = { "spiffe://td/ns/billing/sa/api", "spiffe://td/ns/billing/sa/batch", "spiffe://td/ns/x/sa/y" };
	user_map_users(m, "", "", NULL, 0, u2, 3, &users_re);
	is_str(joined(users_re), "api,batch", "a URI /regex gives a user for every URI SAN it matches");
	free(users_re);
	user_map_free(m);
	const char *emptyg = "CN=/^(x*)y$ \\1\n";
	is(user_map_parse(emptyg, strlen(emptyg), &m, err, sizeof(err)), 0, "a group that may match nothing parses");
	is_str(users_of(m, "y", ""), "", "... and a user that comes out empty is left out, not the end of the list");
	user_map_free(m);
	const char *none[] = { "", "# all access revoked\n", "\xef\xbb\xbf\n" };
	for (size_t i = 0; i < 3; i++) {
		m = NULL;
		is(user_map_parse(none[i], strlen(none[i]), &m, err, sizeof(err)), 0, "a map without rules (%zu) is valid", i);
		user_map_users(m, "alice", NULL, NULL, 0, NULL, 0, &users);
		ok(m && user_map_rules(m) == 0 && users && !*users, "... and gives no one any user");
		free(users);
		user_map_free(m);
	}
	const char *bom = "\xef\xbb\xbf" "CN=alice alice\n";
	is(user_map_parse(bom, strlen(bom), &m, err, sizeof(err)), 0, "a UTF-8 byte-order mark is skipped (%s)", err);
	is(user_map_users(m, "alice", NULL, NULL, 0, NULL, 0, &users), 0, "a shared map...");
	ok(user_map_ref(m) == m, "... takes a second reference");
	user_map_free(m);
	is_str(joined(users), "alice", "... and still answers after one is dropped");
	free(users);
	user_map_free(m);
	const char nul[] = "CN=a app\0CN=b b\n";
	is(user_map_parse(nul, sizeof(nul) - 1, &m, err, sizeof(err)), -EINVAL, "a NUL byte refused");
	char many[2048] = "CN=a";
	for (int i = 0; i < 65; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), " u%d", i);
	is(user_map_parse(many, strlen(many), &m, err, sizeof(err)), -EINVAL, "65 users on a line refused");
	ok(strstr(err, "more than 64 users") != NULL, "... saying so (%s)", err);
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
	test_user_map();
	return done_testing();
}
