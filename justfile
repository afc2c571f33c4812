# Rampart's everyday commands. `just --list` shows them.

# Run a gateway and two workers on this machine (Ctrl-C stops them).
up *ARGS:
    cargo run --release -p rampart -- up {{ARGS}}

# Run the whole test suite.
test:
    cargo test --workspace

# Check formatting and lints as CI does.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Run the benchmarks.
bench:
    cargo bench --workspace

# Everything CI runs.
ci:
    bash .ci/run

# The million-job demo beside the article's Go program (needs go).
million:
    bench/million.sh

# What a running process is doing: runtime figures, a CPU profile (top functions with go
# installed, and a flame graph), memory and counters. ADMIN is its admin listener.
profile ADMIN="127.0.0.1:9901" SECONDS="10":
    bench/profile.sh {{ADMIN}} {{SECONDS}}

# Load-test a URL with rampart-load, for example: just load -c 64 -d 10s http://127.0.0.1:8080/api/process?data=hi
load *ARGS:
    cargo run --release -q -p rampart-loadgen -- {{ARGS}}
