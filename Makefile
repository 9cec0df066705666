# Entry points. Everything a fresh Debian 12 machine needs is installed by scripts/setup.sh.
#   make run            install what building and running need, build (Release), start the
#                       bridge on 127.0.0.1:8080 / :50051 (ARGS='--ws_port=9000 ...' adds flags)
#   make test           install, build, run the whole suite through ctest, then a short
#                       libFuzzer pass (TEST_FUZZ_SECONDS per target; TEST_FUZZ_SECONDS=0 skips)
#   make test SANITIZE=1  the same with AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench          run the benchmark scenarios (see docs/benchmarks.md)
#   make fuzz           build the libFuzzer targets with clang and run each for FUZZ_SECONDS
#   make package        build the Debian package (CPack) into build/release: binary, systemd unit,
#                       flag file in /etc/gathering-bridge, docs (docs/operations.md#install)
#   make fmt            clang-format every C++ file we own
JOBS ?= 2
SANITIZE ?= 0
ARGS ?=
CTEST_ARGS ?=

ifeq ($(SANITIZE),1)
  TEST_DIR := build/asan
  TEST_CMAKE := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBRIDGE_SANITIZE=ON
else
  TEST_DIR := build/test
  TEST_CMAKE := -DCMAKE_BUILD_TYPE=RelWithDebInfo
endif

FUZZ_SECONDS ?= 60
TEST_FUZZ_SECONDS ?= 15
FUZZ_TARGETS := fuzz_token_verifier fuzz_channel_pattern fuzz_client_frame fuzz_request_target fuzz_ws_decoder fuzz_ws_session

.PHONY: setup run build test package bench fuzz fmt clean

RELEASE_CMAKE := -DCMAKE_BUILD_TYPE=Release -DBRIDGE_BUILD_TESTS=OFF

# Only what building and running need; the test, browser, bench and fuzz tools come with their
# own targets.
setup:
	@scripts/setup.sh

build: setup
	@cmake -S . -B build/release -G Ninja $(RELEASE_CMAKE) -DBRIDGE_BUILD_BENCH=OFF >/dev/null
	@cmake --build build/release -j$(JOBS) --target gathering-bridge

run: build
	./build/release/src/app/gathering-bridge $(ARGS)

package: build
	@scripts/setup.sh --with-packaging
	@cd build/release && cpack -G DEB
	@ls build/release/gathering-bridge_*.deb

test: setup
	@scripts/setup.sh --with-tests --with-browser
	@cmake -S . -B $(TEST_DIR) -G Ninja $(TEST_CMAKE) >/dev/null
	@cmake --build $(TEST_DIR) -j$(JOBS)
	@cd $(TEST_DIR) && ctest --output-on-failure --timeout 600 $(CTEST_ARGS)
	@if [ "$(TEST_FUZZ_SECONDS)" != 0 ]; then \
	  $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS); fi

bench: setup
	@scripts/setup.sh --with-bench
	@cmake -S . -B build/release -G Ninja $(RELEASE_CMAKE) -DBRIDGE_BUILD_BENCH=ON >/dev/null
	@cmake --build build/release -j$(JOBS)
	@bench/run.sh

fuzz: setup
	@scripts/setup.sh --with-fuzz
	@CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DBRIDGE_BUILD_BENCH=OFF >/dev/null
	@cmake --build build/fuzz -j$(JOBS) --target $(FUZZ_TARGETS)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t && \
	  echo "== $$t ($(FUZZ_SECONDS) s)" && \
	  if ! build/fuzz/tests/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=16384 \
	      -artifact_prefix=build/fuzz/ \
	      build/fuzz/corpus/$$t tests/fuzz/corpus/$$t > build/fuzz/$$t.log 2>&1; then \
	    tail -40 build/fuzz/$$t.log; exit 1; \
	  fi; tail -2 build/fuzz/$$t.log; \
	done

fmt:
	@scripts/setup.sh --with-dev
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf build
