//! Choosing the token source: an explicit choice, or `auto`, which follows the Azure SDKs'
//! order (client secret, workload identity, managed identity, Azure CLI) by what the
//! environment holds. Explicit settings win over variables; every value read is validated
//! before it can reach a URL.

use std::path::PathBuf;
use std::time::Duration;

use super::arc::ARC_KEY_FOLDER;
use super::managed_identity::IMDS_ORIGIN;
use super::source::{
    CredentialSource, ManagedIdentityEndpoint, Secret, ServiceUrl, UserAssignedId,
};
use crate::Cloud;
use crate::text::shown;
use crate::token::CredentialError;

/// Which source the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceChoice {
    /// Pick like the Azure SDKs.
    Auto,
    /// Managed identity (IMDS, App Service or Arc, by environment).
    ManagedIdentity,
    /// Workload identity.
    WorkloadIdentity,
    /// Client secret.
    ClientSecret,
    /// Azure CLI.
    AzureCli,
    /// `AZURE_CLI_ACCESS_TOKEN`.
    Static,
}

impl SourceChoice {
    /// Parses `auto`, `managed-identity`/`msi`/`imds`, `workload-identity`, `client-secret`,
    /// `cli`/`azure-cli`, `static`/`env-token` (case-insensitive, `_` or `-`).
    pub fn parse(value: &str) -> Option<SourceChoice> {
        match value.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" | "default" | "" => Some(SourceChoice::Auto),
            "managed-identity" | "managedidentity" | "msi" | "imds" => {
                Some(SourceChoice::ManagedIdentity)
            }
            "workload-identity" | "workloadidentity" => Some(SourceChoice::WorkloadIdentity),
            "client-secret" | "clientsecret" | "environment" => Some(SourceChoice::ClientSecret),
            "cli" | "azure-cli" | "azurecli" | "az" => Some(SourceChoice::AzureCli),
            "static" | "env-token" | "token" => Some(SourceChoice::Static),
            _ => None,
        }
    }
}

/// What the caller knows of its environment: variables (through `env`) and whether the
/// Azure Arc agent is installed. Explicit settings win over variables.
pub struct CredentialInputs<'a> {
    /// Reads an environment variable (the caller's `std::env::var` or a test map).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether [`ARC_HIMDS_FILE`](super::ARC_HIMDS_FILE) exists.
    pub arc_agent_installed: bool,
    /// The cloud (for the default authority host).
    pub cloud: Cloud,
    /// A user-assigned identity chosen explicitly (overrides `AZURE_CLIENT_ID` for MI).
    pub identity: Option<UserAssignedId>,
    /// Timeout for the Azure CLI.
    pub cli_timeout: Duration,
}

fn non_empty(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Tenant and client ids end up in URLs and forms: plain characters only.
fn validate_id(value: &str, what: &str) -> Result<String, CredentialError> {
    if !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        Ok(value.to_owned())
    } else {
        Err(CredentialError::new(
            "configuration",
            format!(
                "{what} {} must be letters, digits, '-', '.' or '_'",
                shown(value)
            ),
        ))
    }
}

