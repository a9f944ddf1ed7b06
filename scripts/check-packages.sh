#!/usr/bin/env bash
# The three library crates package, and build on their own from their tarballs, as published.
#
# Why not plain `cargo package`: its verification builds each crate against the others' new
# tarballs through a registry under target/package, and cargo fingerprints registry crates by
# name and version, never by content. A second run after a library change reuses the copy it
# unpacked, and the rlib it built, on the first run, and fails against the old source. So the
# tarballs are made without that step, unpacked here, and built as path crates (fingerprinted
# by content) in one scratch workspace that patches crates.io with them, on the shared target
# directory, so that no dependency is built twice.
set -euo pipefail
cd "$(dirname "$0")/.."
crates=(mailroom-lambda mailroom-ops mailroom-local)
cargo package --quiet --allow-dirty --no-verify "${crates[@]/#/-p}"
check=target/package-check
rm -rf "$check"
mkdir -p "$check"
for c in "${crates[@]}"; do
  tar xzf "target/package/$c-0.1.0.crate" -C "$check"
  mv "$check/$c-0.1.0" "$check/$c"
done
cat >"$check/Cargo.toml" <<'TOML'
[workspace]
resolver = "3"
members = ["mailroom-lambda", "mailroom-ops", "mailroom-local"]

[patch.crates-io]
mailroom-lambda = { path = "mailroom-lambda" }
mailroom-ops = { path = "mailroom-ops" }
mailroom-local = { path = "mailroom-local" }
TOML
cp Cargo.lock "$check/Cargo.lock"
CARGO_TARGET_DIR="$PWD/target" cargo build --quiet --manifest-path "$check/Cargo.toml" --workspace --lib
echo "check-packages: ${crates[*]} package and build from their tarballs"
