//! Key identifiers: the strings operators write (`vault:myvault:mykey`,
//! `managedHsm:myhsm:mykey:VERSION`, `https://myvault.vault.azure.net/keys/mykey`) turned into
//! a [`KeyId`] whose every part was checked.
//!
//! Why so strict: every byte of the request URL, and therefore where the bearer token goes,
//! comes from this string. A `KeyId` can only name a host under a known Azure suffix, a host
//! the operator listed explicitly, or the operator's endpoint override; nothing in a key
//! string can smuggle a `@`, `/`, `?`, `#` or `%` into the URL.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use crate::api_version::ApiVersion;
use crate::cloud::{Cloud, ServiceKind};
use crate::key_id_error::{KeyIdError, KeyIdPart};
use crate::names::{KeyName, KeyVersion, VaultName};
use crate::text::shown;
use crate::token::Audience;

/// The longest key string we look at. Real ones are under 300 characters; refusing huge input
/// early keeps error messages and work bounded.
pub const MAX_KEY_STRING_LEN: usize = 1024;

/// URL scheme of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// TLS. Always, except for loopback test servers.
    Https,
    /// Plain HTTP, only ever for loopback hosts.
    Http,
}

/// A validated origin (`scheme://host[:port]`) that requests may be sent to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    /// Lowercase DNS name, dotted IPv4, or bracketed IPv6.
    host: String,
    port: Option<u16>,
}

impl Endpoint {
    /// `https://host[:port]` or `http://...`, without a trailing slash.
    pub fn origin(&self) -> String {
        let mut origin = String::with_capacity(self.host.len() + 14);
        self.write_origin(&mut origin);
        origin
    }

    /// Appends the origin to `out` (URLs are built per request: one allocation, no `format!`).
    fn write_origin(&self, out: &mut String) {
        out.push_str(match self.scheme {
            Scheme::Https => "https://",
            Scheme::Http => "http://",
        });
        out.push_str(&self.host);
        if let Some(port) = self.port {
            use std::fmt::Write;
            let _ = write!(out, ":{port}");
        }
    }

    /// The host: a lowercase DNS name, a dotted IPv4 address or a bracketed IPv6 address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether the host is a loopback name or address.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }

    /// Parses `scheme://authority` with nothing after it but an optional `/`.
    fn parse_origin(input: &str) -> Result<(Endpoint, &str), KeyIdError> {
        check_characters(input)?;
        let (scheme, rest) = if let Some(rest) = strip_prefix_ci(input, "https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = strip_prefix_ci(input, "http://") {
            (Scheme::Http, rest)
        } else {
            return Err(KeyIdError::UnknownType {
                found: shown(input.split(':').next().unwrap_or("")),
            });
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = parse_authority(authority)?;
        let endpoint = Endpoint { scheme, host, port };
        if endpoint.scheme == Scheme::Http && !endpoint.is_loopback() {
            return Err(KeyIdError::InsecureScheme {
                host: endpoint.host,
            });
        }
        Ok((endpoint, path))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Every character of a key identifier must come from this set. This is what makes `@`
/// (userinfo), `?` (query), `#` (fragment), `%` (escapes), `\` and whitespace impossible.
fn check_characters(input: &str) -> Result<(), KeyIdError> {
    for (position, c) in input.char_indices() {
        if !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '/' | '[' | ']')) {
            return Err(KeyIdError::BadCharacter {
                found: format!("{:?}", c),
                position,
            });
        }
    }
    Ok(())
}

fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if let Ok(v6) = inner.parse::<Ipv6Addr>() {
            return v6.is_loopback();
        }
    }
    false
}

