#!/usr/bin/env bash
# The test command (README): install joulefarm with its test tools, check the code (lint, types,
# formatting, the layout's boundaries), then run every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet -e '.[dev]'

echo "== checks: ruff, mypy, import boundaries, rustfmt, clippy, the extension's stub"
python3 -m ruff check .
python3 -m mypy
# The agent and the library it imports run on a device's Python 3.10 (stock JetPack 6).
python3 -m mypy --python-version 3.10 agent joulefarm
lint-imports --no-logo
cargo fmt --manifest-path rust_core/Cargo.toml --all --check
cargo clippy --quiet --manifest-path rust_core/Cargo.toml --workspace --all-targets -- -D warnings
python3 -m mypy.stubtest joulefarm._core

echo "== tests"
# Only the pure crate: the binding crate links against Python and is tested through pytest.
cargo test --quiet --manifest-path rust_core/Cargo.toml -p joulefarm-energy
# Without the cache plugin: CI runs from a clean clone anyway, and the code paths that cache
# (downloaded models) must work without it.
python3 -m pytest -q -p no:cacheprovider
