// SPDX-License-Identifier: MIT
// Logging: one logfmt line per event on stderr (level=... mod=... msg=...).
// Thread-safe: each line is formatted first and written with a single write(2).
#ifndef KS_LOG_H
#define KS_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Set the threshold; lines above it are dropped. */
void log_set_level(enum log_level lvl);
/* Select JSON output instead of logfmt. */
void log_set_json(int on);
/* Parse "error|warn|info|debug"; 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/* True if a line at lvl would be written. */
int log_enabled(enum log_level lvl);

/* Escape s for use inside a quoted logfmt value (quotes, backslashes, controls). Returns buf. */
const char *log_esc(char *buf, size_t len, const char *s);

/* Write one line. fmt produces extra key=value pairs appended after mod= and msg=. */
void log_msg(enum log_level lvl, const char *mod, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_error(mod, msg, ...) log_msg(LOG_ERROR, mod, msg, __VA_ARGS__)
#define log_warn(mod, msg, ...) log_msg(LOG_WARN, mod, msg, __VA_ARGS__)
#define log_info(mod, msg, ...) log_msg(LOG_INFO, mod, msg, __VA_ARGS__)
#define log_debug(mod, msg, ...) \
	do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, mod, msg, __VA_ARGS__); } while (0)

#endif
