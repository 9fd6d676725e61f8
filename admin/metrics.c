// SPDX-License-Identifier: MIT
// GET /metrics: a snapshot in the Prometheus text exposition format (0.0.4),
// with the conventional names and base units (seconds, bytes, *_total counters).
// Pure like admin_render.c (memory and a FILE * only) so it can be fuzzed.
#include "admin_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#define NS "ktls_sidecar_"

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP " NS "%s %s\n# TYPE " NS "%s %s\n", name, help, name, type);
}

/* A label value: the format escapes only '\\', '"' and newline; other control bytes and
 * non-ASCII (which would have to be valid UTF-8) become '?'. */
static void label_value(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '\\' || ch == '"')
			fprintf(f, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch < 0x20 || ch >= 0x7f)
			fputc('?', f);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
	family(f, name, "counter", help);
	fprintf(f, NS "%s %" PRIu64 "\n", name, v);
}

static void gauge(FILE *f, const char *name, const char *help, uint64_t v)
{
	family(f, name, "gauge", help);
	fprintf(f, NS "%s %" PRIu64 "\n", name, v);
}

/* name{key="value"} v */
static void labelled(FILE *f, const char *name, const char *key, const char *value, uint64_t v)
{
	fprintf(f, NS "%s{%s=", name, key);
	label_value(f, value);
	fprintf(f, "} %" PRIu64 "\n", v);
}

static void info(const struct admin_snapshot *s, FILE *f)
{
	double up = isfinite(s->uptime_s) && s->uptime_s > 0 ? s->uptime_s : 0;

	family(f, "info", "gauge", "Build and runtime facts as labels; the value is always 1.");
	fputs(NS "info{version=", f);
	label_value(f, s->version);
	fputs(",io=", f);
	label_value(f, s->io);
	fputs(",ktls=", f);
	label_value(f, s->ktls);
	fputs("} 1\n", f);
	family(f, "uptime_seconds", "gauge", "Seconds since the process started.");
	fprintf(f, NS "uptime_seconds %.3f\n", up);
	gauge(f, "draining", "1 while draining (no new connections), else 0.", s->draining ? 1 : 0);
	if (s->cert_not_after_unix > 0)
		gauge(f, "certificate_expiry_timestamp_seconds",
		      "notAfter of the certificate in service, as Unix time (alert on it minus time()).",
		      (uint64_t)s->cert_not_after_unix);
	if (s->client_crls && s->client_crl_next_update_unix > 0)
		gauge(f, "client_crl_next_update_timestamp_seconds",
		      "The earliest nextUpdate of the client CRLs in service, as Unix time: past it, OpenSSL "
		      "refuses the clients of that CA (alert before it).",
		      (uint64_t)s->client_crl_next_update_unix);
	family(f, "reloads_total", "counter",
	       "Reloads by outcome: ok; partial (certificates reloaded, the configuration file not re-read); "
	       "failed (nothing changed).");
	labelled(f, "reloads_total", "result", "ok", s->reloads_ok);
	labelled(f, "reloads_total", "result", "partial", s->reloads_partial);
	labelled(f, "reloads_total", "result", "failed", s->reloads_failed);
}

static void connections(const struct admin_snapshot *s, const struct admin_counters *t, FILE *f)
{
	int nr = admin_count(s->nreasons, ADMIN_MAX_REASONS);
	char buf[32];

	gauge(f, "connections_active", "Open client connections.", t->active);
	counter(f, "connections_accepted_total", "Client connections accepted.", t->accepted);
	counter(f, "connections_refused_total", "Client connections refused at the connection limit.",
		t->refused_max);
	family(f, "connections_closed_total", "counter", "Client connections closed, by reason.");
	for (int r = 0; r < nr; r++)
		labelled(f, "connections_closed_total", "reason",
			 admin_name(s->reason_names, r, "reason", buf, sizeof(buf)), t->closed[r]);
	counter(f, "plaintext_connections_total",
		"Connections relayed without TLS (the client did not ask for it).", t->plaintext);
	counter(f, "cancels_total", "PostgreSQL cancel requests forwarded.", t->cancels);
	counter(f, "backend_connect_failures_total", "Failed connections to the pooler.",
		t->backend_connect_failed);
	family(f, "bytes_total", "counter", "Plaintext bytes relayed, by direction.");
	labelled(f, "bytes_total", "direction", "client_to_backend", t->bytes_c2b);
	labelled(f, "bytes_total", "direction", "backend_to_client", t->bytes_b2c);
}

