#!/usr/bin/env bash
# Builds a shared OpenSSL (libraries, `openssl` CLI, headers) from the source tree that the
# `openssl-src` crate carries on crates.io, and installs it into a cache folder reused by
# later runs. The tests run the provider against it (OpenSSL 4 has no engines), pointing only
# the programs under test at it: never export LD_LIBRARY_PATH to a whole run.
#
#   scripts/build-openssl.sh 4.0.3       # prints the install folder (DIR/bin/openssl, DIR/lib, DIR/include)
#   scripts/build-openssl.sh 3.5.5       # the 3.5 LTS (engines still exist there)
#
# The cache is $AKV_OPENSSL_CACHE (default ~/.cache/akv-openssl)/VERSION; a complete build
# there is used as it is. About five minutes on two cores the first time.
set -euo pipefail

version=${1:?usage: build-openssl.sh VERSION (4.0.3 or 3.5.5)}
# openssl-src crate version for each OpenSSL version we build.
case "$version" in
    4.0.3) crate=400.0.2+4.0.3 ;;
    3.5.5) crate=300.5.5+3.5.5 ;;
    *) echo "build-openssl.sh: no openssl-src crate known for OpenSSL $version" >&2; exit 2 ;;
esac

cache=${AKV_OPENSSL_CACHE:-$HOME/.cache/akv-openssl}
prefix=$cache/$version
if [[ -x $prefix/bin/openssl && -f $prefix/.complete ]]; then
    echo "$prefix"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/akv-openssl-$version.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/build.log
fail() {
    echo "build-openssl.sh: $1 (last lines of $log:)" >&2
    tail -30 "$log" >&2
    exit 1
}

echo "== building OpenSSL $version into $prefix (a few minutes, once)" >&2
curl -fsSL --retry 3 -o "$work/src.crate" \
    "https://static.crates.io/crates/openssl-src/openssl-src-$crate.crate" \
    || { echo "build-openssl.sh: cannot download openssl-src $crate from crates.io" >&2; exit 1; }
tar -xzf "$work/src.crate" -C "$work"
src=$work/openssl-src-$crate/openssl

# The crate trims the tree for its own static build. A shared build also needs:
# - util/mkdef.pl, which writes the linker version scripts (libcrypto.ld, libssl.ld). Ours
#   writes one version node per version named in the .num files, each inheriting the one
#   before, as the real one does: symbols without their OPENSSL_x.y.z version would not
#   stand in for a system library of the same major version.
# - apps/openssl.cnf and apps/ct_log_list.cnf, which `make install` copies (empty ones do).
cat > "$src/util/mkdef.pl" <<'PERL'
#!/usr/bin/env perl
# Stand-in for OpenSSL's util/mkdef.pl (absent from the openssl-src crate): writes a GNU ld
# version script from an ordinals file (.num) for Linux shared libraries.
use strict;
use warnings;
my ($ordinals, $type) = ('', 'lib');
while (my $arg = shift @ARGV) {
    if ($arg eq '--ordinals') { $ordinals = shift @ARGV; }
    elsif ($arg eq '--type') { $type = shift @ARGV; }
    elsif ($arg =~ /^--(version|bits|name|OS)$/) { shift @ARGV; }
}
open(my $fh, '<', $ordinals) or die "cannot read $ordinals: $!";
my %by_version;
while (my $line = <$fh>) {
    next if $line =~ /^\s*(#|$)/;
    my ($symbol, undef, $ver, $info) = split /\s+/, $line;
    my ($exist, $platforms) = split /:/, $info;
    next unless $exist eq 'EXIST';
    # Only what exists on Unix: skip VMS- and Windows-only symbols.
    next if $platforms =~ /(^|,)(VMS|_WIN32|WIN32)(,|$)/;
    push @{$by_version{$ver}}, $symbol;
}
my @versions = sort {
    my @x = split /_/, $a; my @y = split /_/, $b;
    $x[0] <=> $y[0] || $x[1] <=> $y[1] || $x[2] <=> $y[2]
} keys %by_version;
if ($type ne 'lib') {
    # A loadable module exports only its entry point.
    print "{\n    global:\n        OSSL_provider_init;\n    local: *;\n};\n";
    exit 0;
}
my $previous;
foreach my $i (0 .. $#versions) {
    my $name = 'OPENSSL_' . join('.', split(/_/, $versions[$i]));
    print "$name {\n    global:\n";
    print "        $_;\n" foreach sort @{$by_version{$versions[$i]}};
    print "    local: *;\n" if $i == 0;
    print defined $previous ? "} $previous;\n\n" : "};\n\n";
    $previous = $name;
}
PERL
: > "$src/apps/openssl.cnf"
: > "$src/apps/ct_log_list.cnf"

cd "$src"
jobs=$(nproc)
./Configure --prefix="$prefix" --openssldir="$prefix/ssl" --libdir=lib \
    shared no-tests no-legacy no-docs >"$log" 2>&1 || fail "Configure failed"
make -j"$jobs" >>"$log" 2>&1 || fail "make failed"
rm -rf "$prefix"
make install_sw install_ssldirs >>"$log" 2>&1 || fail "make install failed"
# Check the result before calling it complete: the CLI runs against its own libraries.
got=$(LD_LIBRARY_PATH="$prefix/lib" "$prefix/bin/openssl" version) || fail "the built openssl does not run"
[[ $got == "OpenSSL $version "* ]] || fail "the built openssl says '$got', not $version"
touch "$prefix/.complete"
echo "== $got in $prefix" >&2
echo "$prefix"