/// Splits `host[:port]` / `[v6][:port]` and validates both.
pub(crate) fn parse_authority(authority: &str) -> Result<(String, Option<u16>), KeyIdError> {
    let host_err = |rule: &'static str| KeyIdError::InvalidPart {
        part: KeyIdPart::Host,
        value: shown(authority),
        rule,
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| host_err("an IPv6 address in brackets"))?;
        let v6: Ipv6Addr = rest[..end]
            .parse()
            .map_err(|_| host_err("an IPv6 address in brackets"))?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| host_err("[IPv6]:PORT"))?,
            ),
        };
        (format!("[{v6}]"), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if !host.starts_with('[') {
        validate_dns_or_ipv4(&host).map_err(|rule| KeyIdError::InvalidPart {
            part: KeyIdPart::Host,
            value: shown(&host),
            rule,
        })?;
    }
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, KeyIdError> {
    let err = || KeyIdError::InvalidPart {
        part: KeyIdPart::Port,
        value: shown(p),
        rule: "a number from 1 to 65535",
    };
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(err()),
        Ok(port) => Ok(port),
    }
}

const HOST_RULE: &str = "a DNS name of dot-separated labels (1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'; 253 characters at most), an IPv4 address, or an IPv6 address in brackets";

fn validate_dns_or_ipv4(host: &str) -> Result<(), &'static str> {
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    // A name made only of digits and dots that is not a valid IPv4 address (e.g. "1.2.3.999"
    // or "0x7f.1") is refused: resolvers disagree about what such names mean.
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if labels_ok && !numeric {
        Ok(())
    } else {
        Err(HOST_RULE)
    }
}

/// An operator's entry in the allowed-hosts list: `host`, `host:port`, or `.suffix` (any host
/// below that suffix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    host: String,
    port: Option<u16>,
    subdomains: bool,
}

impl AllowedHost {
    /// Parses one entry. Examples: `127.0.0.1:8443`, `localhost`, `[::1]:8443`,
    /// `.vault.contoso.internal`.
    pub fn parse(entry: &str) -> Result<Self, KeyIdError> {
        let entry = entry.trim();
        check_characters(entry)?;
        let (subdomains, rest) = match entry.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let (host, port) = parse_authority(rest)?;
        Ok(AllowedHost {
            host,
            port,
            subdomains,
        })
    }

    fn matches(&self, endpoint: &Endpoint) -> bool {
        let port_ok = self.port.is_none() || self.port == endpoint.port;
        let host_ok = if self.subdomains {
            endpoint
                .host
                .strip_suffix(self.host.as_str())
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        } else {
            endpoint.host == self.host
        };
        port_ok && host_ok
    }
}

/// Where keys may live: the cloud for short forms, hosts the operator allows besides the
/// Azure ones, and an optional endpoint that replaces the host of every short form (for a
/// local emulator or a private gateway).
#[derive(Clone, Debug, Default)]
pub struct EndpointPolicy {
    cloud: Cloud,
    allowed: Vec<AllowedHost>,
    endpoint_override: Option<Endpoint>,
}

impl EndpointPolicy {
    /// A policy for a cloud with no extra hosts.
    pub fn new(cloud: Cloud) -> Self {
        EndpointPolicy {
            cloud,
            ..Default::default()
        }
    }

    /// Adds an allowed host (see [`AllowedHost::parse`]).
    pub fn allow_host(mut self, entry: &str) -> Result<Self, KeyIdError> {
        self.allowed.push(AllowedHost::parse(entry)?);
        Ok(self)
    }

    /// Adds every entry of a comma- or whitespace-separated list.
    pub fn allow_hosts(mut self, list: &str) -> Result<Self, KeyIdError> {
        for entry in list.split([',', ' ', '\t', '\n']).filter(|e| !e.is_empty()) {
            self = self.allow_host(entry)?;
        }
        Ok(self)
    }

    /// Sends every `vault:`/`managedHsm:` short form to this origin
    /// (`https://host[:port]`) instead of `NAME.vault.azure.net`, keeping the audience of the
    /// named service. The origin must itself be an Azure host or an allowed host, so add it
    /// to the allowed hosts first.
    pub fn with_endpoint_override(mut self, origin: &str) -> Result<Self, KeyIdError> {
        let (endpoint, path) = Endpoint::parse_origin(origin)?;
        if !(path.is_empty() || path == "/") {
            return Err(KeyIdError::InvalidPart {
                part: KeyIdPart::Path,
                value: shown(path),
                rule: "empty: an endpoint override is scheme://host[:port] only",
            });
        }
        self.check_host(&endpoint)?;
        self.endpoint_override = Some(endpoint);
        Ok(self)
    }