static void handshakes(const struct admin_counters *t, FILE *f)
{
	uint64_t cum = 0;

	family(f, "handshakes_total", "counter", "TLS handshakes, by result.");
	labelled(f, "handshakes_total", "result", "ok", t->handshakes_ok);
	labelled(f, "handshakes_total", "result", "failed", t->handshakes_failed);
	family(f, "tls_version_total", "counter", "Completed TLS handshakes, by protocol version.");
	labelled(f, "tls_version_total", "version", "TLSv1.2", t->tls12);
	labelled(f, "tls_version_total", "version", "TLSv1.3", t->tls13);
	family(f, "handshake_duration_seconds", "histogram", "TLS handshake duration.");
	for (int b = 0; b < ADMIN_HIST_BUCKETS; b++) {
		cum += t->hs_hist[b];
		if (b < ADMIN_HIST_BUCKETS - 1)
			fprintf(f, NS "handshake_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
				admin_hist_bounds_ms[b] / 1000.0, cum);
		else
			fprintf(f, NS "handshake_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
	}
	fprintf(f, NS "handshake_duration_seconds_sum %.6f\n", (double)t->hs_sum_us / 1e6);
	fprintf(f, NS "handshake_duration_seconds_count %" PRIu64 "\n", cum);
}

static void ktls_direction(FILE *f, const char *dir, const char *mode, uint64_t v)
{
	fprintf(f, NS "ktls_connections{direction=\"%s\",mode=\"%s\"} %" PRIu64 "\n", dir, mode, v);
}

static void ktls(const struct admin_snapshot *s, const struct admin_counters *t, FILE *f)
{
	/* active_user_tls counts open TLS connections with a direction left in userspace, and
	 * the daemon installs rx only after tx: open TLS = kernel rx + user_tls, so the
	 * directions still in userspace are tx: open - kernel tx, rx: user_tls. */
	uint64_t open = t->active_ktls_rx + t->active_user_tls;
	uint64_t user_tx = open > t->active_ktls_tx ? open - t->active_ktls_tx : 0;

	family(f, "ktls_connections", "gauge",
	       "Open TLS connections by direction, with records done by the kernel (kTLS) or in "
	       "userspace.");
	ktls_direction(f, "tx", "kernel", t->active_ktls_tx);
	ktls_direction(f, "rx", "kernel", t->active_ktls_rx);
	ktls_direction(f, "tx", "user", user_tx);
	ktls_direction(f, "rx", "user", t->active_user_tls);
	family(f, "ktls_installed_total", "counter", "Connections handed to kernel TLS, by direction.");
	labelled(f, "ktls_installed_total", "direction", "tx", t->ktls_tx);
	labelled(f, "ktls_installed_total", "direction", "rx", t->ktls_rx);
	family(f, "ktls_rekeys_total", "counter",
	       "TLS 1.3 KeyUpdates followed by installing the next key in the kernel, by direction.");
	labelled(f, "ktls_rekeys_total", "direction", "tx", t->rekey_tx);
	labelled(f, "ktls_rekeys_total", "direction", "rx", t->rekey_rx);
	counter(f, "user_tls_connections_total",
		"TLS connections with at least one direction kept in userspace.", t->user_tls);
	int ns = admin_count(s->nsteps, ADMIN_MAX_STEPS);
	char buf[32];
	family(f, "ktls_fallbacks_total", "counter",
	       "Connections kept out of kernel TLS (pipes: kTLS kept, copy relay instead of splice), "
	       "by the step that failed.");
	for (int k = 0; k < ns; k++)
		labelled(f, "ktls_fallbacks_total", "step", admin_name(s->ktls_step_names, k, "step", buf, sizeof(buf)),
			 t->ktls_fallback[k]);
}

int admin_metrics_render(const struct admin_snapshot *s, FILE *f)
{
	struct admin_counters t;

	if (!s || !f || s->nworkers < 0 || (s->nworkers && !s->workers))
		return -EINVAL;
	admin_counters_sum(s, &t);
	info(s, f);
	connections(s, &t, f);
	handshakes(&t, f);
	ktls(s, &t, f);
	return ferror(f) ? -EIO : 0;
}
