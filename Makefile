# SPDX-License-Identifier: MIT
# ktls-sidecar build, tests and demo. `make demo` and `make check` install the
# Debian packages they need first (the lists below are the only place they live).

# ---- Debian packages (the one list) -------------------------------------------
PKGS_BUILD := build-essential pkg-config liburing-dev libssl-dev libnl-3-dev libyaml-dev
PKGS_RUN   := postgresql-15 postgresql-client-15 pgbouncer openssl procps iproute2 python3
PKGS_TEST  := perl jq strace qemu-system-x86 busybox-static cpio xz-utils zstd nodejs npm clang libclang-rt-14-dev
PKGS_BENCH := stunnel4
PKGS_DEMO  := $(PKGS_BUILD) $(PKGS_RUN)
PKGS_CHECK := $(PKGS_BUILD) $(PKGS_RUN) $(PKGS_TEST)

# ---- build --------------------------------------------------------------------
CC      ?= cc
PKGCONF ?= pkg-config
LIBS    := liburing openssl libnl-3.0 yaml-0.1
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0)

OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
CPPFLAGS += -D_GNU_SOURCE -DKS_VERSION='"$(VERSION)"' -Isidecar -Ihandshake -Iktls -Iadmin -Ik8s
ALL_CFLAGS = -std=gnu11 $(WARN) -pthread -MMD -MP $(CFLAGS) $(shell $(PKGCONF) --cflags $(LIBS) 2>/dev/null)
LDLIBS  += $(shell $(PKGCONF) --libs $(LIBS) 2>/dev/null) -pthread

ifeq ($(SANITIZE),1)
BUILD   ?= build/asan
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
BUILD   ?= build
endif

SRCS  := $(wildcard sidecar/*.c handshake/*.c ktls/*.c admin/*.c k8s/*.c)
OBJS  := $(SRCS:%.c=$(BUILD)/obj/%.o)
LIBOBJS := $(filter-out $(BUILD)/obj/sidecar/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/*.c)
UNITS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%.t)
TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(wildcard tests/tools/*.c))
BIN   := $(BUILD)/ktls-sidecar

.PHONY: fuzz check-fuzz
.SECONDARY:
.PHONY: bench bench-vm deps-bench
.PHONY: all unit clean deps deps-demo deps-check demo check check-unit check-integration check-asan check-vm help
all: $(BIN) $(UNITS) $(TOOLS)

$(BIN): $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

# The two objects that embed KS_VERSION are rebuilt when `git describe` changes.
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' >$@
$(BUILD)/obj/sidecar/main.o $(BUILD)/obj/sidecar/control.o: $(BUILD)/version.stamp
.PHONY: FORCE
FORCE:

$(BUILD)/tests/%.t: tests/unit/%.c $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)

$(BUILD)/tests/tools/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

-include $(OBJS:.o=.d)

clean:
	rm -rf build

help:
	@echo "make demo   - throwaway PostgreSQL + PgBouncer behind the sidecar, psql over TLS"
	@echo "make check  - install test deps, build, run unit, integration, sanitizer and VM suites"
	@echo "make        - build $(BIN)"

# ---- Debian dependencies ----------------------------------------------------------
# Install whatever is missing from a list, with one apt-get update first. A node/npm
# that did not come from Debian (NodeSource, nvm) counts as present: Debian's npm
# package would conflict with it.
define apt_install
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" && continue; \
		case $$p in nodejs) command -v node >/dev/null && continue;; npm) command -v npm >/dev/null && continue;; esac; \
		missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root, or install them)"; exit 1; fi; \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps-demo:
	$(call apt_install,$(PKGS_DEMO))

deps-check:
	$(call apt_install,$(PKGS_CHECK))

deps-bench:
	$(call apt_install,$(PKGS_BUILD) $(PKGS_RUN) $(PKGS_BENCH))

# Side-by-side benchmark (not part of check; ~30 min on 2 cores): knobs in bench/RESULTS.md
# (ROUNDS, DURATION, ONLY, TERMINATORS...). bench-vm runs the kTLS modes in tests/vm.
bench: deps-bench
	$(MAKE) --no-print-directory $(BIN)
	KTLS_SIDECAR=$(abspath $(BIN)) bench/run.sh

bench-vm: deps-bench deps-check
	$(MAKE) --no-print-directory $(BIN)
	BENCH_VM=1 KTLS_SIDECAR=$(abspath $(BIN)) bench/run.sh

# ---- the two commands ---------------------------------------------------------------
demo: deps-demo
	$(MAKE) --no-print-directory all
	tests/demo.sh

PROVE ?= prove
# The sanitizer pass: every test that drives the daemon's own code paths
# (the injector and big COPYs are covered by the fuzz replay and 75-chunking).
ASAN_TESTS ?= tests/t/10-session.t tests/t/15-fallback.t tests/t/30-negotiation.t tests/t/40-mtls.t tests/t/45-check.t \
	tests/t/50-admin.t tests/t/55-lifecycle.t tests/t/65-privileges.t tests/t/70-abuse.t tests/t/75-chunking.t \
	tests/t/80-idle.t
check: deps-check
	$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory check-unit
	$(MAKE) --no-print-directory check-integration
	$(MAKE) --no-print-directory check-asan
	$(MAKE) --no-print-directory check-fuzz
	$(MAKE) --no-print-directory check-vm

check-unit: $(UNITS)
	$(PROVE) --exec '' $(UNITS)

check-integration: $(BIN)
	KTLS_SIDECAR=$(abspath $(BIN)) $(PROVE) -v tests/t/*.t

check-asan:
	$(MAKE) --no-print-directory SANITIZE=1 all
	$(PROVE) --exec '' $(patsubst build/%,build/asan/%,$(UNITS))
	KTLS_SIDECAR=$(abspath build/asan/ktls-sidecar) TEST_SANITIZE=1 TEST_COPY_MB=20 TEST_CHUNK_MB=4 \
		ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 $(PROVE) $(ASAN_TESTS)

# ---- libFuzzer targets (clang): `make fuzz` explores, `make check-fuzz` replays the corpus ----
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_NAMES   := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ_NAMES:%=build/fuzz/%)
FUZZ_OBJS    := $(filter-out build/fuzz/obj/sidecar/main.o,$(SRCS:%.c=build/fuzz/obj/%.o))

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -std=gnu11 -g -O1 -fsanitize=fuzzer-no-link $(FUZZ_SAN) -pthread \
		$(shell $(PKGCONF) --cflags $(LIBS) 2>/dev/null) -c -o $@ $<

build/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(CPPFLAGS) -std=gnu11 -g -O1 -fsanitize=fuzzer $(FUZZ_SAN) -pthread -o $@ $< $(FUZZ_OBJS) $(LDLIBS)

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_NAMES); do \
		mkdir -p build/fuzz/corpus-$$f; \
		echo "== $$f ($(FUZZ_SECONDS) s)"; \
		build/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -print_final_stats=1 \
			build/fuzz/corpus-$$f tests/fuzz/corpus/$$f 2>&1 | grep -E 'stat::number_of_executed_units|ERROR|SUMMARY|crash-' ; \
	done

# Replay every seed (and anything `make fuzz` found and you kept) as a regression test.
check-fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_NAMES); do \
		build/fuzz/$$f tests/fuzz/corpus/$$f/* >build/fuzz/$$f.replay.log 2>&1 || { cat build/fuzz/$$f.replay.log; exit 1; }; \
		echo "ok - $$f replays $$(ls tests/fuzz/corpus/$$f | wc -l) inputs"; \
	done

check-vm: $(BIN)
	$(PROVE) -v tests/vm/*.t
