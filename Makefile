# The README's two commands: `make run` and `make test`. Both install what is missing first.
#   make run  [MODEL=/path/or/org/name|synthetic:NAME] [CONFIG=configs/default.yaml]
#   make test [SANITIZE=1] [LABELS=unit]   (SANITIZE=1 builds ASan+UBSan into build-asan/)
SHELL := /bin/bash
SANITIZE ?= 0
CONFIG ?= configs/default.yaml
MODEL ?=
JOBS ?= $(shell nproc)

ifeq ($(SANITIZE),1)
BUILD_DIR ?= build-asan
CMAKE_FLAGS += -DSTRATA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD_DIR ?= build
CMAKE_FLAGS += -DCMAKE_BUILD_TYPE=RelWithDebInfo
endif

CTEST_ARGS ?= --output-on-failure --timeout 600
ifneq ($(LABELS),)
CTEST_ARGS += -L $(LABELS)
endif

NODE_CLIENTS := tests/integration/node
DEPLOY_NODE := tests/deploy/node

.PHONY: all deps configure build run test bench clean node-clients
all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD_DIR)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/bin/strata serve --config $(CONFIG) $(if $(MODEL),--model $(MODEL),)

# The official openai npm client the integration tests drive, and @grafana/schema + typescript
# that type-check the Grafana dashboard (both pinned by their package-lock.json).
node-clients: deps
	@[[ -d $(NODE_CLIENTS)/node_modules/openai ]] || npm ci --prefix $(NODE_CLIENTS) --no-audit --no-fund
	@[[ -d $(DEPLOY_NODE)/node_modules/@grafana/schema && -d $(DEPLOY_NODE)/node_modules/typescript ]] || \
	  npm ci --prefix $(DEPLOY_NODE) --no-audit --no-fund

test: build node-clients
	cd $(BUILD_DIR) && ctest -j $(JOBS) $(CTEST_ARGS)

bench: build
	$(BUILD_DIR)/bin/bench_single_stream

clean:
	rm -rf build build-asan
