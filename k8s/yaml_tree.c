// SPDX-License-Identifier: MIT
// A small YAML node tree on top of libyaml's event API: read a stream one
// document at a time (with the byte offsets the injector needs to copy the
// untouched text around a document), build and edit nodes, and emit a node
// back as YAML with the tags, anchors, aliases and scalar styles it came with.
#include "inject_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KYAML_MAX_DEPTH 512

/* ---------------------------------------------------------------- buffer */

int kbuf_add(struct kbuf *b, const void *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
	return 0;
}

int kbuf_puts(struct kbuf *b, const char *s)
{
	return kbuf_add(b, s, strlen(s));
}

void kbuf_free(struct kbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---------------------------------------------------------------- nodes */

void kyaml_free(struct kyaml_node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n; i++)
		kyaml_free(n->kids[i]);
	free(n->kids);
	free(n->tag);
	free(n->anchor);
	free(n->value);
	free(n);
}

static struct kyaml_node *node_new(enum kyaml_kind kind, int style)
{
	struct kyaml_node *n = calloc(1, sizeof(*n));
	if (n) {
		n->kind = kind;
		n->style = style;
		n->plain_implicit = n->quoted_implicit = 1;
	}
	return n;
}

static int kids_reserve(struct kyaml_node *n, size_t more)
{
	if (n->n + more <= n->cap)
		return 0;
	size_t cap = n->cap ? n->cap * 2 : 8;
	while (cap < n->n + more)
		cap *= 2;
	struct kyaml_node **k = realloc(n->kids, cap * sizeof(*k));
	if (!k)
		return -ENOMEM;
	n->kids = k;
	n->cap = cap;
	return 0;
}

/* Would a YAML 1.1 reader (Kubernetes' sigs.k8s.io/yaml) take plain s for something
 * other than a string, or not read it back at all? Errs on the side of quoting. */
static bool needs_quotes(const char *s)
{
	static const char *const words[] = { "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~" };
	if (!*s || strchr("-?:,[]{}#&*!|>'\"%@` \t", *s))
		return true;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(s, words[i]) == 0)
			return true;
	if (strchr("0123456789+.", *s) && strspn(s, "0123456789+-._:eExXoObBabcdfABCDF") == strlen(s))
		return true;
	if (strstr(s, ": ") || strstr(s, " #") || s[strlen(s) - 1] == ':' || s[strlen(s) - 1] == ' ')
		return true;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

struct kyaml_node *kyaml_str(const char *s)
{
	struct kyaml_node *n = node_new(KYAML_SCALAR, YAML_PLAIN_SCALAR_STYLE);
	if (!n)
		return NULL;
	if (!(n->value = strdup(s))) {
		free(n);
		return NULL;
	}
	n->len = strlen(s);
	if (needs_quotes(s))
		n->style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
	return n;
}

struct kyaml_node *kyaml_int(long v)
{
	char b[32];
	snprintf(b, sizeof(b), "%ld", v);
	struct kyaml_node *n = kyaml_str(b);
	if (n)
		n->style = YAML_PLAIN_SCALAR_STYLE;
	return n;
}

struct kyaml_node *kyaml_bool(bool v)
{
	struct kyaml_node *n = kyaml_str(v ? "true" : "false");
	if (n)
		n->style = YAML_PLAIN_SCALAR_STYLE;
	return n;
}

struct kyaml_node *kyaml_map(void)
{
	return node_new(KYAML_MAP, YAML_BLOCK_MAPPING_STYLE);
}

struct kyaml_node *kyaml_seq(void)
{
	return node_new(KYAML_SEQ, YAML_BLOCK_SEQUENCE_STYLE);
}

/* Common guard of the sticky builders: false (and val freed) when nothing is to be done. */
static bool sticky_ok(struct kyaml_node *coll, enum kyaml_kind kind, struct kyaml_node *val, int *rc)
{
	if (!*rc && (!coll || !val))
		*rc = -ENOMEM;
	if (!*rc && coll->kind != kind)
		*rc = -EINVAL;
	if (*rc)
		kyaml_free(val);
	return !*rc;
}

static long key_index(const struct kyaml_node *map, const char *key)
{
	if (!map || map->kind != KYAML_MAP)
		return -1;
	for (size_t i = 0; i + 1 < map->n; i += 2)
		if (kyaml_is(map->kids[i], key))
			return (long)i;
	return -1;
}