    /// The cloud used for short forms.
    pub fn cloud(&self) -> Cloud {
        self.cloud
    }

    /// The endpoint override, if configured.
    pub fn endpoint_override(&self) -> Option<&Endpoint> {
        self.endpoint_override.as_ref()
    }

    /// Whether requests may go to `endpoint`: an Azure key service host of any known cloud,
    /// or a host the operator allowed.
    pub fn is_allowed(&self, endpoint: &Endpoint) -> bool {
        self.check_host(endpoint).is_ok()
    }

    fn check_host(&self, endpoint: &Endpoint) -> Result<(), KeyIdError> {
        if let Some((_, kind, name)) = Cloud::classify_host(&endpoint.host) {
            let part = match kind {
                ServiceKind::Vault => KeyIdPart::VaultName,
                ServiceKind::ManagedHsm => KeyIdPart::HsmName,
            };
            VaultName::parse(name, part)?;
            return Ok(());
        }
        if self.allowed.iter().any(|a| a.matches(endpoint)) {
            Ok(())
        } else {
            Err(KeyIdError::HostNotAllowed {
                host: match endpoint.port {
                    Some(p) => format!("{}:{p}", endpoint.host),
                    None => endpoint.host.clone(),
                },
            })
        }
    }
}

/// Which service a key lives in, as far as the key identifier tells.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyService {
    /// A Key Vault or Managed HSM of a known cloud.
    Azure {
        /// The cloud.
        cloud: Cloud,
        /// Vault or Managed HSM.
        kind: ServiceKind,
        /// The vault or HSM name.
        vault: VaultName,
    },
    /// An operator-allowed host (emulator, gateway). Its token audience is learned from the
    /// service's 401 challenge.
    Custom,
}

/// A parsed, validated key identifier. Safe to put into a URL by construction. Shared, so
/// cheap to clone: every operation carries one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(Arc<KeyIdParts>);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct KeyIdParts {
    endpoint: Endpoint,
    service: KeyService,
    name: KeyName,
    version: Option<KeyVersion>,
    /// Follows from `service`; worked out once, not per operation.
    audience: Option<Audience>,
    /// Follows from the rest; not part of the key's identity.
    uris: UriCache,
}

/// Kinds of operation a key's request URIs are kept for (`KeyCall::slot` numbers them).
const URI_SLOTS: usize = 8;

/// A key's request URIs, made on first use. Making one (the URL's text, then `http::Uri`'s
/// parse of it, then its shared copy) cost 2,000 instructions and 2 allocations on every
/// operation; a clone is two reference counts.
#[derive(Default)]
struct UriCache([OnceLock<(ApiVersion, http::Uri)>; URI_SLOTS]);

impl Clone for UriCache {
    /// Empty: the clone is for a key that differs (another version), whose URIs differ.
    fn clone(&self) -> Self {
        UriCache::default()
    }
}

impl PartialEq for UriCache {
    /// Always: what is cached follows from the key's other parts.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for UriCache {}

impl std::hash::Hash for UriCache {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl fmt::Debug for UriCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UriCache")
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyId")
            .field("endpoint", &self.0.endpoint)
            .field("service", &self.0.service)
            .field("name", &self.0.name)
            .field("version", &self.0.version)
            .finish()
    }
}

