//! The emulator's keys: generated or loaded, kept in a state folder across restarts, with
//! real cryptography for every Key Vault operation (openssl, so the results are the real
//! thing and independent of the code under test).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use akv_proto::{Curve, b64};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::md::{Md, MdRef};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::RsaPssSaltlen;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What kind of key to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA of this many bits.
    Rsa(u32),
    /// EC on this curve.
    Ec(Curve),
}

impl FromStr for KeySpec {
    type Err = String;

    /// `rsa2048`, `rsa3072`, `rsa4096`, `p256`, `p384`, `p521`, `p256k` (also `ec-p256`...).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase().replace(['-', '_'], "");
        let spec = match s.as_str() {
            "rsa" | "rsa2048" => KeySpec::Rsa(2048),
            "rsa3072" => KeySpec::Rsa(3072),
            "rsa4096" => KeySpec::Rsa(4096),
            "p256" | "ecp256" | "ec" => KeySpec::Ec(Curve::P256),
            "p384" | "ecp384" => KeySpec::Ec(Curve::P384),
            "p521" | "ecp521" => KeySpec::Ec(Curve::P521),
            "p256k" | "ecp256k" | "secp256k1" => KeySpec::Ec(Curve::P256K),
            _ => {
                return Err(format!(
                    "unknown key spec {s:?}: use rsa2048, rsa3072, rsa4096, p256, p384, p521 or p256k"
                ));
            }
        };
        Ok(spec)
    }
}

fn curve_nid(curve: Curve) -> Nid {
    match curve {
        Curve::P256 => Nid::X9_62_PRIME256V1,
        Curve::P384 => Nid::SECP384R1,
        Curve::P521 => Nid::SECP521R1,
        Curve::P256K => Nid::SECP256K1,
    }
}

fn nid_curve(nid: Nid) -> Option<Curve> {
    Curve::ALL.into_iter().find(|c| curve_nid(*c) == nid)
}

/// One version of a key.
pub struct KeyVersionData {
    /// 32 hex characters.
    pub version: String,
    /// The private key.
    pub pkey: PKey<Private>,
    /// Creation time (Unix seconds).
    pub created: i64,
}

#[derive(Serialize, Deserialize, Clone)]
struct Meta {
    enabled: bool,
    key_ops: Vec<String>,
    hsm: bool,
    versions: Vec<(String, i64)>,
}

/// A named key with its versions (latest last).
pub struct StoredKey {
    /// Key name.
    pub name: String,
    /// Versions, oldest first.
    pub versions: Vec<KeyVersionData>,
    /// `attributes.enabled`.
    pub enabled: bool,
    /// Allowed operations.
    pub key_ops: Vec<String>,
    /// Reported as an `-HSM` key type.
    pub hsm: bool,
}

/// A failed key operation, as Key Vault reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// HTTP status.
    pub status: u16,
    /// Azure error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl OpError {
    fn bad(message: impl Into<String>) -> OpError {
        OpError {
            status: 400,
            code: "BadParameter",
            message: message.into(),
        }
    }
}

fn random_version() -> String {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).expect("randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn generate(spec: KeySpec) -> PKey<Private> {
    match spec {
        KeySpec::Rsa(bits) => {
            PKey::from_rsa(Rsa::generate(bits).expect("RSA keygen")).expect("pkey")
        }
        KeySpec::Ec(curve) => {
            let group = EcGroup::from_curve_name(curve_nid(curve)).expect("curve");
            PKey::from_ec_key(EcKey::generate(&group).expect("EC keygen")).expect("pkey")
        }
    }
}

const ALL_OPS: [&str; 6] = [
    "sign",
    "verify",
    "encrypt",
    "decrypt",
    "wrapKey",
    "unwrapKey",
];

/// All keys, persisted under a state folder.
pub struct KeyStore {
    dir: PathBuf,
    keys: BTreeMap<String, StoredKey>,
}

