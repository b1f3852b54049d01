//! The emulator's test CA and server certificate (for 127.0.0.1, ::1 and localhost), kept in
//! the state folder so clients configured with `ca.pem` keep trusting restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};

/// Paths of the TLS material.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate clients must trust.
    pub ca_cert: PathBuf,
    /// Server certificate chain.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    PKey::from_ec_key(EcKey::generate(&group).expect("keygen")).expect("pkey")
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().expect("bn");
    bn.rand(127, MsbOption::MAYBE_ZERO, false).expect("rand");
    bn.to_asn1_integer().expect("serial")
}

/// Creates the CA and server certificate once; later calls reuse them.
pub fn ensure(dir: &Path) -> std::io::Result<TlsFiles> {
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    if files.ca_cert.exists() && files.server_cert.exists() && files.server_key.exists() {
        return Ok(files);
    }
    let e = std::io::Error::other;
    let ca_key = new_key();
    let mut name = X509NameBuilder::new().map_err(e)?;
    name.append_entry_by_text("CN", "akv-emulator test CA")
        .map_err(e)?;
    let ca_name = name.build();
    let mut ca = X509::builder().map_err(e)?;
    ca.set_version(2).map_err(e)?;
    ca.set_serial_number(&serial()).map_err(e)?;
    ca.set_subject_name(&ca_name).map_err(e)?;
    ca.set_issuer_name(&ca_name).map_err(e)?;
    ca.set_pubkey(&ca_key).map_err(e)?;
    ca.set_not_before(Asn1Time::days_from_now(0).map_err(e)?.as_ref())
        .map_err(e)?;
    ca.set_not_after(Asn1Time::days_from_now(3650).map_err(e)?.as_ref())
        .map_err(e)?;
    ca.append_extension(BasicConstraints::new().critical().ca().build().map_err(e)?)
        .map_err(e)?;
    ca.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .map_err(e)?,
    )
    .map_err(e)?;
    ca.sign(&ca_key, MessageDigest::sha256()).map_err(e)?;
    let ca = ca.build();

    let key = new_key();
    let mut name = X509NameBuilder::new().map_err(e)?;
    name.append_entry_by_text("CN", "localhost").map_err(e)?;
    let name = name.build();
    let mut cert = X509::builder().map_err(e)?;
    cert.set_version(2).map_err(e)?;
    cert.set_serial_number(&serial()).map_err(e)?;
    cert.set_subject_name(&name).map_err(e)?;
    cert.set_issuer_name(ca.subject_name()).map_err(e)?;
    cert.set_pubkey(&key).map_err(e)?;
    cert.set_not_before(Asn1Time::days_from_now(0).map_err(e)?.as_ref())
        .map_err(e)?;
    cert.set_not_after(Asn1Time::days_from_now(3650).map_err(e)?.as_ref())
        .map_err(e)?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .ip("::1")
        .build(&cert.x509v3_context(Some(&ca), None))
        .map_err(e)?;
    cert.append_extension(san).map_err(e)?;
    cert.append_extension(ExtendedKeyUsage::new().server_auth().build().map_err(e)?)
        .map_err(e)?;
    cert.sign(&ca_key, MessageDigest::sha256()).map_err(e)?;
    let cert = cert.build();

    std::fs::write(
        &files.server_key,
        key.private_key_to_pem_pkcs8().map_err(e)?,
    )?;
    let mut chain = cert.to_pem().map_err(e)?;
    chain.extend(ca.to_pem().map_err(e)?);
    std::fs::write(&files.server_cert, chain)?;
    std::fs::write(&files.ca_cert, ca.to_pem().map_err(e)?)?;
    Ok(files)
}

/// A rustls server configuration for the files (HTTP/1.1 only).
pub fn server_config(files: &TlsFiles) -> std::io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.server_cert)
        .map_err(std::io::Error::other)?
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::from_pem_file(&files.server_key).map_err(std::io::Error::other)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
