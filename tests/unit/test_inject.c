// SPDX-License-Identifier: MIT
// Unit tests for k8s/: the YAML tree (quoting, editing, byte offsets of UTF-8
// input), inject_string on a Pod (idempotent, errors with lines), and agreement
// with sidecar/config.c: every KTLS_SIDECAR_* variable the injector sets, and the
// example ConfigMap's config file, must be options the daemon accepts.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "inject.h"
#include "inject_int.h"
#include "tap.h"

static const char pod[] = "# comment kept\n"
			  "apiVersion: v1\n"
			  "kind: Pod\n"
			  "metadata: {name: p}\n"
			  "spec:\n"
			  "  containers:\n"
			  "  - name: pgbouncer\n"
			  "    image: pgbouncer\n";

static int inject(const char *in, char **out, char *err, size_t errlen, int argc, char **argv)
{
	size_t n;
	return inject_string(argc, argv, "t.yaml", in, strlen(in), out, &n, err, errlen);
}

static void test_quoting(void)
{
	static const struct { const char *s; int style; } cases[] = {
		{ "on", YAML_DOUBLE_QUOTED_SCALAR_STYLE },      { "No", YAML_DOUBLE_QUOTED_SCALAR_STYLE },
		{ "", YAML_DOUBLE_QUOTED_SCALAR_STYLE },        { "0.0.0.0:5432", YAML_DOUBLE_QUOTED_SCALAR_STYLE },
		{ "6432", YAML_DOUBLE_QUOTED_SCALAR_STYLE },    { "1e3", YAML_DOUBLE_QUOTED_SCALAR_STYLE },
		{ "a: b", YAML_DOUBLE_QUOTED_SCALAR_STYLE },    { "*x", YAML_DOUBLE_QUOTED_SCALAR_STYLE },
		{ "/etc/x.crt", YAML_PLAIN_SCALAR_STYLE },      { "unix:/run/.s.PGSQL.6432", YAML_PLAIN_SCALAR_STYLE },
		{ "50m", YAML_PLAIN_SCALAR_STYLE },             { "KTLS_SIDECAR_KEY", YAML_PLAIN_SCALAR_STYLE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kyaml_node *n = kyaml_str(cases[i].s);
		is(n ? n->style : -1, cases[i].style, "'%s' is written %s", cases[i].s,
		   cases[i].style == YAML_PLAIN_SCALAR_STYLE ? "plain" : "double-quoted");
		kyaml_free(n);
	}
}

static void test_edit(void)
{
	int rc = 0;
	struct kbuf b = { 0 };
	struct kyaml_node *m = kyaml_map(), *s = kyaml_seq();
	kyaml_put(m, "b", kyaml_int(1), &rc);
	kyaml_put_before(m, "b", "a", kyaml_bool(true), &rc);
	kyaml_put(m, "b", kyaml_str("two"), &rc);
	kyaml_push(s, kyaml_str("x"), &rc);
	kyaml_insert(s, 0, kyaml_str("w"), &rc);
	kyaml_put(m, "list", s, &rc);
	kyaml_put(m, "gone", kyaml_str("soon"), &rc);
	ok(kyaml_del(m, "gone") && !kyaml_del(m, "gone"), "kyaml_del removes a key once");
	is(rc, 0, "builders succeed");
	is(kyaml_emit(m, &b), 0, "emit");
	is_str(b.p, "a: true\nb: two\nlist:\n- w\n- x\n", "put_before, replace in place, insert");
	kyaml_put(NULL, "k", kyaml_str("v"), &rc);
	is(rc, -ENOMEM, "a NULL map makes the sticky error -ENOMEM (and the value is freed)");
	kyaml_put(m, "k", kyaml_str("v"), &rc);
	is(kyaml_get(m, "k") == NULL, 1, "after an error the builders do nothing");
	kyaml_free(m);
	kbuf_free(&b);
}

static void test_reader(void)
{
	static const char in[] = "\xef\xbb\xbf# \xc3\xbc \xe2\x98\x83\na: \"\xc3\xa9t\xc3\xa9\"\n---\nb: [1, 2]  # c\n";
	struct kyaml_reader r;
	struct kyaml_doc d;
	char err[128];
	is(kyaml_reader_init(&r, in, sizeof(in) - 1, err, sizeof(err)), 0, "reader init");
	is(kyaml_reader_next(&r, &d, err, sizeof(err)), 0, "first document");
	is((long)d.root_start, (long)(strchr(in, 'a') - in), "root offset counts bytes after a BOM and UTF-8");
	is((long)d.content_end, (long)(strstr(in, "t\xc3\xa9\"") + 4 - in), "content ends after the quoted UTF-8 scalar");
	kyaml_free(d.root);
	is(kyaml_reader_next(&r, &d, err, sizeof(err)), 0, "second document");
	ok(d.explicit_start, "it starts with ---");
	is((long)d.content_end, (long)(strchr(in, ']') + 1 - in), "flow sequence end is real content");
	kyaml_free(d.root);
	is(kyaml_reader_next(&r, &d, err, sizeof(err)), 1, "then the end");
	kyaml_reader_fini(&r);
}

static void test_inject(void)
{
	char err[512], *out = NULL, *again = NULL, *a1[] = { "--mtls" };
	is(inject(pod, &out, err, sizeof(err), 0, NULL), 0, "inject a Pod");
	ok(out && strncmp(out, "# comment kept\n", 15) == 0, "the comment above it stays");
	ok(out && strstr(out, "initContainers:\n  - name: ktls-sidecar\n"), "native sidecar added");
	is(out ? inject(out, &again, err, sizeof(err), 0, NULL) : -1, 0, "inject the output");
	ok(out && again && strcmp(out, again) == 0, "... byte-identical");
	free(again);
	again = NULL;
	is(out ? inject(out, &again, err, sizeof(err), 1, a1) : -1, 0, "again with --mtls");
	ok(again && strstr(again, "KTLS_SIDECAR_CLIENT_CA") && !strstr(strstr(again, "KTLS_SIDECAR_CLIENT_CA") + 1,
								       "KTLS_SIDECAR_CLIENT_CA"),
	   "the sidecar is replaced, not added twice");
	free(again);
	free(out);
	out = NULL;
	is(inject("a: [1,\nb: 2\n", &out, err, sizeof(err), 0, NULL), -EINVAL, "bad YAML is -EINVAL");
	ok(strncmp(err, "t.yaml:3:1: did not find expected ','", 37) == 0, "and the message starts with file:line:col (%s)", err);
	ok(out == NULL, "no output");
	char *bad[] = { "--listen-port", "x" };
	is(inject(pod, &out, err, sizeof(err), 2, bad), -EINVAL, "a bad option is -EINVAL");
}

/* Each env var of an injected sidecar must be a daemon option: config_set accepts it. */
static void test_env_known(void)
{
	char err[512], *out = NULL, *args[] = { "--mtls", "--config-map", "c", "--backend", "/run/pg/.s.PGSQL.6432" };
	struct config c;
	if (inject(pod, &out, err, sizeof(err), 5, args)) {
		skip("injection failed");
		return;
	}
	config_init(&c);
	for (char *p = out; (p = strstr(p, "- name: KTLS_SIDECAR_")); p++) {
		char key[64], val[256];
		if (sscanf(p, "- name: KTLS_SIDECAR_%63s value: %255s", key, val) != 2) {
			ok(0, "env entry parses");
			continue;
		}
		for (char *k = key; *k; k++)
			*k = *k == '_' ? '-' : (char)(*k | 0x20);
		size_t n = strlen(val);
		if (n > 1 && val[0] == '"') {
			memmove(val, val + 1, n - 2);
			val[n - 2] = 0;
		}
		if (!ok(config_set(&c, key, val, err, sizeof(err)) == 0, "the daemon takes %s = %s", key, val))
			diag("%s", err);
	}
	config_free(&c);
	free(out);
}

/* The config file in k8s/examples/ktls-sidecar-config.yaml, line by line. */
static void test_example_config(void)
{
	FILE *f = fopen("k8s/examples/ktls-sidecar-config.yaml", "re");
	char line[512], err[CONFIG_ERR_LEN];
	int in_file = 0, lines = 0, bad = 0;
	struct config c;
	if (!f) {
		skip("k8s/examples/ktls-sidecar-config.yaml not found (run from the repository root)");
		return;
	}
	config_init(&c);
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "ktls-sidecar.conf: |")) {
			in_file = 1;
			continue;
		}
		if (!in_file || strncmp(line, "    ", 4) != 0)
			continue;
		lines++;
		if (config_line(&c, line + 4, err, sizeof(err))) {
			bad++;
			diag("%s: %s", line + 4, err);
		}
	}
	fclose(f);
	config_free(&c);
	ok(lines > 3 && bad == 0, "the example ConfigMap's %d config lines all parse", lines);
}

int main(void)
{
	test_quoting();
	test_edit();
	test_reader();
	test_inject();
	test_env_known();
	test_example_config();
	return done_testing();
}
