# ferry — build, test and run. `make deps` once on a fresh Debian 12 machine with Swift, then `make test`.
SHELL := /bin/bash
SWIFT ?= swift
SWIFT_FLAGS ?=
PYTHON ?= python3

APT_PACKAGES := pkg-config libcurl4-openssl-dev libssl-dev libyaml-dev libsqlite3-dev sqlite3 \
	openssh-server openssh-client inotify-tools rclone procps
PIP_PACKAGES := moto[server]==5.2.1 boto3 awscli pytest werkzeug

.PHONY: deps build release test test-swift test-emulator clean

deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES)
	$(PYTHON) -m pip install -q $(PIP_PACKAGES)

build:
	$(SWIFT) build $(SWIFT_FLAGS) -Xswiftc -warnings-as-errors

release:
	$(SWIFT) build -c release $(SWIFT_FLAGS)

# The whole suite: Swift tests (unit + end-to-end against the emulator) and the emulator's own boto3 suite.
test: build
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests -Xswiftc -warnings-as-errors
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build
	$(MAKE) test-emulator

test-emulator:
	@if [ -d Tests/Emulator/tests ]; then $(PYTHON) -m pytest -q Tests/Emulator/tests; fi

clean:
	rm -rf .build dist

# The README's first command: ferry's main job on the local emulator, no AWS account needed.
.PHONY: demo
demo: build
	.build/debug/ferry version

# bench/watch: FerryWatch's FolderWatcher vs `inotifywait -m -r` on 100,000 files across 1,000 folders.
.PHONY: bench-watch
bench-watch:
	$(SWIFT) build -c release --product ferry-watch-bench $(SWIFT_FLAGS)
	$(PYTHON) bench/watch/run.py --binary .build/release/ferry-watch-bench