void kyaml_put_before(struct kyaml_node *map, const char *before, const char *key, struct kyaml_node *val,
		      int *rc)
{
	if (!sticky_ok(map, KYAML_MAP, val, rc))
		return;
	long i = key_index(map, key);
	if (i >= 0) {
		kyaml_free(map->kids[i + 1]);
		map->kids[i + 1] = val;
		return;
	}
	struct kyaml_node *k = kyaml_str(key);
	if (!k || kids_reserve(map, 2)) {
		kyaml_free(k);
		kyaml_free(val);
		*rc = -ENOMEM;
		return;
	}
	long at = before ? key_index(map, before) : -1;
	size_t pos = at >= 0 ? (size_t)at : map->n;
	memmove(&map->kids[pos + 2], &map->kids[pos], (map->n - pos) * sizeof(*map->kids));
	map->kids[pos] = k;
	map->kids[pos + 1] = val;
	map->n += 2;
}

void kyaml_put(struct kyaml_node *map, const char *key, struct kyaml_node *val, int *rc)
{
	kyaml_put_before(map, NULL, key, val, rc);
}

void kyaml_insert(struct kyaml_node *seq, size_t i, struct kyaml_node *val, int *rc)
{
	if (!sticky_ok(seq, KYAML_SEQ, val, rc))
		return;
	if (kids_reserve(seq, 1)) {
		kyaml_free(val);
		*rc = -ENOMEM;
		return;
	}
	if (i > seq->n)
		i = seq->n;
	memmove(&seq->kids[i + 1], &seq->kids[i], (seq->n - i) * sizeof(*seq->kids));
	seq->kids[i] = val;
	seq->n++;
}

void kyaml_push(struct kyaml_node *seq, struct kyaml_node *val, int *rc)
{
	kyaml_insert(seq, seq ? seq->n : 0, val, rc);
}

struct kyaml_node *kyaml_get(const struct kyaml_node *map, const char *key)
{
	long i = key_index(map, key);
	return i >= 0 ? map->kids[i + 1] : NULL;
}

bool kyaml_del(struct kyaml_node *map, const char *key)
{
	long i = key_index(map, key);
	if (i < 0)
		return false;
	kyaml_free(map->kids[i]);
	kyaml_free(map->kids[i + 1]);
	memmove(&map->kids[i], &map->kids[i + 2], (map->n - (size_t)i - 2) * sizeof(*map->kids));
	map->n -= 2;
	return true;
}

struct kyaml_node *kyaml_take(struct kyaml_node *seq, size_t i)
{
	if (!seq || seq->kind != KYAML_SEQ || i >= seq->n)
		return NULL;
	struct kyaml_node *n = seq->kids[i];
	memmove(&seq->kids[i], &seq->kids[i + 1], (seq->n - i - 1) * sizeof(*seq->kids));
	seq->n--;
	return n;
}

const char *kyaml_text(const struct kyaml_node *n)
{
	return n && n->kind == KYAML_SCALAR ? n->value : NULL;
}

bool kyaml_is(const struct kyaml_node *n, const char *s)
{
	return n && n->kind == KYAML_SCALAR && n->len == strlen(s) && memcmp(n->value, s, n->len) == 0;
}

long kyaml_find(const struct kyaml_node *seq, const char *field, const char *val)
{
	if (!seq || seq->kind != KYAML_SEQ)
		return -1;
	for (size_t i = 0; i < seq->n; i++)
		if (kyaml_is(kyaml_get(seq->kids[i], field), val))
			return (long)i;
	return -1;
}

/* ---------------------------------------------------------------- reader */

int kyaml_reader_init(struct kyaml_reader *r, const char *buf, size_t len, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	const unsigned char *u = (const unsigned char *)buf;
	if (len >= 2 && ((u[0] == 0xfe && u[1] == 0xff) || (u[0] == 0xff && u[1] == 0xfe))) {
		snprintf(err, errlen, "1:1: UTF-16 input is not supported; convert it to UTF-8");
		return -EINVAL;
	}
	if (len >= 3 && u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf)
		r->base = 3; /* libyaml eats the BOM without counting it */
	if (!yaml_parser_initialize(&r->parser)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&r->parser, (const unsigned char *)buf, len);
	r->buf = buf;
	r->len = len;
	r->bi = r->base;
	return 0;
}

void kyaml_reader_fini(struct kyaml_reader *r)
{
	yaml_parser_delete(&r->parser);
}

/* Byte offset of character index ci (marks count code points; the input is valid
 * UTF-8, libyaml checked). Calls come in increasing order, so keep a cursor. */
static size_t byte_at(struct kyaml_reader *r, size_t ci)
{
	if (ci < r->ci) {
		r->ci = 0;
		r->bi = r->base;
	}
	while (r->ci < ci && r->bi < r->len) {
		r->bi++;
		while (r->bi < r->len && ((unsigned char)r->buf[r->bi] & 0xc0) == 0x80)
			r->bi++;
		r->ci++;
	}
	return r->bi;
}

