// SPDX-License-Identifier: MIT
// `ktls-sidecar inject`: walk a multi-document Kubernetes YAML stream, find the
// pod templates of workloads (also inside Lists), hand them to inject_pod.c, and
// write the stream back: documents we did not change are copied byte for byte,
// changed ones are re-emitted with the comments around them kept.
#include "inject.h"
#include "inject_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_INPUT (64u << 20)

struct workload {
	const char *kind, *api;      /* api: apiVersion, or a group prefix ending in '/' */
	const char *path[5];         /* from the object to the pod template; empty: the object */
	bool batch;                  /* runs to completion: a legacy sidecar would keep it running */
};

static const struct workload workloads[] = {
	{ "Pod", "v1", { NULL }, false },
	{ "Deployment", "apps/", { "spec", "template", NULL }, false },
	{ "StatefulSet", "apps/", { "spec", "template", NULL }, false },
	{ "DaemonSet", "apps/", { "spec", "template", NULL }, false },
	{ "ReplicaSet", "apps/", { "spec", "template", NULL }, false },
	{ "Job", "batch/", { "spec", "template", NULL }, true },
	{ "CronJob", "batch/", { "spec", "jobTemplate", "spec", "template", NULL }, true },
};

struct inject_ctx {
	const struct inject_opts *o;
	const char *file;
	char *err;
	size_t errlen;
};

static int fail(struct inject_ctx *x, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct inject_ctx *x, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->err, x->errlen, fmt, ap);
	va_end(ap);
	return rc;
}

static const struct workload *workload_of(const struct kyaml_node *obj)
{
	const char *kind = kyaml_text(kyaml_get(obj, "kind"));
	const char *api = kyaml_text(kyaml_get(obj, "apiVersion"));
	if (!kind || !api)
		return NULL;
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
		const struct workload *w = &workloads[i];
		size_t n = strlen(w->api);
		if (strcmp(kind, w->kind) == 0 &&
		    (w->api[n - 1] == '/' ? strncmp(api, w->api, n) == 0 : strcmp(api, w->api) == 0))
			return w;
	}
	return NULL;
}

static struct kyaml_node *list_items(const struct kyaml_node *obj)
{
	const char *kind = kyaml_text(kyaml_get(obj, "kind"));
	size_t n = kind ? strlen(kind) : 0;
	struct kyaml_node *items = kyaml_get(obj, "items");
	if (n < 4 || strcmp(kind + n - 4, "List") != 0 || !items || items->kind != KYAML_SEQ)
		return NULL;
	return items;
}

/* ktls-sidecar.io/inject: "false" in the metadata of n. */
static bool opted_out(const struct kyaml_node *n)
{
	const char *v = kyaml_text(kyaml_get(kyaml_get(kyaml_get(n, "metadata"), "annotations"), INJECT_ANNOTATION));
	return v && strcasecmp(v, "false") == 0;
}

/* Inject into obj (a workload or a List of them); adds the workloads seen to *seen. */
static int inject_object(struct inject_ctx *x, struct kyaml_node *obj, int depth, int *seen)
{
	struct kyaml_node *items = depth < 4 ? list_items(obj) : NULL;
	for (size_t i = 0; items && i < items->n; i++) {
		int rc = inject_object(x, items->kids[i], depth + 1, seen);
		if (rc)
			return rc;
	}
	const struct workload *w = workload_of(obj);
	if (!w)
		return 0;
	const char *name = kyaml_text(kyaml_get(kyaml_get(obj, "metadata"), "name"));
	char what[512];
	snprintf(what, sizeof(what), "%s:%zu: %s/%s", x->file, obj->line, w->kind, name ? name : "(unnamed)");
	(*seen)++;
	if (opted_out(obj))
		return 0;
	struct kyaml_node *tmpl = obj;
	char path[64] = "";
	for (int i = 0; w->path[i] && tmpl; i++) {
		tmpl = kyaml_get(tmpl, w->path[i]);
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "%s%s", i ? "." : "", w->path[i]);
	}
	if (!tmpl || tmpl->kind != KYAML_MAP)
		return fail(x, -EINVAL, "%s: %s is missing or not a mapping (aliases are not followed)", what, path);
	if (tmpl != obj && opted_out(tmpl))
		return 0;
	if (x->o->legacy && w->batch)
		fprintf(stderr, "ktls-sidecar inject: warning: %s: with --legacy the sidecar is a regular container "
				"and keeps the pods of this %s running; the default native sidecar stops with it\n",
			what, w->kind);
	return inject_pod_spec(x->o, kyaml_get(tmpl, "spec"), what, x->err, x->errlen);
}

