# ferry — build, test and run. `make deps` once on a fresh Debian 12 machine with Swift, then `make test`.
SHELL := /bin/bash
SWIFT ?= swift
SWIFT_FLAGS ?=
PYTHON ?= python3
# Release builds are made as the Debian package ships ferry: the Swift standard library and Foundation
# linked in (the target machines have no Swift), symbols bound at start (-z now, full RELRO). The
# benchmarks measure binaries built this way, since that is what users run.
RELEASE_FLAGS := -c release --static-swift-stdlib -Xlinker -z -Xlinker now

APT_PACKAGES := pkg-config libcurl4-openssl-dev libssl-dev libyaml-dev libsqlite3-dev sqlite3 \
	openssh-server openssh-client inotify-tools rclone procps bindfs fuse3 sshfs fswatch time
PIP_PACKAGES := moto[server]==5.2.1 boto3 awscli pytest werkzeug paramiko crc32c

# For `make deb` and `make test-install` only (not needed to build or test).
PACKAGING_PACKAGES := debhelper lintian debootstrap dpkg-dev systemd systemd-container

.PHONY: deps-packaging
deps-packaging:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(PACKAGING_PACKAGES)

.PHONY: deps build release test test-swift test-emulator clean

deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES)
	$(PYTHON) -m pip install -q $(PIP_PACKAGES)

build:
	$(SWIFT) build $(SWIFT_FLAGS) -Xswiftc -warnings-as-errors

release:
	$(SWIFT) build $(RELEASE_FLAGS) $(SWIFT_FLAGS)

QUIET_E2E := InboundKillTests|ExplainCommandTests
# Tests that measure the test process's own heap (mallinfo2 counts every thread's allocations): beside
# the other module tests, one holding thousands of queued files made DelayQueueTests see 587 bytes an
# action against its 256 limit. They run after the parallel run, by themselves.
HEAP_TESTS := SubmitLoopRetentionTests|DelayQueueTests|HeapTrimmerTests

# The whole suite: Swift tests (unit + end-to-end against the emulator) and the emulator's own boto3 suite.
test: build
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests -Xswiftc -warnings-as-errors
	# Three runs: module tests (those measuring the process's heap apart, HEAP_TESTS); end-to-end tests
	# (many processes: ferry, emulators, sshd; they include the chaos seeds and the short soak,
	# SoakTests); and the kernel-limit tests, which lower inotify sysctls for a moment and so run alone.
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build --skip 'KernelLimitTests|EndToEndTests|$(HEAP_TESTS)'
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter '$(HEAP_TESTS)'
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter EndToEndTests --skip '$(QUIET_E2E)'
	# Tests whose point is a moment inside a slow step (a SIGKILL during retrievals; a file seen while
	# its transfer is in flight): beside 80 other end-to-end tests on 2 cores the moment was seen to pass
	# unobserved, so they run after the parallel run, by themselves.
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter '$(QUIET_E2E)'
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter KernelLimitTests
	$(MAKE) test-emulator

test-emulator:
	@if [ -d Tests/Emulator/tests ]; then $(PYTHON) -m pytest -q Tests/Emulator/tests; fi

clean:
	rm -rf .build dist

# The README's first command: ferry's main job on the local emulator, no AWS account needed.
.PHONY: demo
demo: build
	scripts/demo

# The Debian package: dist/ferry_<version>_amd64.deb (release build, Swift stdlib static), checked by lintian.
.PHONY: deb test-install
deb:
	SWIFT="$(SWIFT)" packaging/build-deb

# Installs the package into a fresh debootstrap'ed Debian 12 root, checks it, purges it. Needs root.
test-install: deb
	packaging/test-install

# The local AWS emulator in the foreground (S3 + Transfer Family connectors + an sshd partner); prints its
# endpoint, keys, buckets and connector ids as one JSON line. Ctrl-C stops it. See docs/emulator.md.
.PHONY: emulator
emulator:
	$(PYTHON) Tests/Emulator/run $(EMULATOR_ARGS)

# bench/watch: FerryWatch's FolderWatcher vs `inotifywait -m -r` on 100,000 files across 1,000 folders.
.PHONY: bench-watch
bench-watch:
	$(SWIFT) build $(RELEASE_FLAGS) --product ferry-watch-bench $(SWIFT_FLAGS)
	$(PYTHON) bench/watch/run.py --binary .build/release/ferry-watch-bench

# bench/poll: FolderWatcher's poll mode vs `fswatch -m poll_monitor` and `find -newer` on 100,000 files in 1,000
# folders: CPU and wall of a pass with nothing changed and of one after 100 files changed, and peak memory.
.PHONY: bench-poll
bench-poll:
	$(SWIFT) build $(RELEASE_FLAGS) --product ferry-poll-bench $(SWIFT_FLAGS)
	$(PYTHON) bench/poll/run.py --binary .build/release/ferry-poll-bench $(BENCH_ARGS)

# bench/upload: FerryAWS vs `aws s3 cp --recursive` and `rclone copy` (2,000 x 4 KiB and 1 GiB) to the emulator.
.PHONY: bench-upload
bench-upload:
	$(SWIFT) build $(RELEASE_FLAGS) --product ferry-upload-bench $(SWIFT_FLAGS)
	$(PYTHON) bench/upload/run.py --binary .build/release/ferry-upload-bench