static int parse_event(struct kyaml_reader *r, yaml_event_t *ev, char *err, size_t errlen)
{
	yaml_parser_t *p = &r->parser;
	if (yaml_parser_parse(p, ev))
		return 0;
	if (p->error == YAML_MEMORY_ERROR) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int n = snprintf(err, errlen, "%zu:%zu: %s", p->problem_mark.line + 1, p->problem_mark.column + 1,
			 p->problem ? p->problem : "YAML syntax error");
	if (p->context && n >= 0 && (size_t)n < errlen)
		snprintf(err + n, errlen - (size_t)n, " (%s at line %zu, column %zu)", p->context,
			 p->context_mark.line + 1, p->context_mark.column + 1);
	return -EINVAL;
}

static char *dup_opt(const yaml_char_t *s, int *rc)
{
	if (!s)
		return NULL;
	char *d = strdup((const char *)s);
	if (!d)
		*rc = -ENOMEM;
	return d;
}

/* A node for the first event of a node (scalar, alias, or collection start). */
static struct kyaml_node *node_from_event(const yaml_event_t *ev)
{
	struct kyaml_node *n = NULL;
	int rc = 0;
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		if (!(n = node_new(KYAML_SCALAR, ev->data.scalar.style)))
			return NULL;
		n->anchor = dup_opt(ev->data.scalar.anchor, &rc);
		n->tag = dup_opt(ev->data.scalar.tag, &rc);
		n->plain_implicit = ev->data.scalar.plain_implicit;
		n->quoted_implicit = ev->data.scalar.quoted_implicit;
		n->len = ev->data.scalar.length;
		if ((n->value = malloc(n->len + 1))) {
			memcpy(n->value, ev->data.scalar.value, n->len);
			n->value[n->len] = 0;
		} else {
			rc = -ENOMEM;
		}
		break;
	case YAML_ALIAS_EVENT:
		if ((n = node_new(KYAML_ALIAS, 0)))
			n->anchor = dup_opt(ev->data.alias.anchor, &rc);
		break;
	case YAML_SEQUENCE_START_EVENT:
		if (!(n = node_new(KYAML_SEQ, ev->data.sequence_start.style)))
			return NULL;
		n->anchor = dup_opt(ev->data.sequence_start.anchor, &rc);
		n->tag = dup_opt(ev->data.sequence_start.tag, &rc);
		n->plain_implicit = ev->data.sequence_start.implicit;
		break;
	case YAML_MAPPING_START_EVENT:
		if (!(n = node_new(KYAML_MAP, ev->data.mapping_start.style)))
			return NULL;
		n->anchor = dup_opt(ev->data.mapping_start.anchor, &rc);
		n->tag = dup_opt(ev->data.mapping_start.tag, &rc);
		n->plain_implicit = ev->data.mapping_start.implicit;
		break;
	default:
		return NULL;
	}
	if (n)
		n->line = ev->start_mark.line + 1;
	if (rc) {
		kyaml_free(n);
		return NULL;
	}
	return n;
}

/* Remember where the last real token ended (block ends are zero-width marks). */
static void note_span(struct kyaml_reader *r, const yaml_event_t *ev, struct kyaml_doc *doc)
{
	if (ev->end_mark.index > ev->start_mark.index)
		doc->content_end = byte_at(r, ev->end_mark.index);
	doc->root_end = byte_at(r, ev->end_mark.index);
}

/* Build the node that starts with ev (owned by the caller) and all its children. */
static int build_node(struct kyaml_reader *r, const yaml_event_t *ev, struct kyaml_node **out,
		      struct kyaml_doc *doc, int depth, char *err, size_t errlen)
{
	struct kyaml_node *n = node_from_event(ev);
	if (!n) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	note_span(r, ev, doc);
	if (n->kind == KYAML_SCALAR || n->kind == KYAML_ALIAS) {
		*out = n;
		return 0;
	}
	int rc = 0;
	if (depth >= KYAML_MAX_DEPTH) {
		snprintf(err, errlen, "%zu:%zu: nesting deeper than %d levels", ev->start_mark.line + 1,
			 ev->start_mark.column + 1, KYAML_MAX_DEPTH);
		rc = -EINVAL;
		goto err_node;
	}
	for (;;) {
		yaml_event_t kid;
		if ((rc = parse_event(r, &kid, err, errlen)))
			goto err_node;
		if (kid.type == YAML_SEQUENCE_END_EVENT || kid.type == YAML_MAPPING_END_EVENT) {
			note_span(r, &kid, doc);
			yaml_event_delete(&kid);
			break;
		}
		struct kyaml_node *child = NULL;
		if (!(rc = kids_reserve(n, 1)))
			rc = build_node(r, &kid, &child, doc, depth + 1, err, errlen);
		else
			snprintf(err, errlen, "out of memory");
		yaml_event_delete(&kid);
		if (rc)
			goto err_node;
		n->kids[n->n++] = child;
	}
	*out = n;
	return 0;
err_node:
	kyaml_free(n);
	return rc;
}