static bool blank_or_comments(const char *s, size_t n)
{
	bool comment = false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			comment = false;
		else if (s[i] == '#')
			comment = true;
		else if (!comment && s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	}
	return true;
}

/* Write a changed document: the text before its root (comments, '---'), the new
 * root, and the comment lines after its last token. Returns the new copy position. */
static int write_changed(const char *in, size_t pos, const struct kyaml_doc *d, const struct kbuf *root,
			 struct kbuf *out, size_t *next)
{
	size_t end = d->root_start, t = d->content_end;
	while (end > pos && (in[end - 1] == ' ' || in[end - 1] == '\t'))
		end--;
	int rc = kbuf_add(out, in + pos, end - pos);
	if (!rc && end > pos && in[end - 1] != '\n')
		rc = kbuf_add(out, "\n", 1);
	if (!rc)
		rc = kbuf_add(out, root->p, root->n);
	if (t > 0 && in[t - 1] != '\n') { /* drop the rest of the last line (an inline comment) */
		const char *nl = memchr(in + t, '\n', d->root_end > t ? d->root_end - t : 0);
		t = nl ? (size_t)(nl - in) + 1 : d->root_end;
	}
	if (!rc && t < d->root_end && blank_or_comments(in + t, d->root_end - t))
		rc = kbuf_add(out, in + t, d->root_end - t);
	*next = d->root_end;
	return rc;
}

/* One document: inject, and write it out if that changed anything. */
static int inject_doc(struct inject_ctx *x, const char *in, size_t *pos, struct kyaml_doc *d, struct kbuf *out)
{
	struct kbuf before = { 0 }, after = { 0 };
	int seen = 0, rc = 0;
	if (!workload_of(d->root) && !list_items(d->root))
		return 0;
	if ((rc = kyaml_emit(d->root, &before)))
		goto err_emit;
	if ((rc = inject_object(x, d->root, 0, &seen)))
		goto err_bufs;
	if ((rc = kyaml_emit(d->root, &after)))
		goto err_emit;
	if (before.n != after.n || memcmp(before.p, after.p, before.n) != 0)
		rc = write_changed(in, *pos, d, &after, out, pos);
	goto err_bufs;
err_emit:
	fail(x, rc, "%s:%zu: cannot write this document back as YAML", x->file, d->root->line);
err_bufs:
	kbuf_free(&after);
	kbuf_free(&before);
	return rc;
}

/* Inject into the YAML stream in[0..len) named file; append the result to out. */
static int inject_stream(struct inject_ctx *x, const char *in, size_t len, bool separate, struct kbuf *out)
{
	struct kyaml_reader r;
	struct kyaml_doc d;
	char perr[256] = "";
	size_t pos = 0;
	int rc, ndocs = 0;
	if ((rc = kyaml_reader_init(&r, in, len, perr, sizeof(perr))))
		return fail(x, rc, "%s:%s", x->file, perr);
	if (separate && out->n && out->p[out->n - 1] != '\n' && (rc = kbuf_add(out, "\n", 1)))
		goto err_reader;
	while ((rc = kyaml_reader_next(&r, &d, perr, sizeof(perr))) == 0) {
		/* two files' documents must not run together */
		if (ndocs++ == 0 && separate && !d.explicit_start)
			rc = kbuf_puts(out, "---\n");
		if (!rc)
			rc = inject_doc(x, in, &pos, &d, out);
		kyaml_free(d.root);
		if (rc)
			break;
	}
	if (rc == 1)
		rc = kbuf_add(out, in + pos, len - pos);
	else if (perr[0])
		fail(x, rc, "%s:%s", x->file, perr);
err_reader:
	if (rc == -ENOMEM && !x->err[0])
		fail(x, rc, "out of memory");
	kyaml_reader_fini(&r);
	return rc;
}

