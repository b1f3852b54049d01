#!/usr/bin/env bash
# Builds the Debian packages: `e-akv` (the engine as e_akv.so where `openssl version -e`
# looks, the provider as akv.so where `openssl version -m` looks, both stripped; the README
# and an example openssl.cnf under /usr/share/doc/e-akv) and `e-akv-dbgsym` (their debug
# information, found by build id). Needs dpkg-dev and binutils (the test command installs
# them). Prints the two package paths.
#
#   ./scripts/build-deb.sh                  # into target/debian/
#   sudo apt install ./target/debian/e-akv_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p akv-engine -p akv-provider >&2

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' akv-engine/Cargo.toml | head -1)
revision=1
debversion="$version-$revision"
arch=$(dpkg --print-architecture)
engines=$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')
modules=$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')
[[ -n $engines && -n $modules ]] || { echo "build-deb.sh: openssl version -e/-m name no folders" >&2; exit 1; }

out=target/debian
stage=$out/stage
rm -rf "$stage"
pkg=$stage/e-akv
dbg=$stage/e-akv-dbgsym
doc=$pkg/usr/share/doc/e-akv
mkdir -p "$pkg/DEBIAN" "$pkg$engines" "$pkg$modules" "$doc/examples" "$dbg/DEBIAN"

# Each library: debug information split off into the build-id path, the rest stripped.
build_ids=()
ship() { # ship BUILT INSTALLED
    local built=$1 installed=$2
    install -m 0644 "$built" "$installed"
    local id
    id=$(readelf -n "$installed" | sed -n 's/^ *Build ID: \([0-9a-f]*\)$/\1/p')
    [[ -n $id ]] || { echo "build-deb.sh: $built has no build id" >&2; exit 1; }
    local debug=$dbg/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
    mkdir -p "$(dirname "$debug")"
    objcopy --only-keep-debug --compress-debug-sections "$installed" "$debug"
    chmod 0644 "$debug"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$installed"
    objcopy --add-gnu-debuglink="$debug" "$installed"
    build_ids+=("$id")
}
ship target/release/libe_akv.so "$pkg$engines/e_akv.so"
ship target/release/libakv.so "$pkg$modules/akv.so"

# Documentation, an example openssl.cnf fragment, the copyright and the changelog.
gzip -9n -c README.md > "$doc/README.md.gz"
cat > "$doc/examples/akv-openssl.cnf" <<EOF
# Activates the akv provider (after OpenSSL's default one) for every program that reads
# this file: point OPENSSL_CONF at it, or copy the sections into /etc/ssl/openssl.cnf.
# Then vault:NAME:KEY works wherever OpenSSL takes a key, and key reference files work as
# key files. The e_akv engine (OpenSSL 3) needs no configuration: -engine e_akv.
openssl_conf = openssl_init

[openssl_init]
providers = provider_section

[provider_section]
default = default_section
akv = akv_section

[default_section]
activate = 1

[akv_section]
module = $modules/akv.so
activate = 1
# Settings (see README.md.gz, "Settings"), for example:
# CREDENTIAL = managed-identity
# LOG_LEVEL = error
EOF
cat > "$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: e_akv
Comment: An OpenSSL engine and provider for RSA and EC keys in Azure Key Vault and
 Azure Managed HSM. Built from Rust sources with their crates.io dependencies, which are
 linked in statically; each keeps its own licence (MIT, Apache-2.0, ISC or BSD-3-Clause).

Files: *
Copyright: the e_akv authors
License: MIT or Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0. The MIT licence: Permission is hereby granted, free
 of charge, to any person obtaining a copy of this software and associated documentation
 files (the "Software"), to deal in the Software without restriction, including without
 limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or
 sell copies of the Software, and to permit persons to whom the Software is furnished to do
 so, subject to the following conditions: The above copyright notice and this permission
 notice shall be included in all copies or substantial portions of the Software. THE
 SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
EOF
printf 'e-akv (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- e_akv developers <e-akv@localhost>  %s\n' \
    "$debversion" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(date -R)" \
    | gzip -9n > "$doc/changelog.Debian.gz"
mkdir -p "$dbg/usr/share/doc"
ln -s e-akv "$dbg/usr/share/doc/e-akv-dbgsym"

# Dependencies as the libraries need them (libc6, libgcc-s1, libssl3 for the engine).
# dpkg-shlibdeps reads a debian/control; give it a minimal one in a scratch folder.
scratch=$out/shlibdeps
rm -rf "$scratch"
mkdir -p "$scratch/debian"
printf 'Source: e-akv\n\nPackage: e-akv\nArchitecture: any\n' > "$scratch/debian/control"
depends=$(cd "$scratch" && dpkg-shlibdeps -O "$OLDPWD/$pkg$engines/e_akv.so" "$OLDPWD/$pkg$modules/akv.so" 2>/dev/null \
    | sed -n 's/^shlibs:Depends=//p')
[[ -n $depends ]] || { echo "build-deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
rm -rf "$scratch"

installed_size() { du -sk --exclude=DEBIAN "$1" | cut -f1; }
cat > "$pkg/DEBIAN/control" <<EOF
Package: e-akv
Version: $debversion
Architecture: $arch
Maintainer: e_akv developers <e-akv@localhost>
Installed-Size: $(installed_size "$pkg")
Depends: $depends
Section: libs
Priority: optional
Description: OpenSSL engine and provider for keys in Azure Key Vault and Managed HSM
 Lets programs linked to OpenSSL (the openssl CLI, nginx, HAProxy, Apache, curl,
 stunnel, Python, code-signing tools) use RSA and EC private keys that stay in Azure
 Key Vault or Azure Managed HSM: every private-key operation is a call to the vault.
 .
 The engine (e_akv, OpenSSL 3) is installed where OpenSSL finds engines; the provider
 (akv, OpenSSL 3 and 4) where it finds modules: openssl engine -t e_akv and
 openssl list -providers -provider akv work without further setup.
EOF
cat > "$dbg/DEBIAN/control" <<EOF
Package: e-akv-dbgsym
Version: $debversion
Architecture: $arch
Maintainer: e_akv developers <e-akv@localhost>
Installed-Size: $(installed_size "$dbg")
Depends: e-akv (= $debversion)
Section: debug
Priority: optional
Auto-Built-Package: debug-symbols
Build-Ids: ${build_ids[*]}
Description: debug symbols for e-akv
 The debug information of the e_akv engine and the akv provider, found by gdb and other
 debuggers through the libraries' build ids.
EOF
# md5sums, as dpkg --verify uses them.
for p in "$pkg" "$dbg"; do
    (cd "$p" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
done

deb=$out/e-akv_${debversion}_$arch.deb
dbgdeb=$out/e-akv-dbgsym_${debversion}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
dpkg-deb --root-owner-group -Zxz --build "$dbg" "$dbgdeb" >&2
echo "$deb"
echo "$dbgdeb"