# bench/outbound: 10,000 x 4 KiB dropped into a watched folder, sent by `ferry run`, vs the inotifywait +
# aws-cli script users write today. BENCH_ARGS passes options (e.g. --after-send delete --show-requests).
.PHONY: bench-outbound
bench-outbound:
	$(SWIFT) build $(RELEASE_FLAGS) --product ferry $(SWIFT_FLAGS)
	bench/outbound/run --ferry .build/release/ferry $(BENCH_ARGS)

# bench/connector: ferry at the connector's limit (per-file service time, MaxConcurrentConnections): wall
# against the ideal, ListFileTransferResults per file, peak queued transfers; the inotifywait + aws-cli
# script as the peer. BENCH_ARGS passes options (e.g. --files 2000 --service-ms 50 --connections 5).
.PHONY: bench-connector
bench-connector:
	$(SWIFT) build $(RELEASE_FLAGS) --product ferry $(SWIFT_FLAGS)
	bench/connector/run --ferry .build/release/ferry $(BENCH_ARGS)

# bench/journal: a synthetic journal of 1,000,000 finished rows: `ferry status`, `ferry history --since 1d`,
# one pruning pass (longest lock hold), and the pipeline's journal writes alone and beside status queries
# and pruning; the sqlite3 CLI is the peer. BENCH_ARGS passes options (e.g. --rows 200000 --keep DIR).
.PHONY: bench-journal
bench-journal:
	$(SWIFT) build $(RELEASE_FLAGS) --product ferry $(SWIFT_FLAGS)
	$(SWIFT) build $(RELEASE_FLAGS) --product ferry-journal-bench $(SWIFT_FLAGS)
	$(PYTHON) bench/journal/run.py --binary .build/release/ferry --writer .build/release/ferry-journal-bench $(BENCH_ARGS)

# The adversarial test (docs/chaos.md): a deployment's bad day against the real ferry and the emulator,
# checked by an oracle. `make chaos` plays the CI seeds; `make chaos SEEDS=20` plays 20 seeds from
# CHAOS_SEED_BASE (default: from the clock, printed); `make chaos CHAOS_SEED=1234` replays one seed.
# Needs root for the seeds that put state_dir on a tmpfs. Runs alone: it is timing-sensitive.
.PHONY: chaos
chaos:
	$(SWIFT) build $(SWIFT_FLAGS) -Xswiftc -warnings-as-errors
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests -Xswiftc -warnings-as-errors
	CHAOS_SEEDS="$(SEEDS)" CHAOS_SEED="$(CHAOS_SEED)" CHAOS_SEED_BASE="$(CHAOS_SEED_BASE)" \
		$(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter ChaosTests

# The soak, "a compressed month" (issue #16; docs/benchmarks.md, "make soak"): FILES small files in WAVES
# waves over DURATION seconds through the release binary and the emulator, 10 % of requests faulted, three
# reloads, two SIGKILLs; nothing lost, duplicates only as reported, RSS, open fds and journal size per wave.
# RETENTION (seconds) is the rules' retention, lowered below the 1h minimum by FERRY_TEST_MIN_RETENTION.
# `make test` plays the short version (1,200 files, 6 waves, 60 s, debug binary) in its end-to-end run.
FILES ?= 60000
WAVES ?= 20
DURATION ?= 900
RETENTION ?= 60
.PHONY: soak soak-short
soak:
	$(SWIFT) build $(RELEASE_FLAGS) --product ferry $(SWIFT_FLAGS)
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests -Xswiftc -warnings-as-errors
	FERRY_BINARY="$$(pwd)/.build/release/ferry" SOAK_FILES=$(FILES) SOAK_WAVES=$(WAVES) SOAK_DURATION=$(DURATION) \
		SOAK_RETENTION=$(RETENTION) SOAK_DRAIN_TIMEOUT=600 $(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter SoakTests

# The short soak alone, as CI plays it (debug binary, SoakPlan's defaults).
soak-short:
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests -Xswiftc -warnings-as-errors
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter SoakTests

# The inbound adversarial test (docs/chaos.md, "Inbound"): partners writing, rewriting and withdrawing
# files, ferry killed during downloads, download_to filled, temporary files removed, the service failing.
# `make chaos-inbound` plays the CI seeds; `SEEDS=20` plays 20 seeds from CHAOS_INBOUND_SEED_BASE;
# `CHAOS_INBOUND_SEED=1234` replays one. Needs root (download_to is a tmpfs it fills). Runs alone.
.PHONY: chaos-inbound
chaos-inbound:
	$(SWIFT) build $(SWIFT_FLAGS) -Xswiftc -warnings-as-errors
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests -Xswiftc -warnings-as-errors
	CHAOS_INBOUND_SEEDS="$(SEEDS)" CHAOS_INBOUND_SEED="$(CHAOS_INBOUND_SEED)" CHAOS_INBOUND_SEED_BASE="$(CHAOS_INBOUND_SEED_BASE)" \
		$(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter ChaosInboundTests