impl KeyStore {
    /// Opens (or creates) the state folder and loads every key in it.
    pub fn open(dir: &Path) -> std::io::Result<KeyStore> {
        let keys_dir = dir.join("keys");
        std::fs::create_dir_all(&keys_dir)?;
        std::fs::create_dir_all(dir.join("public"))?;
        let mut keys = BTreeMap::new();
        for entry in std::fs::read_dir(&keys_dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let meta: Meta = match std::fs::read(path.join("meta.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(m) => m,
                None => continue,
            };
            let mut versions = Vec::new();
            for (version, created) in &meta.versions {
                let pem = std::fs::read(path.join(format!("{version}.pem")))?;
                let pkey = PKey::private_key_from_pem(&pem).map_err(std::io::Error::other)?;
                versions.push(KeyVersionData {
                    version: version.clone(),
                    pkey,
                    created: *created,
                });
            }
            keys.insert(
                name.clone(),
                StoredKey {
                    name,
                    versions,
                    enabled: meta.enabled,
                    key_ops: meta.key_ops,
                    hsm: meta.hsm,
                },
            );
        }
        Ok(KeyStore {
            dir: dir.to_owned(),
            keys,
        })
    }

    /// Makes sure a key exists (generating it once); returns whether it was created now.
    pub fn ensure(&mut self, name: &str, spec: KeySpec) -> std::io::Result<bool> {
        if self.keys.contains_key(name) {
            return Ok(false);
        }
        self.create_version(name, spec)?;
        Ok(true)
    }

    /// Adds a new version (rotation), creating the key if needed.
    pub fn create_version(&mut self, name: &str, spec: KeySpec) -> std::io::Result<String> {
        let pkey = generate(spec);
        let version = random_version();
        let key_dir = self.dir.join("keys").join(name);
        std::fs::create_dir_all(&key_dir)?;
        std::fs::write(
            key_dir.join(format!("{version}.pem")),
            pkey.private_key_to_pem_pkcs8()
                .map_err(std::io::Error::other)?,
        )?;
        let entry = self
            .keys
            .entry(name.to_owned())
            .or_insert_with(|| StoredKey {
                name: name.to_owned(),
                versions: Vec::new(),
                enabled: true,
                key_ops: ALL_OPS.iter().map(|s| s.to_string()).collect(),
                hsm: false,
            });
        entry.versions.push(KeyVersionData {
            version: version.clone(),
            pkey,
            created: now_unix(),
        });
        self.save(name)?;
        Ok(version)
    }

    /// Enables or disables a key.
    pub fn set_enabled(&mut self, name: &str, enabled: bool) -> std::io::Result<bool> {
        match self.keys.get_mut(name) {
            Some(k) => {
                k.enabled = enabled;
                self.save(name)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn save(&self, name: &str) -> std::io::Result<()> {
        let key = &self.keys[name];
        let meta = Meta {
            enabled: key.enabled,
            key_ops: key.key_ops.clone(),
            hsm: key.hsm,
            versions: key
                .versions
                .iter()
                .map(|v| (v.version.clone(), v.created))
                .collect(),
        };
        std::fs::write(
            self.dir.join("keys").join(name).join("meta.json"),
            serde_json::to_vec_pretty(&meta)?,
        )?;
        let latest = key.versions.last().expect("a key has a version");
        std::fs::write(
            self.public_pem_path(name),
            latest
                .pkey
                .public_key_to_pem()
                .map_err(std::io::Error::other)?,
        )
    }

    /// Where the latest version's public key is exported as PEM.
    pub fn public_pem_path(&self, name: &str) -> PathBuf {
        self.dir.join("public").join(format!("{name}.pem"))
    }

    /// Key names.
    pub fn names(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Finds a key version (`None` or empty = latest).
    pub fn find(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(&StoredKey, &KeyVersionData), OpError> {
        let not_found = || OpError {
            status: 404,
            code: "KeyNotFound",
            message: format!(
                "A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        };
        let key = self
            .keys
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .ok_or_else(not_found)?;
        let data = match version.filter(|v| !v.is_empty()) {
            None => key.versions.last(),
            Some(v) => key
                .versions
                .iter()
                .find(|d| d.version.eq_ignore_ascii_case(v)),
        }
        .ok_or_else(not_found)?;
        Ok((key, data))
    }
}

/// The self-signed certificate of a key version, made once and kept beside the key so that
/// it stays the same across restarts.
pub fn certificate_der(
    store: &KeyStore,
    key: &StoredKey,
    data: &KeyVersionData,
) -> std::io::Result<Vec<u8>> {
    let path = store
        .dir
        .join("keys")
        .join(&key.name)
        .join(format!("{}.cer", data.version));
    if let Ok(der) = std::fs::read(&path) {
        return Ok(der);
    }
    let der = self_signed(&key.name, data).map_err(std::io::Error::other)?;
    std::fs::write(&path, &der)?;
    Ok(der)
}

fn self_signed(name: &str, data: &KeyVersionData) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::x509::extension::{
        BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
    };
    use openssl::x509::{X509, X509NameBuilder};

    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_text("CN", name)?;
    let subject = subject.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    // The version (hex) makes a positive serial unique per key version.
    let serial = BigNum::from_hex_str(&data.version[..16.min(data.version.len())])?;
    cert.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
    cert.set_subject_name(&subject)?;
    cert.set_issuer_name(&subject)?;
    cert.set_pubkey(&data.pkey)?;
    cert.set_not_before(Asn1Time::from_unix(data.created - 3600)?.as_ref())?;
    cert.set_not_after(Asn1Time::days_from_now(365)?.as_ref())?;
    cert.append_extension(BasicConstraints::new().critical().build()?)?;
    let mut usage = KeyUsage::new();
    usage.critical().digital_signature();
    if data.pkey.id() == Id::RSA {
        usage.key_encipherment();
    }
    cert.append_extension(usage.build()?)?;
    cert.append_extension(
        ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()?,
    )?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&cert.x509v3_context(None, None))?;
    cert.append_extension(san)?;
    let ski = SubjectKeyIdentifier::new().build(&cert.x509v3_context(None, None))?;
    cert.append_extension(ski)?;
    cert.sign(&data.pkey, MessageDigest::sha256())?;
    cert.build().to_der()
}

/// The JSON certificate bundle Key Vault returns for a certificate version.
pub fn certificate_bundle(
    base_url: &str,
    key: &StoredKey,
    data: &KeyVersionData,
    der: &[u8],
) -> Value {
    let thumbprint = openssl::hash::hash(MessageDigest::sha1(), der).expect("sha1");
    let (name, version) = (&key.name, &data.version);
    json!({
        "id": format!("{base_url}/certificates/{name}/{version}"),
        "kid": format!("{base_url}/keys/{name}/{version}"),
        "sid": format!("{base_url}/secrets/{name}/{version}"),
        "x5t": b64::encode(&thumbprint),
        "cer": openssl::base64::encode_block(der),
        "attributes": {
            "enabled": key.enabled,
            "created": data.created,
            "updated": data.created,
            "recoveryLevel": "Recoverable+Purgeable",
        },
        "policy": {"issuer": {"name": "Self"}},
    })
}

/// The JSON key bundle Key Vault returns for a key version.
pub fn key_bundle(base_url: &str, key: &StoredKey, data: &KeyVersionData) -> Value {
    let kid = format!("{base_url}/keys/{}/{}", key.name, data.version);
    let suffix = if key.hsm { "-HSM" } else { "" };
    let mut jwk = match data.pkey.id() {
        Id::RSA => {
            let rsa = data.pkey.rsa().expect("rsa");
            json!({"kid": kid, "kty": format!("RSA{suffix}"), "key_ops": key.key_ops, "n": b64::encode(&rsa.n().to_vec()), "e": b64::encode(&rsa.e().to_vec())})
        }
        _ => {
            let ec = data.pkey.ec_key().expect("ec");
            let curve =
                nid_curve(ec.group().curve_name().expect("named curve")).expect("supported curve");
            let mut ctx = BigNumContext::new().expect("bn ctx");
            let mut x = openssl::bn::BigNum::new().expect("bn");
            let mut y = openssl::bn::BigNum::new().expect("bn");
            ec.public_key()
                .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                .expect("coordinates");
            let width = curve.field_len() as i32;
            json!({"kid": kid, "kty": format!("EC{suffix}"), "key_ops": key.key_ops, "crv": curve.jwk_name(),
                   "x": b64::encode(&x.to_vec_padded(width).expect("pad")), "y": b64::encode(&y.to_vec_padded(width).expect("pad"))})
        }
    };
    jwk.as_object_mut().expect("object");
    json!({"key": jwk, "attributes": {"enabled": key.enabled, "created": data.created, "updated": data.created, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90, "exportable": false}, "tags": {"emulator": "akv-tests"}})
}

fn sign_md(alg: &str) -> Option<(&'static MdRef, usize)> {
    Some(match &alg[2..] {
        "256" | "256K" => (Md::sha256(), 32),
        "384" => (Md::sha384(), 48),
        "512" => (Md::sha512(), 64),
        _ => return None,
    })
}

fn ossl(e: openssl::error::ErrorStack) -> OpError {
    OpError::bad(format!("The parameter is incorrect. ({e})"))
}

/// Signs `digest` with `alg`; ECDSA results are raw `r||s` like Key Vault's.
pub fn sign(pkey: &PKey<Private>, alg: &str, digest: &[u8]) -> Result<Vec<u8>, OpError> {
    let (md, len) = sign_md(alg).ok_or_else(|| OpError::bad(format!("Invalid algorithm {alg}")))?;
    if digest.len() != len {
        return Err(OpError::bad(format!(
            "Invalid digest length {} for algorithm {alg}",
            digest.len()
        )));
    }
    let mut ctx = PkeyCtx::new(pkey).map_err(ossl)?;
    ctx.sign_init().map_err(ossl)?;
    let mut sig = Vec::new();
    match (&alg[..2], pkey.id()) {
        ("RS", Id::RSA) => {
            ctx.set_rsa_padding(Padding::PKCS1).map_err(ossl)?;
            ctx.set_signature_md(md).map_err(ossl)?;
        }
        ("PS", Id::RSA) => {
            ctx.set_rsa_padding(Padding::PKCS1_PSS).map_err(ossl)?;
            ctx.set_signature_md(md).map_err(ossl)?;
            ctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                .map_err(ossl)?;
            ctx.set_rsa_mgf1_md(md).map_err(ossl)?;
        }
        ("ES", Id::EC) => {
            let curve = nid_curve(
                pkey.ec_key()
                    .map_err(ossl)?
                    .group()
                    .curve_name()
                    .unwrap_or(Nid::UNDEF),
            )
            .ok_or_else(|| OpError::bad("unsupported curve"))?;
            if curve.sign_algorithm().as_str() != alg {
                return Err(OpError::bad(format!(
                    "Key and signing algorithm are incompatible: {alg} on {curve}"
                )));
            }
            ctx.sign_to_vec(digest, &mut sig).map_err(ossl)?;
            return akv_proto::ecdsa_der_to_raw(curve, &sig)
                .map_err(|e| OpError::bad(e.to_string()));
        }
        _ => {
            return Err(OpError::bad(format!(
                "Key and signing algorithm are incompatible: {alg}"
            )));
        }
    }
    ctx.sign_to_vec(digest, &mut sig).map_err(ossl)?;
    Ok(sig)
}

/// Verifies like Key Vault's verify.
pub fn verify(
    pkey: &PKey<Private>,
    alg: &str,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, OpError> {
    let (md, _) = sign_md(alg).ok_or_else(|| OpError::bad(format!("Invalid algorithm {alg}")))?;
    let mut ctx = PkeyCtx::new(pkey).map_err(ossl)?;
    ctx.verify_init().map_err(ossl)?;
    let sig = match &alg[..2] {
        "RS" => {
            ctx.set_rsa_padding(Padding::PKCS1).map_err(ossl)?;
            ctx.set_signature_md(md).map_err(ossl)?;
            signature.to_vec()
        }
        "PS" => {
            ctx.set_rsa_padding(Padding::PKCS1_PSS).map_err(ossl)?;
            ctx.set_signature_md(md).map_err(ossl)?;
            ctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                .map_err(ossl)?;
            ctx.set_rsa_mgf1_md(md).map_err(ossl)?;
            signature.to_vec()
        }
        _ => {
            let curve = nid_curve(
                pkey.ec_key()
                    .map_err(ossl)?
                    .group()
                    .curve_name()
                    .unwrap_or(Nid::UNDEF),
            )
            .ok_or_else(|| OpError::bad("unsupported curve"))?;
            match akv_proto::ecdsa_raw_to_der(curve, signature) {
                Ok(der) => der,
                Err(_) => return Ok(false),
            }
        }
    };
    Ok(ctx.verify(digest, &sig).unwrap_or(false))
}

fn set_encryption(ctx: &mut PkeyCtx<Private>, alg: &str) -> Result<(), OpError> {
    match alg {
        "RSA1_5" => ctx.set_rsa_padding(Padding::PKCS1).map_err(ossl),
        "RSA-OAEP" | "RSA-OAEP-256" => {
            ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(ossl)?;
            let md = if alg == "RSA-OAEP" {
                Md::sha1()
            } else {
                Md::sha256()
            };
            ctx.set_rsa_oaep_md(md).map_err(ossl)?;
            ctx.set_rsa_mgf1_md(md).map_err(ossl)
        }
        other => Err(OpError::bad(format!("Invalid algorithm {other}"))),
    }
}

/// Decrypts (or unwraps).
pub fn decrypt(pkey: &PKey<Private>, alg: &str, ciphertext: &[u8]) -> Result<Vec<u8>, OpError> {
    if pkey.id() != Id::RSA {
        return Err(OpError::bad(
            "Key and encryption algorithm are incompatible",
        ));
    }
    let mut ctx = PkeyCtx::new(pkey).map_err(ossl)?;
    ctx.decrypt_init().map_err(ossl)?;
    set_encryption(&mut ctx, alg)?;
    let mut out = Vec::new();
    ctx.decrypt_to_vec(ciphertext, &mut out)
        .map_err(|_| OpError::bad("The parameter is incorrect.\r\n"))?;
    Ok(out)
}

/// Encrypts (or wraps).
pub fn encrypt(pkey: &PKey<Private>, alg: &str, plaintext: &[u8]) -> Result<Vec<u8>, OpError> {
    if pkey.id() != Id::RSA {
        return Err(OpError::bad(
            "Key and encryption algorithm are incompatible",
        ));
    }
    let mut ctx = PkeyCtx::new(pkey).map_err(ossl)?;
    ctx.encrypt_init().map_err(ossl)?;
    set_encryption(&mut ctx, alg)?;
    let mut out = Vec::new();
    ctx.encrypt_to_vec(plaintext, &mut out).map_err(ossl)?;
    Ok(out)
}
