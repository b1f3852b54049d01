//! What a token source is, as configuration: the [`CredentialSource`] enum and the validated
//! values it is made of. Nothing here talks to anything.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::text::shown;
use crate::token::CredentialError;

/// A secret string (client secret, token, key-file contents): never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret. Callers MUST NOT log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A validated URL of a token service (IMDS, App Service, Arc, Entra authority): `http` or
/// `https`, a valid host, an optional plain path, no userinfo, query or fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUrl(String);

impl ServiceUrl {
    /// Validates a URL; `what` names it in the error.
    pub fn parse(value: &str, what: &str) -> Result<ServiceUrl, CredentialError> {
        let err = |rule: &str| {
            CredentialError::new(
                "configuration",
                format!("{what} {} is not usable: {rule}", shown(value)),
            )
        };
        let value = value.trim();
        let rest = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"))
            .ok_or_else(|| err("it must start with http:// or https://"))?;
        if !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/:[]".contains(&b))
        {
            return Err(err(
                "only letters, digits and - . _ ~ / : [ ] may appear (no user, query or fragment)",
            ));
        }
        let (authority, _) = rest.split_once('/').unwrap_or((rest, ""));
        crate::key_id::parse_authority(authority).map_err(|e| err(&e.to_string()))?;
        Ok(ServiceUrl(value.trim_end_matches('/').to_owned()))
    }

    /// The URL without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which user-assigned managed identity to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserAssignedId {
    /// By client (application) id.
    ClientId(String),
    /// By object (principal) id.
    ObjectId(String),
    /// By Azure resource id.
    ResourceId(String),
}

/// Where a managed identity token comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagedIdentityEndpoint {
    /// The Azure Instance Metadata Service (VMs, VM scale sets, AKS nodes).
    Imds {
        /// Origin, `http://169.254.169.254` unless overridden.
        origin: ServiceUrl,
    },
    /// App Service / Functions / Container Apps: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`.
    AppService {
        /// `IDENTITY_ENDPOINT`.
        endpoint: ServiceUrl,
        /// `IDENTITY_HEADER`.
        header: Secret,
    },
    /// Azure Arc-connected machines: `IDENTITY_ENDPOINT` with the key-file challenge.
    Arc {
        /// `IDENTITY_ENDPOINT`.
        endpoint: ServiceUrl,
        /// Folder the challenge's key file must be in (the Arc agent's folder; tests change it).
        key_folder: PathBuf,
    },
}

/// A token source.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialSource {
    /// Managed identity.
    ManagedIdentity {
        /// Which endpoint.
        endpoint: ManagedIdentityEndpoint,
        /// User-assigned identity, or system-assigned when `None`.
        identity: Option<UserAssignedId>,
    },
    /// Entra ID client credentials with a client secret.
    ClientSecret {
        /// Authority host, e.g. `https://login.microsoftonline.com`.
        authority: ServiceUrl,
        /// Tenant id or domain.
        tenant: String,
        /// Application (client) id.
        client_id: String,
        /// The secret.
        secret: Secret,
    },
    /// Workload identity: a federated token file exchanged at Entra ID.
    WorkloadIdentity {
        /// Authority host.
        authority: ServiceUrl,
        /// Tenant.
        tenant: String,
        /// Client id.
        client_id: String,
        /// `AZURE_FEDERATED_TOKEN_FILE`, re-read on every fetch (it rotates).
        token_file: PathBuf,
    },
    /// `az account get-access-token`.
    AzureCli {
        /// The program (`az`).
        program: String,
        /// Tenant to ask for, if any.
        tenant: Option<String>,
        /// How long the command may run.
        timeout: Duration,
    },
    /// A ready token (`AZURE_CLI_ACCESS_TOKEN`, as Microsoft's engine accepted).
    Static {
        /// The token.
        token: Secret,
    },
    /// Try each in order; the first that works is used from then on.
    Chain(Vec<CredentialSource>),
}

impl CredentialSource {
    /// A short name for logs and errors.
    pub fn name(&self) -> String {
        match self {
            CredentialSource::ManagedIdentity { endpoint, .. } => match endpoint {
                ManagedIdentityEndpoint::Imds { .. } => "managed identity (IMDS)".into(),
                ManagedIdentityEndpoint::AppService { .. } => {
                    "managed identity (App Service)".into()
                }
                ManagedIdentityEndpoint::Arc { .. } => "managed identity (Azure Arc)".into(),
            },
            CredentialSource::ClientSecret { .. } => "client secret".into(),
            CredentialSource::WorkloadIdentity { .. } => "workload identity".into(),
            CredentialSource::AzureCli { .. } => "Azure CLI".into(),
            CredentialSource::Static { .. } => "static token (AZURE_CLI_ACCESS_TOKEN)".into(),
            CredentialSource::Chain(list) => format!(
                "auto ({})",
                list.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Managed identity through IMDS at `origin`.
    pub fn imds(origin: &str, identity: Option<UserAssignedId>) -> Result<Self, CredentialError> {
        Ok(CredentialSource::ManagedIdentity {
            endpoint: ManagedIdentityEndpoint::Imds {
                origin: ServiceUrl::parse(origin, "IMDS endpoint")?,
            },
            identity,
        })
    }

    /// Whether this is managed identity through IMDS (whose absence a chain probes for).
    pub(super) fn is_imds(&self) -> bool {
        matches!(
            self,
            CredentialSource::ManagedIdentity {
                endpoint: ManagedIdentityEndpoint::Imds { .. },
                ..
            }
        )
    }

    /// Whether this is managed identity through Azure Arc (which answers first with a
    /// challenge).
    pub(super) fn is_arc(&self) -> bool {
        matches!(
            self,
            CredentialSource::ManagedIdentity {
                endpoint: ManagedIdentityEndpoint::Arc { .. },
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls() {
        assert!(ServiceUrl::parse("http://169.254.169.254", "x").is_ok());
        assert!(ServiceUrl::parse("https://login.microsoftonline.com/", "x").is_ok());
        for bad in [
            "ftp://x",
            "http://a@b",
            "http://x/?q",
            "http://x/#f",
            "http://x/%2e",
            "http:// x",
        ] {
            assert!(ServiceUrl::parse(bad, "x").is_err(), "{bad}");
        }
    }
}