impl KeyId {
    /// Parses any accepted key string form:
    /// `[engine:e_akv:]vault:NAME:KEY[:VERSION]`, `[engine:e_akv:]managedHsm:NAME:KEY[:VERSION]`
    /// (type in any case), or `[engine:e_akv:]https://HOST[:PORT]/keys/KEY[/VERSION]`.
    pub fn parse(input: &str, policy: &EndpointPolicy) -> Result<KeyId, KeyIdError> {
        if input.is_empty() {
            return Err(KeyIdError::Empty);
        }
        if input.len() > MAX_KEY_STRING_LEN {
            return Err(KeyIdError::TooLong {
                len: input.len(),
                max: MAX_KEY_STRING_LEN,
            });
        }
        let body = strip_prefix_ci(input, "engine:e_akv:").unwrap_or(input);
        if body.is_empty() {
            return Err(KeyIdError::Empty);
        }
        if strip_prefix_ci(body, "https://").is_some() || strip_prefix_ci(body, "http://").is_some()
        {
            check_characters(body)?;
            return Self::parse_url(body, policy);
        }
        // Name the wrong type before complaining about characters: `pkcs11:token=x` is
        // best answered with "unknown key type".
        let type_word = body.split(':').next().unwrap_or("");
        if !(type_word.eq_ignore_ascii_case("vault")
            || type_word.eq_ignore_ascii_case("managedhsm"))
        {
            return Err(KeyIdError::UnknownType {
                found: shown(type_word),
            });
        }
        check_characters(body)?;
        let parts: Vec<&str> = body.split(':').collect();
        let kind = if parts[0].eq_ignore_ascii_case("vault") {
            ServiceKind::Vault
        } else if parts[0].eq_ignore_ascii_case("managedhsm") {
            ServiceKind::ManagedHsm
        } else {
            return Err(KeyIdError::UnknownType {
                found: shown(parts[0]),
            });
        };
        if !(parts.len() == 3 || parts.len() == 4) {
            return Err(KeyIdError::WrongShape { parts: parts.len() });
        }
        let name_part = match kind {
            ServiceKind::Vault => KeyIdPart::VaultName,
            ServiceKind::ManagedHsm => KeyIdPart::HsmName,
        };
        let vault = VaultName::parse(parts[1], name_part)?;
        let name = KeyName::parse(parts[2])?;
        let version = parts.get(3).map(|v| KeyVersion::parse(v)).transpose()?;
        let cloud = policy.cloud;
        let endpoint = match &policy.endpoint_override {
            Some(e) => e.clone(),
            None => Endpoint {
                scheme: Scheme::Https,
                host: format!("{}.{}", vault.as_str(), cloud.dns_suffix(kind)),
                port: None,
            },
        };
        Ok(KeyId::from_parts(
            endpoint,
            KeyService::Azure { cloud, kind, vault },
            name,
            version,
        ))
    }