int kyaml_reader_next(struct kyaml_reader *r, struct kyaml_doc *doc, char *err, size_t errlen)
{
	yaml_event_t ev;
	int rc;
	memset(doc, 0, sizeof(*doc));
	if (r->done)
		return 1;
	do {
		if ((rc = parse_event(r, &ev, err, errlen)))
			return rc;
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			r->done = true;
			return 1;
		}
		doc->explicit_start = ev.type == YAML_DOCUMENT_START_EVENT && !ev.data.document_start.implicit;
		rc = ev.type == YAML_DOCUMENT_START_EVENT;
		yaml_event_delete(&ev);
	} while (!rc);
	if ((rc = parse_event(r, &ev, err, errlen)))
		return rc;
	doc->root_start = byte_at(r, ev.start_mark.index);
	doc->content_end = doc->root_start;
	rc = build_node(r, &ev, &doc->root, doc, 0, err, errlen);
	yaml_event_delete(&ev);
	if (rc)
		return rc;
	if ((rc = parse_event(r, &ev, err, errlen))) { /* DOCUMENT-END */
		kyaml_free(doc->root);
		doc->root = NULL;
		return rc;
	}
	yaml_event_delete(&ev);
	return 0;
}

/* ---------------------------------------------------------------- emitter */

static int emit_out(void *data, unsigned char *buf, size_t size)
{
	return kbuf_add(data, buf, size) == 0;
}

static int emit_node(yaml_emitter_t *e, const struct kyaml_node *n)
{
	yaml_event_t ev;
	yaml_char_t *anchor = (yaml_char_t *)n->anchor, *tag = (yaml_char_t *)n->tag;
	int ok = 0;
	switch (n->kind) {
	case KYAML_SCALAR:
		ok = yaml_scalar_event_initialize(&ev, anchor, tag, (yaml_char_t *)n->value, (int)n->len,
						  n->plain_implicit || !tag, n->quoted_implicit || !tag,
						  n->style) &&
		     yaml_emitter_emit(e, &ev);
		return ok ? 0 : -EINVAL;
	case KYAML_ALIAS:
		return yaml_alias_event_initialize(&ev, anchor) && yaml_emitter_emit(e, &ev) ? 0 : -EINVAL;
	case KYAML_SEQ:
		ok = yaml_sequence_start_event_initialize(&ev, anchor, tag, n->plain_implicit || !tag, n->style) &&
		     yaml_emitter_emit(e, &ev);
		break;
	case KYAML_MAP:
		ok = yaml_mapping_start_event_initialize(&ev, anchor, tag, n->plain_implicit || !tag, n->style) &&
		     yaml_emitter_emit(e, &ev);
		break;
	}
	if (!ok)
		return -EINVAL;
	for (size_t i = 0; i < n->n; i++) {
		int rc = emit_node(e, n->kids[i]);
		if (rc)
			return rc;
	}
	if (n->kind == KYAML_SEQ)
		ok = yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
	else
		ok = yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
	return ok ? 0 : -EINVAL;
}

int kyaml_emit(const struct kyaml_node *root, struct kbuf *out)
{
	yaml_emitter_t e;
	yaml_event_t ev;
	if (!yaml_emitter_initialize(&e))
		return -ENOMEM;
	yaml_emitter_set_output(&e, emit_out, out);
	yaml_emitter_set_unicode(&e, 1);
	yaml_emitter_set_width(&e, -1);
	yaml_emitter_set_indent(&e, 2);
	yaml_emitter_set_break(&e, YAML_LN_BREAK);
	int rc = -EINVAL;
	if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) || !yaml_emitter_emit(&e, &ev))
		goto err_emitter;
	if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) || !yaml_emitter_emit(&e, &ev))
		goto err_emitter;
	if ((rc = emit_node(&e, root)))
		goto err_emitter;
	rc = -EINVAL;
	if (!yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(&e, &ev))
		goto err_emitter;
	if (!yaml_stream_end_event_initialize(&ev) || !yaml_emitter_emit(&e, &ev) || !yaml_emitter_flush(&e))
		goto err_emitter;
	rc = 0;
err_emitter:
	if (rc && e.error == YAML_MEMORY_ERROR)
		rc = -ENOMEM;
	yaml_emitter_delete(&e);
	return rc;
}