static int read_all(FILE *f, struct kbuf *b)
{
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b->n + n > MAX_INPUT)
			return -EFBIG;
		if (kbuf_add(b, chunk, n))
			return -ENOMEM;
	}
	return ferror(f) ? (errno ? -errno : -EIO) : 0; /* EISDIR: "Is a directory" */
}

static int inject_path(struct inject_ctx *x, const char *path, bool separate, struct kbuf *out)
{
	struct kbuf in = { 0 };
	bool std = strcmp(path, "-") == 0;
	FILE *f = std ? stdin : fopen(path, "re");
	int rc;
	x->file = std ? "<stdin>" : path;
	if (!f)
		return fail(x, -errno, "%s: %s", path, strerror(errno));
	rc = read_all(f, &in);
	if (!std)
		fclose(f);
	if (rc) {
		fail(x, rc, "%s: %s", x->file, rc == -EFBIG ? "input larger than 64 MiB" : strerror(-rc));
		goto err_in;
	}
	rc = inject_stream(x, in.p ? in.p : "", in.n, separate, out);
err_in:
	kbuf_free(&in);
	return rc;
}

int inject_string(int argc, char **argv, const char *name, const char *in, size_t len, char **out,
		  size_t *outlen, char *err, size_t errlen)
{
	struct inject_opts o;
	struct kbuf b = { 0 };
	struct inject_ctx x = { .o = &o, .file = name, .err = err, .errlen = errlen };
	err[0] = 0;
	int rc = inject_opts_parse(&o, argc, argv, err, errlen);
	if (!rc)
		rc = inject_stream(&x, in, len, false, &b);
	inject_opts_fini(&o);
	if (!rc && !b.p)
		rc = kbuf_add(&b, "", 0);
	if (rc) {
		kbuf_free(&b);
		return rc == -EAGAIN ? -EINVAL : rc;
	}
	*out = b.p;
	*outlen = b.n;
	return 0;
}

int inject_main(int argc, char **argv)
{
	struct inject_opts o;
	struct kbuf out = { 0 };
	char err[1024] = "";
	struct inject_ctx x = { .o = &o, .file = "<stdin>", .err = err, .errlen = sizeof(err) };
	int rc = inject_opts_parse(&o, argc, argv, err, sizeof(err)), status = 1;
	if (rc == -EAGAIN) {
		inject_opts_usage(stdout);
		status = 0;
		goto err_opts;
	}
	if (rc) {
		fprintf(stderr, "ktls-sidecar inject: %s\n", err);
		status = 2;
		goto err_opts;
	}
	rc = o.nfiles ? 0 : inject_path(&x, "-", false, &out);
	for (int i = 0; !rc && i < o.nfiles; i++)
		rc = inject_path(&x, o.files[i], i > 0, &out);
	if (rc) {
		fprintf(stderr, "ktls-sidecar inject: error: %s\n", err);
		goto err_out;
	}
	/* all or nothing: a half-written stream piped into kubectl apply would be worse */
	if (fwrite(out.p ? out.p : "", 1, out.n, stdout) != out.n || fflush(stdout)) {
		fprintf(stderr, "ktls-sidecar inject: error: writing stdout: %s\n", strerror(errno));
		goto err_out;
	}
	status = 0;
err_out:
	kbuf_free(&out);
err_opts:
	inject_opts_fini(&o);
	return status;
}