impl CredentialInputs<'_> {
    /// Builds the source for `choice`, or explains which settings are missing.
    pub fn source(&self, choice: SourceChoice) -> Result<CredentialSource, CredentialError> {
        let env = self.env;
        match choice {
            SourceChoice::Static => match non_empty(env, "AZURE_CLI_ACCESS_TOKEN") {
                Some(token) => Ok(CredentialSource::Static {
                    token: Secret::new(token),
                }),
                None => Err(CredentialError::new(
                    "static token",
                    "AZURE_CLI_ACCESS_TOKEN is not set",
                )),
            },
            SourceChoice::AzureCli => Ok(CredentialSource::AzureCli {
                program: "az".into(),
                tenant: non_empty(env, "AZURE_TENANT_ID")
                    .map(|t| validate_id(&t, "AZURE_TENANT_ID"))
                    .transpose()?,
                timeout: self.cli_timeout,
            }),
            SourceChoice::ClientSecret => {
                let (tenant, client_id) = self.tenant_and_client("client secret")?;
                let secret = non_empty(env, "AZURE_CLIENT_SECRET").ok_or_else(|| {
                    CredentialError::new("client secret", "AZURE_CLIENT_SECRET is not set")
                })?;
                Ok(CredentialSource::ClientSecret {
                    authority: self.authority()?,
                    tenant,
                    client_id,
                    secret: Secret::new(secret),
                })
            }
            SourceChoice::WorkloadIdentity => {
                let (tenant, client_id) = self.tenant_and_client("workload identity")?;
                let file = non_empty(env, "AZURE_FEDERATED_TOKEN_FILE").ok_or_else(|| {
                    CredentialError::new(
                        "workload identity",
                        "AZURE_FEDERATED_TOKEN_FILE is not set",
                    )
                })?;
                Ok(CredentialSource::WorkloadIdentity {
                    authority: self.authority()?,
                    tenant,
                    client_id,
                    token_file: PathBuf::from(file),
                })
            }
            SourceChoice::ManagedIdentity => self.managed_identity(),
            SourceChoice::Auto => {
                // The SDKs' order: environment (client secret), workload identity, managed
                // identity, Azure CLI. A ready token, when given, is what the operator meant.
                let mut chain = Vec::new();
                if non_empty(env, "AZURE_CLI_ACCESS_TOKEN").is_some() {
                    chain.push(self.source(SourceChoice::Static)?);
                }
                if non_empty(env, "AZURE_CLIENT_SECRET").is_some() {
                    chain.push(self.source(SourceChoice::ClientSecret)?);
                }
                if non_empty(env, "AZURE_FEDERATED_TOKEN_FILE").is_some() {
                    chain.push(self.source(SourceChoice::WorkloadIdentity)?);
                }
                chain.push(self.managed_identity()?);
                chain.push(self.source(SourceChoice::AzureCli)?);
                Ok(CredentialSource::Chain(chain))
            }
        }
    }

    fn tenant_and_client(&self, what: &str) -> Result<(String, String), CredentialError> {
        let tenant = non_empty(self.env, "AZURE_TENANT_ID")
            .ok_or_else(|| CredentialError::new(what, "AZURE_TENANT_ID is not set"))?;
        let client = non_empty(self.env, "AZURE_CLIENT_ID")
            .ok_or_else(|| CredentialError::new(what, "AZURE_CLIENT_ID is not set"))?;
        Ok((
            validate_id(&tenant, "AZURE_TENANT_ID")?,
            validate_id(&client, "AZURE_CLIENT_ID")?,
        ))
    }

    fn authority(&self) -> Result<ServiceUrl, CredentialError> {
        match non_empty(self.env, "AZURE_AUTHORITY_HOST") {
            Some(host) => ServiceUrl::parse(&host, "AZURE_AUTHORITY_HOST"),
            None => ServiceUrl::parse(self.cloud.authority_host(), "authority"),
        }
    }

    /// App Service when it left its endpoint and header, Arc when its agent is here, IMDS
    /// otherwise (also on AKS with pod identity, at its own address).
    fn managed_identity(&self) -> Result<CredentialSource, CredentialError> {
        let env = self.env;
        let identity = match &self.identity {
            Some(id) => Some(id.clone()),
            None => non_empty(env, "AZURE_CLIENT_ID")
                .map(|c| validate_id(&c, "AZURE_CLIENT_ID").map(UserAssignedId::ClientId))
                .transpose()?,
        };
        let endpoint = match (
            non_empty(env, "IDENTITY_ENDPOINT"),
            non_empty(env, "IDENTITY_HEADER"),
            non_empty(env, "IMDS_ENDPOINT"),
        ) {
            (Some(endpoint), Some(header), _) => ManagedIdentityEndpoint::AppService {
                endpoint: ServiceUrl::parse(&endpoint, "IDENTITY_ENDPOINT")?,
                header: Secret::new(header),
            },
            (Some(endpoint), None, imds) if imds.is_some() || self.arc_agent_installed => {
                ManagedIdentityEndpoint::Arc {
                    endpoint: ServiceUrl::parse(&endpoint, "IDENTITY_ENDPOINT")?,
                    key_folder: PathBuf::from(ARC_KEY_FOLDER),
                }
            }
            _ => ManagedIdentityEndpoint::Imds {
                origin: match non_empty(env, "AZURE_POD_IDENTITY_AUTHORITY_HOST") {
                    Some(host) => ServiceUrl::parse(&host, "AZURE_POD_IDENTITY_AUTHORITY_HOST")?,
                    None => ServiceUrl::parse(IMDS_ORIGIN, "IMDS endpoint")?,
                },
            },
        };
        // Arc serves only the system-assigned identity: a client id there is a mistake.
        let identity = if matches!(endpoint, ManagedIdentityEndpoint::Arc { .. }) {
            None
        } else {
            identity
        };
        Ok(CredentialSource::ManagedIdentity { endpoint, identity })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::credential::TokenFetch;
    use crate::credential::test_support::*;

    #[test]
    fn auto_selection_follows_the_sdks() {
        let pick = |pairs: &[(&str, &str)], arc: bool| {
            let env = env_of(pairs);
            let mut i = inputs(&env);
            i.arc_agent_installed = arc;
            match i.source(SourceChoice::Auto).unwrap() {
                CredentialSource::Chain(chain) => chain,
                other => panic!("auto gives a chain, not {other:?}"),
            }
        };
        let c = pick(&[], false);
        assert_eq!(c.len(), 2);
        assert!(
            matches!(&c[0], CredentialSource::ManagedIdentity { endpoint: ManagedIdentityEndpoint::Imds { origin }, identity: None } if origin.as_str() == IMDS_ORIGIN)
        );
        assert!(matches!(&c[1], CredentialSource::AzureCli { .. }));

        let c = pick(
            &[
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/MSI/token/"),
                ("IDENTITY_HEADER", "h"),
            ],
            false,
        );
        assert!(matches!(
            &c[0],
            CredentialSource::ManagedIdentity {
                endpoint: ManagedIdentityEndpoint::AppService { .. },
                ..
            }
        ));

        let c = pick(
            &[
                (
                    "IDENTITY_ENDPOINT",
                    "http://localhost:40342/metadata/identity/oauth2/token",
                ),
                ("IMDS_ENDPOINT", "http://localhost:40342"),
            ],
            false,
        );
        assert!(matches!(
            &c[0],
            CredentialSource::ManagedIdentity {
                endpoint: ManagedIdentityEndpoint::Arc { .. },
                identity: None
            }
        ));
        let c = pick(
            &[(
                "IDENTITY_ENDPOINT",
                "http://localhost:40342/metadata/identity/oauth2/token",
            )],
            true,
        );
        assert!(matches!(
            &c[0],
            CredentialSource::ManagedIdentity {
                endpoint: ManagedIdentityEndpoint::Arc { .. },
                ..
            }
        ));

        let c = pick(
            &[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
                ("AZURE_CLI_ACCESS_TOKEN", "x"),
            ],
            false,
        );
        let names: Vec<String> = c.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "static token (AZURE_CLI_ACCESS_TOKEN)",
                "client secret",
                "workload identity",
                "managed identity (IMDS)",
                "Azure CLI"
            ]
        );
        assert!(
            matches!(&c[3], CredentialSource::ManagedIdentity { identity: Some(UserAssignedId::ClientId(id)), .. } if id == "c")
        );

        let c = pick(
            &[(
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                "http://127.0.0.1:9999/",
            )],
            false,
        );
        assert!(
            matches!(&c[0], CredentialSource::ManagedIdentity { endpoint: ManagedIdentityEndpoint::Imds { origin }, .. } if origin.as_str() == "http://127.0.0.1:9999")
        );
    }

    #[test]
    fn explicit_choices_say_what_is_missing() {
        let env = env_of(&[("AZURE_TENANT_ID", "t")]);
        let i = inputs(&env);
        assert_eq!(
            i.source(SourceChoice::ClientSecret)
                .unwrap_err()
                .to_string(),
            "client secret: AZURE_CLIENT_ID is not set"
        );
        assert_eq!(
            i.source(SourceChoice::Static).unwrap_err().to_string(),
            "static token: AZURE_CLI_ACCESS_TOKEN is not set"
        );
        let env = env_of(&[
            ("AZURE_TENANT_ID", "t/../x"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]);
        assert!(
            inputs(&env)
                .source(SourceChoice::ClientSecret)
                .unwrap_err()
                .to_string()
                .contains("AZURE_TENANT_ID")
        );
        let env = env_of(&[("AZURE_AUTHORITY_HOST", "https://user@evil/")]);
        assert!(
            inputs(&env).source(SourceChoice::Auto).is_ok(),
            "authority only matters for Entra sources"
        );
        assert_eq!(
            SourceChoice::parse("Managed_Identity"),
            Some(SourceChoice::ManagedIdentity)
        );
        assert_eq!(SourceChoice::parse("kerberos"), None);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let env = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "hunter2-secret"),
        ]);
        let s = inputs(&env).source(SourceChoice::ClientSecret).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let fetch = TokenFetch::new(
            &s,
            &aud(),
            Duration::from_secs(5),
            None,
            Instant::now(),
            UNIX,
        );
        assert!(!format!("{fetch:?}").contains("hunter2"));
    }
}
