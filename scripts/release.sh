#!/usr/bin/env bash
# Builds the release tarball operators deploy from (docs/deploy.md):
#
#   dist/diego-rs-<version>-x86_64-linux-musl.tar.gz
#     diego-rs-<version>-x86_64-linux-musl/
#       bin/      bbs auctioneer cell-rep router diego diego-demo-app benchmark-bbs (static, musl)
#       systemd/  bbs.service auctioneer.service cell-rep.service router.service
#       config/   bbs.toml auctioneer.toml cell-rep.toml router.toml (commented examples)
#       docs/     deploy.md and the other top-level docs
#       README.md VERSION SHA256SUMS
#
# It installs what the build lacks: the Rust target x86_64-unknown-linux-musl (rustup) and musl-gcc
# (`apt-get install musl-tools`, as root or through sudo), which compiles the C parts (ring, the
# bundled SQLite) for musl. Then it checks every binary is statically linked, checks SHA256SUMS,
# and runs `bin/bbs --help` from a fresh unpack of the tarball.
#
#   DIEGO_RELEASE_VERSION  the version in the name (default: [workspace.package] version of Cargo.toml)
#   CARGO_BUILD_JOBS       as cargo reads it (the build is long on a small machine)
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
bins=(bbs auctioneer cell-rep router diego diego-demo-app benchmark-bbs)
version="${DIEGO_RELEASE_VERSION:-$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)}"
if [ -z "$version" ]; then
  echo "release: no version in Cargo.toml's [workspace.package]; set DIEGO_RELEASE_VERSION" >&2
  exit 1
fi
name="diego-rs-${version}-x86_64-linux-musl"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "release: '$*' needs root (or sudo)" >&2
    return 1
  fi
}

# 1. What the build needs.
if ! rustup target list --installed | grep -qx "$target"; then
  echo "release: adding the Rust target $target"
  rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null; then
  echo "release: installing musl-tools (musl-gcc)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools
fi
# The cc crate builds ring's and SQLite's C with this; the Rust linker needs nothing more (the
# musl target links its own C runtime).
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"

# 2. The binaries.
start=$(date +%s)
bin_flags=()
for bin in "${bins[@]}"; do bin_flags+=(--bin "$bin"); done
cargo build --locked --release --target "$target" -p bbs -p auctioneer -p cell-rep -p router -p cli -p loadtest "${bin_flags[@]}"
built=$(($(date +%s) - start))
echo "release: cargo build took ${built}s"

# 3. The tree.
stage="dist/stage"
root="$stage/$name"
rm -rf "$stage"
mkdir -p "$root/bin" "$root/systemd" "$root/config" "$root/docs"
for bin in "${bins[@]}"; do
  install -m 0755 "target/$target/release/$bin" "$root/bin/$bin"
done
install -m 0644 deploy/systemd/*.service "$root/systemd/"
install -m 0644 deploy/config/*.toml "$root/config/"
install -m 0644 docs/*.md "$root/docs/"
install -m 0644 README.md "$root/README.md"
{
  echo "diego-rs $version x86_64-linux-musl"
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  rustc --version
} >"$root/VERSION"

# 4. Static, every one.
for bin in "${bins[@]}"; do
  described=$(file -b "$root/bin/$bin")
  case "$described" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "release: bin/$bin is not static: $described" >&2; exit 1 ;;
  esac
  if ldd "$root/bin/$bin" >/dev/null 2>&1 && ! ldd "$root/bin/$bin" 2>&1 | grep -q "statically linked"; then
    echo "release: ldd lists libraries for bin/$bin:" >&2
    ldd "$root/bin/$bin" >&2
    exit 1
  fi
done

# 5. Checksums of every file, then the tarball (owner root, stable order and times).
(cd "$root" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
mkdir -p dist
tarball="dist/$name.tar.gz"
mtime="@$(git log -1 --format=%ct 2>/dev/null || date +%s)"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -C "$stage" -czf "$tarball" "$name"
rm -rf "$stage"

# 6. What an operator does first: unpack, verify, run.
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
tar -xzf "$tarball" -C "$check"
(cd "$check/$name" && sha256sum --quiet -c SHA256SUMS)
if ! "$check/$name/bin/bbs" --help >"$check/help.txt" 2>&1 || ! grep -q -- "--config" "$check/help.txt"; then
  echo "release: bin/bbs --help failed from the unpacked tarball:" >&2
  cat "$check/help.txt" >&2
  exit 1
fi

size=$(du -h "$tarball" | cut -f1)
echo "release: $tarball ($size, $(stat -c %s "$tarball") bytes; build ${built}s)"
for bin in "${bins[@]}"; do
  printf '  bin/%-15s %5s  %s\n' "$bin" "$(du -h "$check/$name/bin/$bin" | cut -f1)" \
    "$(file -b "$check/$name/bin/$bin" | grep -o 'static[a-z-]* linked')"
done