    /// Parses a key URL as the portal shows it: `https://HOST[:PORT]/keys/KEY[/VERSION]`.
    pub fn parse_url(input: &str, policy: &EndpointPolicy) -> Result<KeyId, KeyIdError> {
        if input.len() > MAX_KEY_STRING_LEN {
            return Err(KeyIdError::TooLong {
                len: input.len(),
                max: MAX_KEY_STRING_LEN,
            });
        }
        let (endpoint, path) = Endpoint::parse_origin(input)?;
        policy.check_host(&endpoint)?;
        let path_err = || KeyIdError::InvalidPart {
            part: KeyIdPart::Path,
            value: shown(path),
            rule: "/keys/KEY or /keys/KEY/VERSION",
        };
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = path.split('/');
        if segments.next() != Some("") {
            return Err(path_err());
        }
        if !segments
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("keys"))
        {
            return Err(path_err());
        }
        let name = KeyName::parse(segments.next().ok_or_else(path_err)?)?;
        let version = segments.next().map(KeyVersion::parse).transpose()?;
        if segments.next().is_some() {
            return Err(path_err());
        }
        let service = match Cloud::classify_host(&endpoint.host) {
            Some((cloud, kind, vault)) => {
                let part = match kind {
                    ServiceKind::Vault => KeyIdPart::VaultName,
                    ServiceKind::ManagedHsm => KeyIdPart::HsmName,
                };
                KeyService::Azure {
                    cloud,
                    kind,
                    vault: VaultName::parse(vault, part)?,
                }
            }
            None => KeyService::Custom,
        };
        Ok(KeyId::from_parts(endpoint, service, name, version))
    }

    fn from_parts(
        endpoint: Endpoint,
        service: KeyService,
        name: KeyName,
        version: Option<KeyVersion>,
    ) -> KeyId {
        let audience = match &service {
            KeyService::Azure { cloud, kind, .. } => Some(cloud.audience(*kind)),
            KeyService::Custom => None,
        };
        KeyId(Arc::new(KeyIdParts {
            endpoint,
            service,
            name,
            version,
            audience,
            uris: UriCache::default(),
        }))
    }

    /// The origin requests go to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.0.endpoint
    }

    /// The service the key lives in.
    pub fn service(&self) -> &KeyService {
        &self.0.service
    }

    /// The key name.
    pub fn name(&self) -> &KeyName {
        &self.0.name
    }

    /// The pinned version, if any.
    pub fn version(&self) -> Option<&KeyVersion> {
        self.0.version.as_ref()
    }

    /// The same key pinned to `version`.
    pub fn with_version(&self, version: KeyVersion) -> KeyId {
        KeyId(Arc::new(KeyIdParts {
            version: Some(version),
            ..(*self.0).clone()
        }))
    }

    /// The token audience for this key, when the identifier decides it (Azure hosts and short
    /// forms). `None` for custom hosts: learn it from the 401 challenge.
    pub fn audience(&self) -> Option<Audience> {
        self.0.audience.clone()
    }

    /// Whether the endpoint is an Azure host, for which a 401 challenge's resource must match
    /// the host (as the Azure SDKs check) before a token is sent there. Operator-chosen
    /// endpoints (allowed hosts, overrides) are trusted by configuration instead.
    pub fn endpoint_is_azure(&self) -> bool {
        Cloud::classify_host(&self.0.endpoint.host).is_some()
    }

    /// `https://host[:port]/certificates/NAME[/VERSION]`: the certificate of the same name,
    /// whose key this is when the certificate was made in the vault (a certificate's key and
    /// its versions share its name).
    pub fn certificate_url(&self) -> String {
        self.url_in("certificates")
    }

    /// Whether the key is known to live in a Managed HSM, which keeps no certificates.
    pub fn is_managed_hsm(&self) -> bool {
        matches!(
            self.0.service,
            KeyService::Azure {
                kind: ServiceKind::ManagedHsm,
                ..
            }
        )
    }

    /// `https://host[:port]/keys/NAME[/VERSION]`.
    pub fn url(&self) -> String {
        self.url_in("keys")
    }

    /// The URI of a request on this key, made by `make` from `url()` the first time, and kept
    /// in `slot` (one per kind of operation) for `api_version`. A key used by clients of two
    /// api-versions keeps the first one's and makes the others' each time.
    pub(crate) fn request_uri(
        &self,
        slot: usize,
        api_version: &ApiVersion,
        make: impl FnOnce() -> http::Uri,
    ) -> http::Uri {
        let Some(cell) = self.0.uris.0.get(slot) else {
            return make();
        };
        match cell.get() {
            Some((version, uri)) if version == api_version => uri.clone(),
            Some(_) => make(),
            None => cell.get_or_init(|| (api_version.clone(), make())).1.clone(),
        }
    }

    /// `https://host[:port]/COLLECTION/NAME[/VERSION]`.
    fn url_in(&self, collection: &str) -> String {
        let mut url = String::with_capacity(128);
        self.0.endpoint.write_origin(&mut url);
        url.push('/');
        url.push_str(collection);
        url.push('/');
        url.push_str(self.0.name.as_str());
        if let Some(version) = &self.0.version {
            url.push('/');
            url.push_str(version.as_str());
        }
        url
    }

    /// Takes the version from a `kid` the service returned, after checking that the `kid`
    /// names this same key. The host is not taken from it: a response never decides where
    /// the next request goes.
    pub fn pinned_from_kid(&self, kid: &str) -> Result<KeyId, KeyIdError> {
        check_characters(kid)?;
        let (_, path) = Endpoint::parse_origin(kid)?;
        let mut segments = path.trim_end_matches('/').split('/');
        let bad_path = || KeyIdError::InvalidPart {
            part: KeyIdPart::Path,
            value: shown(path),
            rule: "/keys/KEY/VERSION naming the requested key",
        };
        let (Some(""), Some(keys), Some(name), Some(version), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(bad_path());
        };
        if !keys.eq_ignore_ascii_case("keys") || !name.eq_ignore_ascii_case(self.0.name.as_str()) {
            return Err(bad_path());
        }
        Ok(self.with_version(KeyVersion::parse(version)?))
    }
}

