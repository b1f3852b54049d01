#!/usr/bin/env bash
# e_akv in one minute, without an Azure account: a local Key Vault emulator holds the keys,
# and plain OpenSSL programs use them through the engine, and HAProxy (which reads keys only
# from files) through the provider and a key reference file. Nothing leaves this machine: the
# emulator listens on 127.0.0.1 only. Cleans up after itself.
#
#   ./demo.sh                 # builds (release) and runs
#   DEMO_PROFILE=debug ./demo.sh   # reuse a debug build (what the test command does)
set -euo pipefail
cd "$(dirname "$0")"

PROFILE="${DEMO_PROFILE:-release}"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# What the build and the demo need besides Rust (Debian package names).
need=()
for p in pkg-config libssl-dev openssl curl haproxy; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
    say "Installing ${need[*]} (Debian packages the build needs)"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    # haproxy would start its system service when installed: keep it from starting.
    added_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
    if [[ -n "$added_policy" ]]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

say "Building the engine, the provider and the Key Vault emulator ($PROFILE)"
profile_flag=()
[[ "$PROFILE" == "release" ]] && profile_flag=(--release)
# Two invocations: `--bin` would otherwise restrict the engine package to a binary it lacks.
cargo build "${profile_flag[@]}" --locked -p akv-engine -p akv-provider
cargo build "${profile_flag[@]}" --locked -p akv-tests --bin akv-emulator
target="$PWD/target/$PROFILE"

work=$(mktemp -d /tmp/e_akv-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

say "Starting a local Key Vault (the emulator) with an RSA and an EC key (and a certificate for the EC key)"
"$target/akv-emulator" --state "$work/vault" --key demo-rsa:rsa2048 --key demo-ec:p256 \
    --certificate demo-ec --ready-file "$work/ready.json" >"$work/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/ready.json" ]] && break; sleep 0.1; done
[[ -s "$work/ready.json" ]] || { echo "the emulator did not start:"; cat "$work/emulator.log"; exit 1; }
url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$work/ready.json")
echo "The vault answers at $url; its private keys stay inside it."

# Point OpenSSL at the engine, and the engine at the emulator (vault and token endpoint).
mkdir -p "$work/engines"
ln -s "$target/libe_akv.so" "$work/engines/e_akv.so"
export OPENSSL_ENGINES="$work/engines"
export AKV_ENDPOINT="$url" AKV_IMDS_ENDPOINT="$url" AKV_CA_FILE="$work/vault/ca.pem" AKV_CREDENTIAL=managed-identity
unset HTTPS_PROXY https_proxy OPENSSL_CONF
cd "$work"

say "1. The public key of vault key demo-rsa (fetched from the vault, computed nowhere else)"
run openssl pkey -engine e_akv -inform engine -in vault:demo:demo-rsa -pubout -out demo-rsa.pub.pem 2>/dev/null
cat demo-rsa.pub.pem

say "2. A signature made by the vault, verified by plain OpenSSL with only the public key"
echo "The private key never left the vault." > message.txt
run openssl dgst -sha256 -binary -out message.sha256 message.txt
run openssl pkeyutl -sign -engine e_akv -keyform engine -inkey vault:demo:demo-rsa \
    -in message.sha256 -out message.sig -pkeyopt digest:sha256 2>/dev/null
run openssl pkeyutl -verify -pubin -inkey demo-rsa.pub.pem -in message.sha256 -sigfile message.sig -pkeyopt digest:sha256

say "3. A self-signed certificate for the EC key demo-ec, signed by the vault"
run openssl req -new -x509 -engine e_akv -keyform engine -key vault:demo:demo-ec \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 1 -out demo-ec.crt 2>/dev/null
run openssl x509 -in demo-ec.crt -noout -subject -issuer
run openssl verify -check_ss_sig -CAfile demo-ec.crt demo-ec.crt

say "4. An HTTPS server whose key is in the vault: every handshake is signed remotely"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 48443)
openssl s_server -engine e_akv -keyform engine -key vault:demo:demo-ec -cert demo-ec.crt \
    -accept "127.0.0.1:$port" -www -naccept 2 >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
run curl -sS --cacert demo-ec.crt "https://localhost:$port/" -o page.html
grep -o 'Protocol  *: [^<]*\|Cipher  *: [^<]*' page.html | head -2 || true
echo "curl verified the server's certificate and the handshake completed with the vault's signature."

say "5. HAProxy, which reads keys only from files: a key file that only names the vault key"
mkdir -p "$work/providers"
ln -s "$target/libakv.so" "$work/providers/akv.so"
printf '%s\n' "openssl_conf = openssl_init" "[openssl_init]" "providers = provider_section" \
    "[provider_section]" "default = default_section" "akv = akv_section" \
    "[default_section]" "activate = 1" \
    "[akv_section]" "module = $work/providers/akv.so" "activate = 1" > akv-openssl.cnf
run env OPENSSL_CONF=akv-openssl.cnf openssl pkey -in vault:demo:demo-ec -out demo-ec.ref.pem
cat demo-ec.ref.pem
echo "The certificate the vault holds for demo-ec, written to a file:"
run env OPENSSL_CONF=akv-openssl.cnf openssl x509 -in vault:demo:demo-ec -out demo-ec.vault.crt
run openssl x509 -in demo-ec.vault.crt -noout -subject -ext subjectAltName
cat demo-ec.vault.crt demo-ec.ref.pem > haproxy.pem
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 48444)
printf '%s\n' "global" "    nbthread 2" "defaults" "    mode http" "    timeout connect 5s" \
    "    timeout client 5s" "    timeout server 5s" "frontend demo" \
    "    bind 127.0.0.1:$hport ssl crt $work/haproxy.pem" \
    "    http-request return status 200 content-type text/plain string \"hello from haproxy, whose key is in the vault\"" > haproxy.cfg
OPENSSL_CONF=akv-openssl.cnf haproxy -db -f haproxy.cfg >"$work/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && break; sleep 0.1; done
run curl -sS --cacert demo-ec.vault.crt "https://localhost:$hport/"; echo
echo "haproxy.pem holds the vault's certificate and the key reference above: no private key on disk."

say "What the vault saw"
curl -sS --cacert "$work/vault/ca.pem" "$url/_emulator/stats"; echo

say "Done. Everything was on 127.0.0.1; the temporary files are being removed."
