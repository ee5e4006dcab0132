# Harmonia — the two set-up commands:
#   make demo   installs what is missing, builds, generates from the default model
#   make test   installs what is missing, builds, runs every test (incl. the ASan+UBSan build)
SHELL := /bin/bash
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
HARMONIA_SHARED ?= $(abspath $(CURDIR)/../shared)
export HARMONIA_SHARED
DEMO_MODEL ?= $(HARMONIA_SHARED)/models/stories260K/stories260K.gguf
# Test binaries that parse untrusted input: built and run again under ASan+UBSan.
ASAN_TESTS ?= test_gguf test_tokenizer test_model test_cli test_server

.PHONY: all deps build demo test test-fast asan clean npm-deps

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	@if [ ! -f "$(DEMO_MODEL)" ]; then \
	  echo "demo model not found: $(DEMO_MODEL)"; \
	  echo "give one: make demo DEMO_MODEL=/path/to/model.gguf  (or set HARMONIA_SHARED to the shared/ folder)"; \
	  exit 2; fi
	@echo "== harmonia generate -m $(DEMO_MODEL) -p 'Once upon a time' -n 200 --temp 0"
	$(BUILD)/harmonia generate -m "$(DEMO_MODEL)" -p "Once upon a time" -n 200 --temp 0
	@echo "== the same, as JSON with timings"
	$(BUILD)/harmonia generate -m "$(DEMO_MODEL)" -p "Once upon a time" -n 64 --temp 0 --json

# The official `openai` npm client, for the server's client test (tests/npm; ServerNpm.* skips without it).
NPM_DIR := tests/npm
$(NPM_DIR)/node_modules/.harmonia-installed: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	cd $(NPM_DIR) && npm ci --no-audit --no-fund
	touch $@

npm-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(NPM_DIR)/node_modules/.harmonia-installed; \
	else echo "npm-deps: npm not found: the openai npm client test (ServerNpm) will skip"; fi

test-fast: build npm-deps
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DHARMONIA_SANITIZE=ON -DHARMONIA_CUDA=OFF

asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j$(JOBS) --target harmonia $(ASAN_TESTS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS) -R '^(Gguf|Tokenizer|ChatTemplate|Hf|BadInput|Cli|Golden|Server)' -E 'Speed'

test: test-fast asan

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
