#!/usr/bin/env bash
# The install check of the test command: builds the Debian packages, installs them into the
# system, signs through the engine and through the provider against a local emulator using
# only the installed files (no OPENSSL_ENGINES, no provider path, no openssl.cnf but the
# packaged example), then removes them and checks that nothing is left. Needs root or sudo;
# everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
say() { printf '== %s\n' "$*"; }
fail() { printf 'check-package.sh: %s\n' "$*" >&2; exit 1; }

say "building the packages"
# A process substitution hides the builder's exit status: read its list from a file instead.
mkdir -p target
./scripts/build-deb.sh >target/debian-list.txt || fail "building the packages failed (see above)"
mapfile -t debs <target/debian-list.txt
((${#debs[@]} == 2)) || fail "build-deb.sh printed ${#debs[@]} package paths, not 2"
deb=${debs[0]} dbgdeb=${debs[1]}
for d in "$deb" "$dbgdeb"; do
    printf '%s: %s KiB\n' "$(basename "$d")" "$(( $(stat -c %s "$d") / 1024 ))"
done
dpkg-deb -c "$deb" | awk '{print "   ", $3, $6}'

if dpkg-query -W -f='${Status}' e-akv 2>/dev/null | grep -q "install ok installed"; then
    say "e-akv is installed already: it is replaced, and removed at the end"
fi
cargo build --locked -p akv-tests --bin akv-emulator
work=$(mktemp -d /tmp/e_akv-package.XXXXXX)
emulator=""
cleanup() {
    [[ -n $emulator ]] && kill "$emulator" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
    # Never leave the packages behind, whatever failed.
    $SUDO dpkg --purge e-akv-dbgsym e-akv >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "installing"
$SUDO dpkg -i "$deb" "$dbgdeb"
mapfile -t files < <(dpkg -L e-akv e-akv-dbgsym | while read -r f; do [[ -f $f || -L $f ]] && echo "$f"; done)
printf 'installed %d files\n' "${#files[@]}"

say "a local vault (the emulator) with an RSA and an EC key"
target/debug/akv-emulator --state "$work/vault" --key rsa2048:rsa2048 --key p256:p256 \
    --ready-file "$work/ready.json" >"$work/emulator.log" 2>&1 &
emulator=$!
for _ in $(seq 100); do [[ -s $work/ready.json ]] && break; sleep 0.1; done
[[ -s $work/ready.json ]] || fail "the emulator did not start: $(cat "$work/emulator.log")"
url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$work/ready.json")
# Only the emulator's address and trust: OpenSSL finds the engine and the provider itself.
unset OPENSSL_ENGINES OPENSSL_MODULES OPENSSL_CONF LD_LIBRARY_PATH HTTPS_PROXY https_proxy
export AKV_ENDPOINT="$url" AKV_IMDS_ENDPOINT="$url" AKV_CA_FILE="$work/vault/ca.pem" AKV_CREDENTIAL=managed-identity
cd "$work"
printf 'e_akv package check\n' > message.txt
openssl dgst -sha256 -binary -out message.sha256 message.txt

say "the engine, found by OpenSSL in its engines folder"
openssl engine -t e_akv | tee engine.txt
grep -q "\[ available \]" engine.txt || fail "openssl engine -t e_akv: not available"
openssl pkeyutl -sign -engine e_akv -keyform engine -inkey vault:myvault:rsa2048 \
    -in message.sha256 -out rsa.sig -pkeyopt digest:sha256
openssl pkeyutl -verify -pubin -inkey vault/public/rsa2048.pem -in message.sha256 -sigfile rsa.sig \
    -pkeyopt digest:sha256

say "the provider, found by OpenSSL in its modules folder"
openssl list -providers -provider akv | tee providers.txt
grep -q "status: active" providers.txt && grep -qi "akv" providers.txt || fail "the akv provider is not active"
openssl pkeyutl -sign -provider default -provider akv -inkey vault:myvault:p256 -in message.sha256 -out ec.sig
openssl pkeyutl -verify -pubin -inkey vault/public/p256.pem -in message.sha256 -sigfile ec.sig

say "the packaged example openssl.cnf activates the provider for any program"
OPENSSL_CONF=/usr/share/doc/e-akv/examples/akv-openssl.cnf \
    openssl pkey -in vault:myvault:p256 -pubout -out p256.pub.pem
cmp p256.pub.pem vault/public/p256.pem || fail "the example configuration gave another public key"

say "the debug symbols are found by build id"
for lib in "$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')/e_akv.so" \
           "$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')/akv.so"; do
    readelf -S "$lib" | grep -q '\.debug_info' && fail "$lib is not stripped"
    id=$(readelf -n "$lib" | sed -n 's/^ *Build ID: \([0-9a-f]*\)$/\1/p')
    debug=/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
    readelf -S "$debug" | grep -q '\.debug_info' || fail "no debug information in $debug for $lib"
    printf '%s: %s KiB, debug information in %s\n' "$lib" "$(( $(stat -c %s "$lib") / 1024 ))" "$debug"
done

say "removing"
cd - >/dev/null
$SUDO dpkg --purge e-akv-dbgsym e-akv
left=0
for f in "${files[@]}"; do
    if [[ -e $f || -L $f ]]; then echo "left behind: $f" >&2; left=1; fi
done
for d in /usr/share/doc/e-akv /usr/share/doc/e-akv-dbgsym; do
    if [[ -e $d ]]; then echo "left behind: $d" >&2; left=1; fi
done
((left == 0)) || fail "files were left behind"
if openssl engine -t e_akv >/dev/null 2>&1; then fail "OpenSSL still finds the engine"; fi
printf 'removed: none of the %d files is left, OpenSSL no longer finds the engine\n' "${#files[@]}"
say "package check passed"
