#!/usr/bin/env bash
# The test command (README): install joulefarm with its test tools, then run every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet -e '.[dev]'
# Only the pure crate: the binding crate links against Python and is tested through pytest.
cargo test --quiet --manifest-path rust_core/Cargo.toml -p joulefarm-energy
python3 -m pytest -q
