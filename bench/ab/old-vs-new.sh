#!/usr/bin/env bash
# LD-NR before issue 14 against a later commit, paired in one process (bench/ab/old_vs_new.rs).
#
#   bench/ab/old-vs-new.sh [sections] [--rounds N] [--phase-ms N]
#   OLD=7f18940 NEW=HEAD AB_DIR=/tmp/ldnr-ab-old-new   (the defaults)
#   AB_MAIN=write_path.rs   runs another program of this folder instead of old_vs_new.rs
#
# Both commits' `ldnr` and `ldnr-hashmap` are copied (git archive) into $AB_DIR, renamed
# ldnr_old/ldnr_new and ldnr_hashmap_old/ldnr_hashmap_new, and used as path dependencies
# of a scratch crate that runs old_vs_new.rs (with harness.rs, the paired rounds the
# programs share). Nothing in the workspace changes; no network (read_floor.rs excepted:
# it needs libc, see below).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
old=${OLD:-7f18940}
new=${NEW:-HEAD}
dir=${AB_DIR:-/tmp/ldnr-ab-old-new}
rm -rf "$dir"
mkdir -p "$dir/ab/src"
for v in old new; do
  rev=$([ "$v" = old ] && echo "$old" || echo "$new")
  mkdir -p "$dir/$v"
  git -C "$repo" archive "$rev" ldnr examples/hashmap | tar -x -C "$dir/$v"
  git -C "$repo" rev-parse "$rev" > "$dir/$v/COMMIT"
  rm -rf "$dir/$v/ldnr/tests" "$dir/$v/examples/hashmap/tests"
  cat > "$dir/$v/ldnr/Cargo.toml" <<TOML
[package]
name = "ldnr_$v"
version = "0.1.0"
edition = "2021"
[features]
default = ["std"]
std = ["dep:libc"]
# ldnr's membarrier (rwlock R5, since 5dfe8e8); unused by the commits before it.
[target.'cfg(target_os = "linux")'.dependencies]
libc = { version = "0.2", default-features = false, optional = true }
TOML
  cat > "$dir/$v/examples/hashmap/Cargo.toml" <<TOML
[package]
name = "ldnr_hashmap_$v"
version = "0.1.0"
edition = "2021"
[dependencies]
ldnr = { package = "ldnr_$v", path = "../../ldnr" }
TOML
done
cp "$repo/bench/ab/${AB_MAIN:-old_vs_new.rs}" "$dir/ab/src/main.rs"
cp "$repo/bench/ab/harness.rs" "$dir/ab/src/harness.rs"
cat > "$dir/ab/Cargo.toml" <<'TOML'
[package]
name = "ldnr-ab"
version = "0.1.0"
edition = "2021"
[dependencies]
ldnr_old = { path = "../old/ldnr" }
ldnr_new = { path = "../new/ldnr" }
ldnr_hashmap_old = { path = "../old/examples/hashmap" }
ldnr_hashmap_new = { path = "../new/examples/hashmap" }
# As the workspace's release profile.
[profile.release]
debug = "line-tables-only"
[workspace]
TOML
# libc is the one crate a program here takes from the registry (the workspace's build
# has it cached: `ldnr` and `ldnr-affinity` use it): read_floor.rs calls membarrier
# through it, and so does `ldnr` since 5dfe8e8.
if [ "${AB_MAIN:-}" = read_floor.rs ]; then
  sed -i 's/^\[dependencies\]$/[dependencies]\nlibc = "0.2.155"/' "$dir/ab/Cargo.toml"
fi
cd "$dir/ab"
CARGO_TARGET_DIR="$dir/target" cargo build --release --quiet 2>/dev/null ||
  CARGO_TARGET_DIR="$dir/target" cargo build --release
uptime
"$dir/target/release/ldnr-ab" "$@"
uptime
