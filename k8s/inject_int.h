// SPDX-License-Identifier: MIT
// Private to k8s/: the YAML node tree (yaml_tree.c), the injector's options
// (inject_opts.c) and the pod spec surgery (inject_pod.c). Only this folder
// includes <yaml.h>.
#ifndef KS_INJECT_INT_H
#define KS_INJECT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <yaml.h>

#define INJECT_NAME "ktls-sidecar"             /* the container we add (and find again) */
#define INJECT_VOL_PREFIX "ktls-sidecar-"      /* every volume we add starts with this */
#define INJECT_ANNOTATION "ktls-sidecar.io/inject"
#define INJECT_MAX_SET 32

/* ---- growable byte buffer ---- */
struct kbuf {
	char *p;
	size_t n, cap;
};

/* Append n bytes; 0 or -ENOMEM. */
int kbuf_add(struct kbuf *b, const void *s, size_t n);
/* Append a C string; 0 or -ENOMEM. */
int kbuf_puts(struct kbuf *b, const char *s);
void kbuf_free(struct kbuf *b);

/* ---- YAML node tree (keeps tags, anchors, aliases and styles of the input) ---- */
enum kyaml_kind { KYAML_SCALAR, KYAML_SEQ, KYAML_MAP, KYAML_ALIAS };

struct kyaml_node {
	enum kyaml_kind kind;
	char *tag;                 /* NULL: none written */
	char *anchor;              /* &anchor, or the target of an ALIAS */
	char *value;               /* SCALAR: NUL-terminated copy */
	size_t len;                /* SCALAR: length (may hold NULs) */
	int style;                 /* yaml_*_style_t of its kind */
	int plain_implicit, quoted_implicit; /* collections: implicit in plain_implicit */
	size_t line;               /* 1-based line in the input; 0 for built nodes */
	struct kyaml_node **kids;  /* SEQ: items; MAP: key, value, key, value, ... */
	size_t n, cap;
};

/* One document of a stream; offsets are byte offsets into the input. */
struct kyaml_doc {
	struct kyaml_node *root;
	size_t root_start;   /* first byte of the root node (after '---' and comments) */
	size_t content_end;  /* end of the last token inside the root */
	size_t root_end;     /* where the parser closed the root (next token) */
	bool explicit_start; /* the document began with '---' */
};

/* Reader over an in-memory UTF-8 stream; libyaml marks count characters, not bytes. */
struct kyaml_reader {
	yaml_parser_t parser;
	const char *buf;
	size_t len, base;    /* base: bytes of a skipped UTF-8 BOM */
	size_t ci, bi;       /* cursor: character index ci is byte bi */
	bool done;
};

/* Start reading buf (must outlive the reader); 0, -EINVAL (UTF-16) or -ENOMEM. */
int kyaml_reader_init(struct kyaml_reader *r, const char *buf, size_t len, char *err, size_t errlen);
void kyaml_reader_fini(struct kyaml_reader *r);
/* Next document: 0 (doc filled, caller frees doc->root), 1 at stream end, -EINVAL ("LINE:COL: problem"). */
int kyaml_reader_next(struct kyaml_reader *r, struct kyaml_doc *doc, char *err, size_t errlen);

/* Append root as a lone implicit YAML document to out; 0, -EINVAL or -ENOMEM. */
int kyaml_emit(const struct kyaml_node *root, struct kbuf *out);
void kyaml_free(struct kyaml_node *n);

/* Builders return NULL when out of memory. kyaml_str picks plain or double-quoted
 * style so that YAML 1.1 (Kubernetes) reads the value back as a string. */
struct kyaml_node *kyaml_str(const char *s);
struct kyaml_node *kyaml_int(long v);
struct kyaml_node *kyaml_bool(bool v);
struct kyaml_node *kyaml_map(void);
struct kyaml_node *kyaml_seq(void);

/* Sticky-error builders: when *rc is already non-zero, or a node is NULL, they free
 * val, set *rc (-ENOMEM) and do nothing else, so a tree is built bottom-up and
 * checked once. kyaml_put replaces the value of an existing key in place. */
void kyaml_put(struct kyaml_node *map, const char *key, struct kyaml_node *val, int *rc);
void kyaml_push(struct kyaml_node *seq, struct kyaml_node *val, int *rc);
/* Insert val at index i of seq (i <= n); same error rules. */
void kyaml_insert(struct kyaml_node *seq, size_t i, struct kyaml_node *val, int *rc);
/* Add key: val to map right before key `before` (appended when absent). */
void kyaml_put_before(struct kyaml_node *map, const char *before, const char *key,
		      struct kyaml_node *val, int *rc);

/* Value of key in map (NULL if map is no mapping or the key is absent). */
struct kyaml_node *kyaml_get(const struct kyaml_node *map, const char *key);
/* Remove key from map and free it with its value; true if it was there. */
bool kyaml_del(struct kyaml_node *map, const char *key);
/* Detach item i of seq and return it (caller frees). */
struct kyaml_node *kyaml_take(struct kyaml_node *seq, size_t i);
/* The text of a scalar, NULL for any other kind. */
const char *kyaml_text(const struct kyaml_node *n);
/* True if n is a scalar equal to s. */
bool kyaml_is(const struct kyaml_node *n, const char *s);
/* Index of the first mapping in seq whose `field` is the scalar val, or -1. */
long kyaml_find(const struct kyaml_node *seq, const char *field, const char *val);

/* ---- injector options (inject_opts.c) ---- */
struct inject_opts {
	const char *image, *secret, *container, *seccomp_profile, *config_map;
	const char *cpu_request, *memory_request, *cpu_limit, *memory_limit;
	const char *set_key[INJECT_MAX_SET], *set_val[INJECT_MAX_SET];
	char set_buf[INJECT_MAX_SET][128];
	int nset;
	int listen_port, metrics_port;
	char backend[128];  /* KTLS_SIDECAR_BACKEND: HOST:PORT or unix:/PATH */
	char sock_dir[108]; /* unix backend: the directory the pooler shares with us */
	bool legacy, net_admin, mtls;
	char **files;
	int nfiles;
};

/* Parse argv (after "inject"); 0, -EAGAIN for --help, -EINVAL (message in err). */
int inject_opts_parse(struct inject_opts *o, int argc, char **argv, char *err, size_t errlen);
void inject_opts_fini(struct inject_opts *o);
void inject_opts_usage(FILE *f);

/* ---- pod spec surgery (inject_pod.c) ---- */
/* The sidecar container's environment, in order, to add(arg, NAME, VALUE); a later
 * variable replaces an earlier one of the same name (--set over a default). */
void inject_env(const struct inject_opts *o, void (*add)(void *arg, const char *name, const char *val), void *arg);
/* Add or refresh the sidecar in the PodSpec mapping spec. what names the workload
 * in messages ("file:line: Deployment/x"). 0 or -EINVAL/-ENOMEM (message in err). */
int inject_pod_spec(const struct inject_opts *o, struct kyaml_node *spec, const char *what,
		    char *err, size_t errlen);

#endif
