#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ from the Key Vault fixtures (akv-proto/tests/fixtures)
and a few hand-written inputs. Run from the repository root; it only adds files."""
import base64, hashlib, json, os, glob

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fixtures = os.path.join(root, "akv-proto/tests/fixtures")
corpus = os.path.join(root, "fuzz/corpus")

def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for record_file in glob.glob(os.path.join(fixtures, "keyvault/recorded/*/*.json")):
    for record in json.load(open(record_file))["networkCallRecords"]:
        body = record["Response"]["BODY"]
        path = record["Url"].split("?")[0]
        status = int(record["Response"]["STATUS_CODE"])
        if status >= 400:
            seed("error_body", bytes([status - 400]) + body.encode())
        elif path.endswith(("/sign", "/encrypt", "/decrypt", "/wrapKey", "/unwrapKey", "/verify")):
            seed("op_result", body)
            if path.endswith("/sign") and "ES256" in path:
                raw = base64.urlsafe_b64decode(json.loads(body)["value"] + "==")
                seed("ecdsa", bytes([0]) + raw)
        else:
            seed("key_bundle", body)
        seed("key_id", record["Url"].split("?")[0])
for example in glob.glob(os.path.join(fixtures, "keyvault/spec-examples/*.json")):
    body = json.dumps(json.load(open(example))["responses"]["200"]["body"])
    seed("key_bundle" if "GetKey" in example else "op_result", body)
for sample in json.load(open(os.path.join(fixtures, "errors/error-bodies.json")))["samples"]:
    body = sample.get("body") or sample.get("body_reconstructed")
    if body is not None:
        seed("error_body", bytes([sample["status"] - 400]) + body.encode())
for sample in json.load(open(os.path.join(fixtures, "challenges/www-authenticate-samples.json")))["samples"]:
    if "header" in sample:
        seed("www_authenticate", sample["header"])
for sample in json.load(open(os.path.join(fixtures, "identity/token-response-samples.json")))["samples"]:
    for key in ("response", "stdout"):
        if key in sample:
            seed("token_response", json.dumps(sample[key]))
entra = json.load(open(os.path.join(fixtures, "identity/entra-v2-token-client-secret.cpp-recording.json")))
for record in entra["networkCallRecords"]:
    seed("token_response", record["Response"]["BODY"])

for s in ["vault:myvault:mykey", "managedHsm:myhsm:mykey:0123456789abcdef0123456789abcdef",
          "engine:e_akv:VAULT:MyVault:k", "https://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef",
          "https://127.0.0.1:8443/keys/k", "http://127.0.0.1:8443/keys/k/", "https://a.allowed.example/keys/k",
          "https://[::1]:8443/keys/k", "vault:evil.com/x?:k", "vault:a@b:k", "managedHsm:host#:k",
          "https://myvault.vault.azure.net.evil.com/keys/k", "https://user@myvault.vault.azure.net/keys/k"]:
    seed("key_id", s)
for s in ['Bearer resource="https://vault.azure.net", authorization="https://login.microsoftonline.com/t"',
          'PoP nonce="x", Bearer scope="https://managedhsm.azure.net/.default"',
          'Basic realm=/var/opt/azcmagent/tokens/abc.key', 'Basic realm="/var/opt/azcmagent/tokens/../x.key"']:
    seed("www_authenticate", s)
for s in ["3\n\n", "1.5\n250\n", "Wed, 21 Oct 2015 07:28:10 GMT\n\nWed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999\n\n"]:
    seed("retry_after", s)
seed("token_response", '{"accessToken":"t","expires_on":1700003600,"tokenType":"Bearer"}')
seed("token_response", '{"access_token":"a","expires_in":"3599","expires_on":"0"}')
for curve in range(4):
    width = [32, 48, 66, 32][curve]
    seed("ecdsa", bytes([curve]) + bytes([0x80] + [1] * (2 * width - 1)))
    seed("ecdsa", bytes([curve, 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]))
for i in range(8):
    seed("driver", bytes([i, 7, 1, 1, 8] * 6))
    seed("token_fetch", bytes([i, 1, 1, 0, 8] * 6))
seed("driver", bytes([2, 3, 5, 1, 2, 1, 0, 1, 1, 4, 3, 0, 0, 1, 8]))
print("seeds written under", corpus)

# Certificate bundles: the recorded one and small variants around the DER check.
for cert_file in glob.glob(os.path.join(fixtures, "certificates/*.json")):
    body = open(cert_file, "rb").read()
    seed("certificate_bundle", body)
    bundle = json.loads(body)
    seed("certificate_bundle", json.dumps({"id": bundle["id"], "cer": bundle["cer"]}))
    seed("certificate_bundle", json.dumps({"id": bundle["id"], "cer": bundle["cer"][:40]}))
seed("certificate_bundle", '{"id":"i","cer":"MAMCAQE=","attributes":{"enabled":false}}')
seed("certificate_bundle", '{"id":"i","cer":"AgEB"}')
