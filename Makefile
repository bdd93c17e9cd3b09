# Limen - see README.md. `make run` and `make test` work on a fresh Debian machine as root.
CC      ?= cc
PKGS    := libuv libcjson yaml-0.1 libpcre2-8 openssl libnghttp2
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE -g -pthread -Icommon -Idataplane -Idataplane/plugins -Icontroller $(WARN) $(PKG_CFLAGS)
LIBS    := $(PKG_LIBS) -lpthread -lm
# the controller also talks HTTP(S) to the API server and the data planes with libcurl
CTL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null) $(LIBS)

RELEASE_CFLAGS := $(BASE_CFLAGS) -O2
ASAN_CFLAGS    := $(BASE_CFLAGS) -Wno-format-truncation -Wno-nonnull -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -DLM_SANITIZE=1

COMMON_SRC := $(filter-out %_test.c,$(wildcard common/*.c))
DP_SRC     := $(filter-out %_test.c %_bench.c dataplane/main.c,$(wildcard dataplane/*.c dataplane/plugins/*.c))
LIB_SRC    := $(COMMON_SRC) $(DP_SRC)
UNIT_SRC   := $(wildcard common/*_test.c dataplane/*_test.c dataplane/plugins/*_test.c)
HEADERS    := $(wildcard common/*.h dataplane/*.h dataplane/plugins/*.h controller/*.h)
# the controller: its own library on top of liblimen.a (it validates with the data plane's validator)
CTL_SRC      := $(filter-out %_test.c %_probe.c controller/main.c,$(wildcard controller/*.c))
CTL_UNIT_SRC := $(wildcard controller/*_test.c)
CTL_REL_OBJ  := $(patsubst %.c,build/rel/%.o,$(CTL_SRC))
CTL_ASAN_OBJ := $(patsubst %.c,build/asan/%.o,$(CTL_SRC))
UNIT_SRC   += $(CTL_UNIT_SRC)

REL_OBJ  := $(patsubst %.c,build/rel/%.o,$(LIB_SRC))
ASAN_OBJ := $(patsubst %.c,build/asan/%.o,$(LIB_SRC))
UNIT_BIN_REL  := $(patsubst %.c,build/rel/%,$(UNIT_SRC))
UNIT_BIN_ASAN := $(patsubst %.c,build/asan/%,$(UNIT_SRC))

FUZZ_SRC := $(wildcard common/fuzz/fuzz_*.c dataplane/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst %.c,build/fuzz/%,$(FUZZ_SRC))

.PHONY: all controller bench-controller deps build run test unit unit-asan asan fuzz-build fuzz-replay blackbox e2e e2e-build manifests bench clean help
all: bin/limen-dataplane bin/limen-controller
controller: bin/limen-controller

help:
	@echo "make deps | make (build) | make run | make test | make bench | make fuzz-build | make manifests | make clean"

deps:
	@tools/deps.sh

build: bin/limen-dataplane bin/limen-controller

build/rel/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"; $(CC) $(RELEASE_CFLAGS) -c $< -o $@

build/asan/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"; $(CC) $(ASAN_CFLAGS) -c $< -o $@

build/rel/liblimen.a: $(REL_OBJ)
	@rm -f $@; ar rcs $@ $^

build/asan/liblimen.a: $(ASAN_OBJ)
	@rm -f $@; ar rcs $@ $^

# -rdynamic and the whole library: plugins loaded with --plugin-dir call the lm_ctx_* API
bin/limen-dataplane: build/rel/dataplane/main.o build/rel/liblimen.a
	@mkdir -p bin
	@echo "  LD      $@"; $(CC) $(RELEASE_CFLAGS) -rdynamic -o $@ $< -Wl,--whole-archive build/rel/liblimen.a -Wl,--no-whole-archive $(LIBS)

bin/asan/limen-dataplane: build/asan/dataplane/main.o build/asan/liblimen.a
	@mkdir -p bin/asan
	@echo "  LD asan $@"; $(CC) $(ASAN_CFLAGS) -rdynamic -o $@ $< -Wl,--whole-archive build/asan/liblimen.a -Wl,--no-whole-archive $(LIBS)

build/rel/libcontroller.a: $(CTL_REL_OBJ)
	@rm -f $@; ar rcs $@ $^

build/asan/libcontroller.a: $(CTL_ASAN_OBJ)
	@rm -f $@; ar rcs $@ $^

bin/limen-controller: build/rel/controller/main.o build/rel/libcontroller.a build/rel/liblimen.a
	@mkdir -p bin
	@echo "  LD      $@"; $(CC) $(RELEASE_CFLAGS) -o $@ $^ $(CTL_LIBS)

bin/asan/limen-controller: build/asan/controller/main.o build/asan/libcontroller.a build/asan/liblimen.a
	@mkdir -p bin/asan
	@echo "  LD asan $@"; $(CC) $(ASAN_CFLAGS) -o $@ $^ $(CTL_LIBS)

# small C programs the e2e tests drive (controller/*_probe.c)
build/rel/controller/%_probe: controller/%_probe.c build/rel/libcontroller.a build/rel/liblimen.a $(HEADERS)
	@echo "  LD      $@"; $(CC) $(RELEASE_CFLAGS) -o $@ $< build/rel/libcontroller.a build/rel/liblimen.a $(CTL_LIBS)

build/asan/controller/%_probe: controller/%_probe.c build/asan/libcontroller.a build/asan/liblimen.a $(HEADERS)
	@echo "  LD asan $@"; $(CC) $(ASAN_CFLAGS) -o $@ $< build/asan/libcontroller.a build/asan/liblimen.a $(CTL_LIBS)

CTL_PROBES := $(patsubst controller/%.c,build/rel/controller/%,$(wildcard controller/*_probe.c))

# the example external plugin (examples/plugins), built and tested by `make test`
build/plugins/%.so: examples/plugins/%.c dataplane/lm_plugin.h common/lm_schema.h
	@mkdir -p build/plugins
	@echo "  SO      $@"; $(CC) $(RELEASE_CFLAGS) -shared -fPIC -o $@ $<

PLUGIN_SO := $(patsubst examples/plugins/%.c,build/plugins/%.so,$(wildcard examples/plugins/*.c))

# WebSocket client and server on libwebsockets that the black-box tests drive (tools/ws)
build/rel/tools/%: tools/ws/%.c
	@mkdir -p build/rel/tools
	@echo "  LD      $@"; $(CC) $(RELEASE_CFLAGS) -o $@ $< $(shell pkg-config --cflags --libs libwebsockets 2>/dev/null)

WS_TOOLS := $(patsubst tools/ws/%.c,build/rel/tools/%,$(wildcard tools/ws/*.c))

asan: bin/asan/limen-dataplane

# unit tests: one binary per *_test.c, linked against the library (controller tests: both libraries)
build/rel/controller/%_test: controller/%_test.c build/rel/libcontroller.a build/rel/liblimen.a $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"; $(CC) $(RELEASE_CFLAGS) -o $@ $< build/rel/libcontroller.a build/rel/liblimen.a $(CTL_LIBS)

build/asan/controller/%_test: controller/%_test.c build/asan/libcontroller.a build/asan/liblimen.a $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "  LD asan $@"; $(CC) $(ASAN_CFLAGS) -o $@ $< build/asan/libcontroller.a build/asan/liblimen.a $(CTL_LIBS)

build/rel/%_test: %_test.c build/rel/liblimen.a $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"; $(CC) $(RELEASE_CFLAGS) -o $@ $< build/rel/liblimen.a $(LIBS)

build/asan/%_test: %_test.c build/asan/liblimen.a $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "  LD asan $@"; $(CC) $(ASAN_CFLAGS) -o $@ $< build/asan/liblimen.a $(LIBS)

unit: $(UNIT_BIN_REL)
	@tools/run-suite.sh unit $(UNIT_BIN_REL)

unit-asan: $(UNIT_BIN_ASAN)
	@tools/run-suite.sh unit-asan $(UNIT_BIN_ASAN)

# libFuzzer targets (clang); `make fuzz-replay` runs each over its corpus once
build/fuzz/%: %.c $(LIB_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"; clang -std=gnu11 -D_GNU_SOURCE -g -O1 -w -pthread -Icommon -Idataplane -Idataplane/plugins $(PKG_CFLAGS) -DLM_FUZZ=1 \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -o $@ $< $(LIB_SRC) $(LIBS)

fuzz-build: $(FUZZ_BIN)

fuzz-replay: $(FUZZ_BIN)
	@tools/run-suite.sh fuzz-replay $(FUZZ_BIN)

blackbox: bin/asan/limen-dataplane bin/limen-dataplane $(PLUGIN_SO) $(WS_TOOLS)
	@tools/run-suite.sh blackbox

# a real kube-apiserver + etcd and kubectl, built from Go modules (e2e/); needs Go >= 1.26; and Helm
e2e-build:
	@tools/e2e-env.sh build
	@tools/helm-env.sh build

# charts/limen/crds from crds/, manifests/all-in-one.yaml and manifests/rbac.yaml rendered from the chart
# (e2e/t/test_chart.py checks they are up to date)
manifests:
	@tools/manifests.sh

e2e: e2e-build bin/limen-controller bin/asan/limen-controller bin/limen-dataplane $(CTL_PROBES)
	@tools/run-suite.sh e2e

run: deps bin/limen-dataplane
	@tools/run-example.sh

test: deps
	@$(MAKE) --no-print-directory bin/limen-dataplane bin/asan/limen-dataplane bin/limen-controller bin/asan/limen-controller $(CTL_PROBES) $(UNIT_BIN_REL) $(UNIT_BIN_ASAN) $(FUZZ_BIN) $(PLUGIN_SO) $(WS_TOOLS)
	@tools/e2e-env.sh build
	@tools/helm-env.sh build
	@tools/run-suite.sh all $(UNIT_BIN_REL) -- $(UNIT_BIN_ASAN) -- $(FUZZ_BIN)

build/rel/router_bench: dataplane/router_bench.c build/rel/liblimen.a $(HEADERS)
	@echo "  LD      $@"; $(CC) $(RELEASE_CFLAGS) -o $@ $< build/rel/liblimen.a $(LIBS)

bench: deps bin/limen-dataplane build/rel/router_bench
	@tools/deps.sh --bench
	@tools/bench.sh
	@tools/bench_h2.sh

# the controller at scale against a real API server (tools/bench_controller.py)
bench-controller: deps bin/limen-controller bin/limen-dataplane
	@tools/e2e-env.sh build
	@tools/helm-env.sh build
	@python3 tools/bench_controller.py

clean:
	rm -rf build bin
