// SPDX-License-Identifier: MIT
// Unit tests for the config parser: lines, files with file:line errors,
// environment, flags and their precedence.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

int main(void)
{
	struct config c;
	char err[CONFIG_ERR_LEN];
	int ms;

	config_init(&c);
	is_str(c.backend, "127.0.0.1:6432", "default backend is PgBouncer's port");
	is(c.handshake_timeout_ms, 10000, "default handshake timeout 10 s");
	is(c.io, IO_AUTO, "default io auto");
	is(c.plain_cancel, 1, "plaintext cancel on by default");
	is(c.allow_plaintext, 0, "plaintext startup refused by default");
	ok(strstr(c.ciphersuites, "TLS_CHACHA20_POLY1305_SHA256") != NULL, "default suites include ChaCha20");
	ok(strstr(c.ciphers, "CBC") == NULL && strstr(c.ciphers, "ECDHE-RSA-AES256-GCM-SHA384"),
	   "default TLS 1.2 ciphers are ECDHE AEAD");

	is(config_line(&c, "  # comment", err, sizeof(err)), 0, "comment ignored");
	is(config_line(&c, "", err, sizeof(err)), 0, "blank ignored");
	is(config_line(&c, "max-conns = 42", err, sizeof(err)), 0, "int set");
	is(c.max_conns, 42, "int value");
	is(config_line(&c, "listen=\"[::1]:7000\"", err, sizeof(err)), 0, "quoted value");
	is_str(c.listen, "[::1]:7000", "quotes stripped");
	is(config_line(&c, "bogus = 1", err, sizeof(err)), -ENOENT, "unknown key refused");
	ok(strstr(err, "bogus") != NULL, "error names the key");
	is(config_line(&c, "max-conns", err, sizeof(err)), -EINVAL, "missing '=' refused");
	is(config_line(&c, "max-conns = -1", err, sizeof(err)), -EINVAL, "out of range refused");
	is(config_line(&c, "max-conns = 12abc", err, sizeof(err)), -EINVAL, "trailing junk refused");
	is(config_line(&c, "io = kqueue", err, sizeof(err)), -EINVAL, "bad enum refused");
	is(config_line(&c, "io = epoll", err, sizeof(err)), 0, "enum set");
	is(c.io, IO_EPOLL, "enum value");
	is(config_line(&c, "pin-cpus = yes", err, sizeof(err)), 0, "bool yes");
	is(c.pin_cpus, 1, "bool value");
	is(config_line(&c, "pin-cpus = maybe", err, sizeof(err)), -EINVAL, "bad bool refused");
	is(config_line(&c, "config = /x", err, sizeof(err)), -EINVAL, "config cannot nest");

	is(config_parse_duration("10", &ms), 0, "bare seconds");
	is(ms, 10000, "10 = 10000 ms");
	is(config_parse_duration("250ms", &ms), 0, "ms suffix");
	is(ms, 250, "250ms");
	is(config_parse_duration("1.5s", &ms), 0, "fractional seconds");
	is(ms, 1500, "1.5s");
	is(config_parse_duration("2m", &ms), 0, "minutes");
	is(ms, 120000, "2m");
	is(config_parse_duration("-1", &ms), -EINVAL, "negative duration refused");
	is(config_parse_duration("5d", &ms), -EINVAL, "unknown unit refused");
	ok(config_parse_duration("1m30s", &ms) == 0 && ms == 90000, "1m30s is 90 s (%d)", ms);
	ok(config_parse_duration("1h", &ms) == 0 && ms == 3600000, "1h (%d)", ms);
	ok(config_parse_duration("1s500ms", &ms) == 0 && ms == 1500, "1s500ms (%d)", ms);
	is(config_parse_duration("10s5", &ms), -EINVAL, "a bare number after a unit refused");
	ok(config_parse_duration(".5s", &ms) == 0 && ms == 500, ".5s (%d)", ms);
	is(config_parse_duration("30s1m", &ms), -EINVAL, "units out of order refused");
	is(config_parse_duration("1s1s", &ms), -EINVAL, "a unit twice refused");
	is(config_parse_duration("s", &ms), -EINVAL, "a unit alone refused");
	is(config_parse_duration("", &ms), -EINVAL, "empty refused");
	is(config_parse_duration("1000h", &ms), -ERANGE, "beyond INT_MAX ms: out of range");
	is(config_set(&c, "idle-timeout", "1000h", err, sizeof(err)), -EINVAL, "idle-timeout 1000h refused");
	ok(strstr(err, "out of range") != NULL, "... as out of range, not as 'not a duration' (%s)", err);
	is(config_parse_duration("1e3", &ms), -EINVAL, "an exponent refused (strtod takes 1e3)");
	is(config_parse_duration("0x10", &ms), -EINVAL, "hex refused (strtod takes 0x10)");
	is(config_parse_duration("1.5.5s", &ms), -EINVAL, "two points refused");
	is(config_parse_duration("infs", &ms), -EINVAL, "inf refused");
	is(config_set(&c, "handshake-timeout", "0", err, sizeof(err)), -EINVAL, "handshake-timeout 0 refused");
	ok(strstr(err, "out of range") != NULL, "as out of range, with the range (%s)", err);
	is(config_parse_duration("nan", &ms), -EINVAL, "nan refused");

	char host[64];
	unsigned port;
	is(config_split_hostport("127.0.0.1:5432", host, sizeof(host), &port), 0, "v4 host:port");
	is(port, 5432, "port");
	is(config_split_hostport("[::1]:5432", host, sizeof(host), &port), 0, "v6 [host]:port");
	is_str(host, "::1", "v6 host");
	is(config_split_hostport(":5432", host, sizeof(host), &port), 0, "empty host");
	is(config_split_hostport("::1:5432", host, sizeof(host), &port), -EINVAL, "bare v6 refused");
	is(config_split_hostport("h:99999", host, sizeof(host), &port), -EINVAL, "port range");
	is(config_split_hostport("h", host, sizeof(host), &port), -EINVAL, "no port");
	config_free(&c);

	/* file errors carry file:line */
	char path[] = "/tmp/ks-config-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	fprintf(f, "# test\ncert = /c.pem\nkey = /k.pem\nallow-cn = a\nallow-cn = b\nnope = 1\n");
	fclose(f);
	config_init(&c);
	is(config_load_file(&c, path, err, sizeof(err)), -ENOENT, "unknown key in file refused");
	char want[128];
	snprintf(want, sizeof(want), "%s:6:", path);
	ok(strncmp(err, want, strlen(want)) == 0, "error names file:line (%s)", err);
	is((long long)c.allow_cn.n, 2, "repeated list key appends within a file");
	config_free(&c);

	/* a UTF-8 byte order mark (Windows editors) is not part of the first key */
	f = fopen(path, "w");
	fprintf(f, "\xef\xbb\xbfmax-conns = 7\n");
	fclose(f);
	config_init(&c);
	is(config_load_file(&c, path, err, sizeof(err)), 0, "a file starting with a BOM loads (%s)", err);
	is(c.max_conns, 7, "... and its first line counts");
	is(config_load_file(&c, "/tmp", err, sizeof(err)), -EISDIR, "a directory as the config file refused");
	ok(strstr(err, "is a directory") != NULL, "... saying so (%s)", err);
	config_free(&c);

	/* precedence: file < env < flags; lists at a higher level replace */
	f = fopen(path, "w");
	fprintf(f, "cert = /file.pem\nkey = /k.pem\nmax-conns = 1\nworkers = 3\nverify = optional\n"
		   "client-ca = /ca.pem\nallow-cn = file\n");
	fclose(f);
	char envc[300], *envp[] = { envc, "KTLS_SIDECAR_MAX_CONNS=2", "KTLS_SIDECAR_ALLOW_CN=e1,e2",
				    "HOME=/root", NULL };
	snprintf(envc, sizeof(envc), "KTLS_SIDECAR_CONFIG=%s", path);
	char *argv[] = { "--max-conns", "3", "--io=epoll", "--no-plain-cancel", NULL };
	config_init(&c);
	is(config_load_all(&c, 4, argv, envp, err, sizeof(err)), 0, "load_all ok (%s)", err);
	is(c.max_conns, 3, "flag beats env and file");
	is(c.workers, 3, "file value kept when not overridden");
	is_str(c.cert, "/file.pem", "file value");
	is((long long)c.allow_cn.n, 2, "env list replaces the file list");
	is_str(c.allow_cn.v[0], "e1", "env list item");
	is(c.plain_cancel, 0, "--no-X sets a bool false");
	is(c.io, IO_EPOLL, "--key=value form");
	config_free(&c);

	/* the io_uring techniques: off by default, on from the environment or a flag */
	char *uring_env[] = { "KTLS_SIDECAR_URING_SQPOLL=1", NULL };
	char *uring_args[] = { "--uring-fixed-files", NULL };
	config_init(&c);
	ok(!c.uring_sqpoll && !c.uring_fixed_files, "io_uring SQPOLL and registered files off by default");
	is(config_load_env(&c, uring_env, err, sizeof(err)), 0, "KTLS_SIDECAR_URING_SQPOLL accepted (%s)", err);
	is(config_load_args(&c, 1, uring_args, err, sizeof(err)), 0, "--uring-fixed-files accepted (%s)", err);
	ok(c.uring_sqpoll && c.uring_fixed_files, "both set");
	is(config_line(&c, "uring-sqpoll = off", err, sizeof(err)), 0, "uring-sqpoll in a file");
	is(c.uring_sqpoll, 0, "uring-sqpoll off again");
	is(c.poll_first, 0, "poll-first off by default");
	char *pf_args[] = { "--poll-first", NULL };
	is(config_load_args(&c, 1, pf_args, err, sizeof(err)), 0, "--poll-first accepted (%s)", err);
	is(c.poll_first, 1, "poll-first on");
	ok(config_line(&c, "relay = sometimes", err, sizeof(err)) != 0, "an unknown relay mode is refused");
	ok(strstr(err, "auto|splice|copy") != NULL, "and the error lists the modes (%s)", err);
	config_free(&c);

	char *k8s_env[] = { "KTLS_SIDECAR_SERVICE_HOST=10.0.0.1", "KTLS_SIDECAR_PORT=tcp://10.0.0.1:5432",
			    "KTLS_SIDECAR_PORT_5432_TCP_ADDR=10.0.0.1", NULL };
	config_init(&c);
	is(config_load_env(&c, k8s_env, err, sizeof(err)), 0, "kubelet service-link variables are ignored");
	config_free(&c);
	/* a Service named ktls-sidecar-metrics, with a named port */
	char *k8s_env2[] = { "KTLS_SIDECAR_METRICS_SERVICE_HOST=10.0.0.5",
			     "KTLS_SIDECAR_METRICS_SERVICE_PORT=9187",
			     "KTLS_SIDECAR_METRICS_SERVICE_PORT_METRICS=9187",
			     "KTLS_SIDECAR_METRICS_PORT=tcp://10.0.0.5:9187",
			     "KTLS_SIDECAR_METRICS_PORT_9187_TCP=tcp://10.0.0.5:9187",
			     "KTLS_SIDECAR_METRICS_PORT_9187_TCP_PROTO=tcp",
			     "KTLS_SIDECAR_METRICS_PORT_9187_TCP_PORT=9187",
			     "KTLS_SIDECAR_METRICS_PORT_9187_TCP_ADDR=10.0.0.5", NULL };
	config_init(&c);
	is(config_load_env(&c, k8s_env2, err, sizeof(err)), 0, "service links of ktls-sidecar-* ignored (%s)", err);
	config_free(&c);
	char *not_links[][2] = { { "KTLS_SIDECAR_METRICS_PORT=9187", "KTLS_SIDECAR_METRICS_PORT" },
				 { "KTLS_SIDECAR_PORT_5432=x", "KTLS_SIDECAR_PORT_5432" },
				 { "KTLS_SIDECAR_LISTEN_PORT_1_TCPX=1", "KTLS_SIDECAR_LISTEN_PORT_1_TCPX" } };
	for (size_t i = 0; i < sizeof(not_links) / sizeof(not_links[0]); i++) {
		char *one[] = { not_links[i][0], NULL };
		config_init(&c);
		is(config_load_env(&c, one, err, sizeof(err)), -ENOENT, "%s is not a service link: refused", one[0]);
		ok(strstr(err, not_links[i][1]) != NULL, "and named (%s)", err);
		config_free(&c);
	}
	char *bad_env[] = { "KTLS_SIDECAR_NOPE=1", NULL };
	config_init(&c);
	is(config_load_env(&c, bad_env, err, sizeof(err)), -ENOENT, "unknown env var refused");
	ok(strstr(err, "KTLS_SIDECAR_NOPE") != NULL, "error names the variable");
	char *bad_args[] = { "--listen", NULL };
	is(config_load_args(&c, 1, bad_args, err, sizeof(err)), -EINVAL, "flag without value refused");
	char *help[] = { "--help", NULL };
	is(config_load_args(&c, 1, help, err, sizeof(err)), -EAGAIN, "--help reported");
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "cert is required");
	config_set(&c, "cert", "/c", err, sizeof(err));
	config_set(&c, "key", "/k", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "minimal config valid");
	config_set(&c, "allow-cn", "x", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "allow-list without verify refused");
	config_set(&c, "verify", "require", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "verify without client-ca refused");
	config_set(&c, "client-ca", "/ca", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "mTLS config valid");
	is(config_set(&c, "client-user-match", "dn", err, sizeof(err)), -EINVAL, "client-user-match dn: not a mode");
	config_set(&c, "client-user-match", "cn", err, sizeof(err));
	is(c.client_user_match, USER_MATCH_CN, "client-user-match cn set");
	is(config_finish(&c, err, sizeof(err)), 0, "client-user-match cn with verify require valid");
	config_set(&c, "verify", "optional", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "client-user-match with verify optional refused");
	ok(strstr(err, "client-user-match") && strstr(err, "--verify require"), "... saying it needs it (%s)", err);
	config_set(&c, "verify", "require", err, sizeof(err));
	config_set(&c, "allow-plaintext", "true", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "client-user-match with allow-plaintext refused");
	config_set(&c, "allow-plaintext", "false", err, sizeof(err));
	config_set(&c, "client-user-match", "map", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "client-user-match map without a map refused");
	ok(strstr(err, "--client-user-map FILE") != NULL, "... saying it needs one (%s)", err);
	config_set(&c, "client-user-map", "/users.map", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "client-user-match map with a map valid");
	config_set(&c, "client-user-match", "cn", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "a map with client-user-match cn refused");
	ok(strstr(err, "client-user-map") && strstr(err, "--client-user-match map"), "... saying it does nothing (%s)",
	   err);
	config_set(&c, "client-user-map", "", err, sizeof(err));
	config_set(&c, "client-user-match", "none", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "valid again");
	struct config k;
	config_init(&k);
	config_set(&k, "cert", "/c", err, sizeof(err));
	config_set(&k, "key", "/k", err, sizeof(err));
	config_set(&k, "client-ca", "/ca", err, sizeof(err));
	is(config_finish(&k, err, sizeof(err)), -EINVAL, "client-ca with verify none refused");
	ok(strstr(err, "client-ca") && strstr(err, "--verify"), "... saying it needs --verify (%s)", err);
	config_set(&k, "client-ca", "", err, sizeof(err));
	config_set(&k, "client-crl", "/crl", err, sizeof(err));
	is(config_finish(&k, err, sizeof(err)), -EINVAL, "client-crl without --verify refused");
	ok(strstr(err, "client-crl") && strstr(err, "--verify"), "... saying it needs --verify (%s)", err);
	config_set(&k, "client-crl", "", err, sizeof(err));
	is(config_finish(&k, err, sizeof(err)), 0, "valid without it");
	is(k.tcp_keepalive_ms, 60000, "tcp-keepalive: 60 s by default");
	is(k.tcp_keepalive_intvl_ms, 10000, "tcp-keepalive-interval: 10 s by default");
	is(k.tcp_keepalive_cnt, 6, "tcp-keepalive-count: 6 by default");
	config_set(&k, "tcp-keepalive", "1500ms", err, sizeof(err));
	is(config_finish(&k, err, sizeof(err)), -EINVAL, "tcp-keepalive 1500ms refused: not whole seconds");
	config_set(&k, "tcp-keepalive", "0", err, sizeof(err));
	is(config_finish(&k, err, sizeof(err)), 0, "tcp-keepalive 0 (off) valid");
	is(config_set(&k, "tcp-keepalive", "10h", err, sizeof(err)), -EINVAL,
	   "tcp-keepalive above the kernel's 32767 s refused");
	is(config_set(&k, "tcp-keepalive-count", "0", err, sizeof(err)), -EINVAL, "tcp-keepalive-count 0 refused");
	config_free(&k);
	config_set(&c, "backend", "unix:relative", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "relative unix path refused");
	config_set(&c, "backend", "unix:/tmp/.s.PGSQL.6432", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "unix backend valid");
	config_set(&c, "min-tls-version", "1.1", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "TLS 1.1 floor refused");
	config_set(&c, "min-tls-version", "1.2", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "valid again");
	const char *pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAsecret\n-----END PRIVATE KEY-----\n";
	const char *file_opts[] = { "key", "cert", "client-ca", "client-crl" };
	for (size_t i = 0; i < 4; i++) {
		config_set(&c, file_opts[i], pem, err, sizeof(err));
		is(config_finish(&c, err, sizeof(err)), -EINVAL, "%s: PEM text instead of a path refused", file_opts[i]);
		ok(strstr(err, "secret") == NULL && strstr(err, "BEGIN") == NULL && strstr(err, file_opts[i]),
		   "and the error names the option, not the value (%s)", err);
		config_set(&c, file_opts[i], "/x", err, sizeof(err));
	}
	config_set(&c, "metrics-listen", "localhost:9187", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "metrics-listen with a host name refused early");
	ok(strstr(err, "numeric") != NULL, "... asking for a numeric address (%s)", err);
	config_set(&c, "metrics-listen", "[::1]:9187", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "metrics-listen [::1]:9187 valid (%s)", err);
	config_set(&c, "metrics-listen", ":9187", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "metrics-listen :9187 (any address) valid (%s)", err);
	config_set(&c, "metrics-listen", "*:9187", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), 0, "metrics-listen *:9187 valid (%s)", err);
	config_set(&c, "key", "/k\x1b[2J", err, sizeof(err));
	is(config_finish(&c, err, sizeof(err)), -EINVAL, "a path with control characters refused");
	config_free(&c);

	/* config_diff: what a reload reports as waiting for a restart */
	struct config a, b;
	char names[128];
	const char *const skip[] = { "allow-cn", "log-level", NULL };
	config_init(&a);
	config_init(&b);
	is((int)config_diff(&a, &b, NULL, names, sizeof(names)), 0, "diff: two default configs are equal");
	is_str(names, "", "... and name nothing");
	config_set(&b, "listen", "127.0.0.1:1", err, sizeof(err));
	config_set(&b, "workers", "3", err, sizeof(err));
	config_set(&b, "allow-cn", "bob", err, sizeof(err));
	config_set(&b, "log-level", "debug", err, sizeof(err));
	config_set(&b, "client-ca", "/ca", err, sizeof(err)); /* NULL by default */
	is((int)config_diff(&a, &b, skip, names, sizeof(names)), 3, "diff: string, int, NULL vs set");
	is_str(names, "listen, client-ca, workers", "... named in table order, skipped ones left out");
	is((int)config_diff(&a, &b, NULL, names, sizeof(names)), 5, "diff: without a skip list, lists and all");
	config_set(&a, "allow-cn", "bob", err, sizeof(err));
	config_set(&a, "allow-cn", "carol", err, sizeof(err));
	is((int)config_diff(&a, &b, (const char *const[]){ "listen", "workers", "log-level", "client-ca", NULL },
			    names, sizeof(names)), 1, "diff: lists of different lengths differ");
	is((int)config_diff(&a, &b, NULL, names, 8), 5, "diff: a short buffer still counts every name");
	ok(strlen(names) < 8, "... and stays terminated (%s)", names);
	config_free(&a);
	config_free(&b);
	unlink(path);
	return done_testing();
}