impl fmt::Display for KeyId {
    /// The short form when it round-trips to this same identifier, else the URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.service {
            KeyService::Azure { kind, vault, .. } => {
                write!(f, "{kind}:{vault}:{}", self.0.name)?;
                if let Some(v) = &self.0.version {
                    write!(f, ":{v}")?;
                }
                if !self.endpoint_is_azure() {
                    write!(f, " (at {})", self.0.endpoint)?;
                }
                Ok(())
            }
            KeyService::Custom => f.write_str(&self.url()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn public() -> EndpointPolicy {
        EndpointPolicy::new(Cloud::Public)
    }

    #[test]
    fn short_forms() {
        let k = KeyId::parse("vault:myvault:mykey", &public()).unwrap();
        assert_eq!(k.url(), "https://myvault.vault.azure.net/keys/mykey");
        assert_eq!(k.audience().unwrap().as_str(), "https://vault.azure.net");
        let k = KeyId::parse(
            "engine:e_akv:managedHsm:myhsm:mykey:78deebed173b48e48f55abf87ed4cf71",
            &public(),
        )
        .unwrap();
        assert_eq!(
            k.url(),
            "https://myhsm.managedhsm.azure.net/keys/mykey/78deebed173b48e48f55abf87ed4cf71"
        );
        assert_eq!(
            k.audience().unwrap().as_str(),
            "https://managedhsm.azure.net"
        );
        let k = KeyId::parse("MANAGEDHSM:MyHsm:k", &EndpointPolicy::new(Cloud::China)).unwrap();
        assert_eq!(k.url(), "https://myhsm.managedhsm.azure.cn/keys/k");
        let k = KeyId::parse("Vault:v12:k", &EndpointPolicy::new(Cloud::UsGovernment)).unwrap();
        assert_eq!(k.url(), "https://v12.vault.usgovcloudapi.net/keys/k");
        assert_eq!(
            k.audience().unwrap().as_str(),
            "https://vault.usgovcloudapi.net"
        );
    }

    #[test]
    fn urls() {
        let k = KeyId::parse(
            "https://myvault.vault.azure.net/keys/CreateSoftKeyTest/78deebed173b48e48f55abf87ed4cf71",
            &public(),
        )
        .unwrap();
        assert_eq!(k.name().as_str(), "CreateSoftKeyTest");
        assert_eq!(
            k.version().unwrap().as_str(),
            "78deebed173b48e48f55abf87ed4cf71"
        );
        assert_eq!(
            k.to_string(),
            "vault:myvault:CreateSoftKeyTest:78deebed173b48e48f55abf87ed4cf71"
        );
        // A China-cloud URL keeps its own audience whatever the configured cloud.
        let k = KeyId::parse("https://x12.vault.azure.cn/keys/k/", &public()).unwrap();
        assert_eq!(k.audience().unwrap().as_str(), "https://vault.azure.cn");
        assert_eq!(k.url(), "https://x12.vault.azure.cn/keys/k");
        let k = KeyId::parse("https://MyHsm.ManagedHSM.azure.net:443/keys/k", &public()).unwrap();
        assert_eq!(k.url(), "https://myhsm.managedhsm.azure.net:443/keys/k");
    }

    #[test]
    fn allowed_and_loopback_hosts() {
        let err = KeyId::parse("http://127.0.0.1:8080/keys/k", &public()).unwrap_err();
        assert!(matches!(err, KeyIdError::HostNotAllowed { .. }), "{err}");
        let policy = public()
            .allow_hosts("127.0.0.1:8080, [::1], .kv.contoso.internal")
            .unwrap();
        let k = KeyId::parse("http://127.0.0.1:8080/keys/k", &policy).unwrap();
        assert_eq!(k.url(), "http://127.0.0.1:8080/keys/k");
        assert_eq!(k.audience(), None);
        assert!(KeyId::parse("http://127.0.0.1:8081/keys/k", &policy).is_err());
        assert!(KeyId::parse("https://[::1]:9/keys/k", &policy).is_ok());
        assert!(KeyId::parse("https://a.kv.contoso.internal/keys/k", &policy).is_ok());
        assert!(KeyId::parse("https://kv.contoso.internal/keys/k", &policy).is_err());
        assert!(KeyId::parse("https://evilkv.contoso.internal/keys/k", &policy).is_err());
        let err = KeyId::parse("http://a.kv.contoso.internal/keys/k", &policy).unwrap_err();
        assert!(matches!(err, KeyIdError::InsecureScheme { .. }), "{err}");
    }

    #[test]
    fn endpoint_override_keeps_the_audience() {
        let policy = public()
            .allow_host("127.0.0.1:8443")
            .unwrap()
            .with_endpoint_override("https://127.0.0.1:8443")
            .unwrap();
        let k = KeyId::parse("vault:myvault:k", &policy).unwrap();
        assert_eq!(k.url(), "https://127.0.0.1:8443/keys/k");
        assert_eq!(k.audience().unwrap().as_str(), "https://vault.azure.net");
        assert!(!k.endpoint_is_azure());
        assert!(
            public()
                .with_endpoint_override("https://127.0.0.1:8443")
                .is_err(),
            "an override must be an allowed host"
        );
    }

    #[test]
    fn crafted_key_strings_are_refused_with_the_reason() {
        let long = format!("vault:{}:k", "a".repeat(600));
        let cases: &[(&str, &str)] = &[
            ("vault:evil.com/x?:k", "'?'"),
            ("vault:a@b:k", "'@'"),
            ("managedHsm:host#:k", "'#'"),
            (&long, "vault name"),
            ("vault:evil.com:k", "vault name"),
            ("vault:myvault:k/../x", "key name"),
            ("vault:myvault:k:123", "key version"),
            ("vault:myvault", "2 ':'-separated parts"),
            ("vault:myvault:k:v:x", "5 ':'-separated parts"),
            ("secret:myvault:k", "unknown key type"),
            ("pkcs11:token=x;object=y", "unknown key type \"pkcs11\""),
            ("https://evil.com/keys/k", "not a Key Vault"),
            (
                "https://myvault.vault.azure.net.evil.com/keys/k",
                "not a Key Vault",
            ),
            ("https://user@myvault.vault.azure.net/keys/k", "'@'"),
            ("https://myvault.vault.azure.net/keys/k?x=1", "'?'"),
            ("https://myvault.vault.azure.net/keys/k#x", "'#'"),
            ("https://myvault.vault.azure.net/keys/%6b", "'%'"),
            ("https://myvault.vault.azure.net/secrets/k", "path"),
            ("https://myvault.vault.azure.net/keys/k/v/x", "key version"),
            ("https://myvault.vault.azure.net:0/keys/k", "port"),
            ("https://myvault.vault.azure.net:99999/keys/k", "port"),
            ("https://a--b.vault.azure.net/keys/k", "vault name"),
            ("https://x.y.vault.azure.net/keys/k", "vault name"),
            ("http://myvault.vault.azure.net/keys/k", "http://"),
            ("vault:my vault:k", "' '"),
            ("vault:myvault:k\n", "'\\n'"),
            ("vault:myvault:k\0", "'\\0'"),
            ("", "empty"),
            ("engine:e_akv:", "empty"),
        ];
        for (input, expected) in cases {
            let err = KeyId::parse(input, &public()).expect_err(input);
            let text = err.to_string();
            assert!(
                text.contains(expected),
                "{input:?}: {text:?} should mention {expected:?}"
            );
            assert!(text.len() < 400, "{text}");
        }
        let err = KeyId::parse(&"v".repeat(5000), &public()).unwrap_err();
        assert!(matches!(err, KeyIdError::TooLong { len: 5000, .. }));
    }

    #[test]
    fn pinning_from_kid_keeps_the_host() {
        let k = KeyId::parse("vault:myvault:mykey", &public()).unwrap();
        let pinned = k
            .pinned_from_kid("https://attacker.example/keys/mykey/78deebed173b48e48f55abf87ed4cf71")
            .unwrap();
        assert_eq!(
            pinned.url(),
            "https://myvault.vault.azure.net/keys/mykey/78deebed173b48e48f55abf87ed4cf71"
        );
        assert!(
            k.pinned_from_kid(
                "https://myvault.vault.azure.net/keys/other/78deebed173b48e48f55abf87ed4cf71"
            )
            .is_err()
        );
        assert!(
            k.pinned_from_kid("https://myvault.vault.azure.net/keys/mykey")
                .is_err()
        );
    }

    fn vault_name() -> impl Strategy<Value = String> {
        "[a-zA-Z]([a-zA-Z0-9]|-[a-zA-Z0-9]){2,11}"
    }

    proptest! {
        #[test]
        fn short_form_round_trips(
            hsm in any::<bool>(),
            vault in vault_name(),
            key in "[a-zA-Z0-9-]{1,127}",
            version in proptest::option::of("[0-9a-f]{32}"),
        ) {
            let ty = if hsm { "managedHsm" } else { "vault" };
            let mut s = format!("{ty}:{vault}:{key}");
            if let Some(v) = &version { s.push(':'); s.push_str(v); }
            let parsed = KeyId::parse(&s, &public()).unwrap();
            prop_assert_eq!(parsed.to_string().to_ascii_lowercase(), s.to_ascii_lowercase());
            let again = KeyId::parse(&parsed.url(), &public()).unwrap();
            prop_assert_eq!(&again, &parsed);
            let prefixed = KeyId::parse(&format!("engine:e_akv:{s}"), &public()).unwrap();
            prop_assert_eq!(prefixed, parsed);
        }

        /// Whatever string is accepted, the URL it produces has a host under an Azure key
        /// suffix or in the allowed list, and carries no userinfo, query or fragment.
        #[test]
        fn accepted_strings_never_leave_the_allowed_hosts(
            input in prop_oneof![
                ".{0,80}",
                "(engine:e_akv:)?(vault|managedhsm|https?)[:/]{1,3}[a-zA-Z0-9.:/@?#%\\[\\]-]{0,60}",
                "https://[a-z0-9.@:-]{0,40}(vault|managedhsm)\\.azure\\.(net|cn)[a-z0-9.:@/?#-]{0,40}",
            ]
        ) {
            let policy = public().allow_host("127.0.0.1:8443").unwrap();
            if let Ok(k) = KeyId::parse(&input, &policy) {
                let url = k.url();
                prop_assert!(!url.contains(['@', '?', '#', '%', '\\']), "{}", url);
                let host = k.endpoint().host();
                let azure = Cloud::classify_host(host).is_some();
                let allowed = host == "127.0.0.1" && k.endpoint().port() == Some(8443);
                prop_assert!(azure || allowed, "{} -> {}", input, url);
                let parsed: http::Uri = url.parse().unwrap();
                prop_assert_eq!(parsed.host().unwrap(), host);
            }
        }
    }
}
