//! Token sources (PROTOCOL.md section 3) as data: which source to use, the requests each one
//! makes, and how their answers become an [`AccessToken`]. Like the operation driver, a
//! [`TokenFetch`] performs no I/O: it asks its caller to send a request, read a file or run
//! a command, and reads no environment variable (the caller passes a lookup function).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request};
use serde::Deserialize;

use crate::driver::{Transmit, TransportError, TransportErrorKind};
use crate::request::{HttpRequest, HttpResponse};
use crate::response::clean_text;
use crate::token::{AccessToken, Audience, CredentialError};
use crate::{Cloud, b64};

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

/// The default IMDS origin. Tests MUST configure another one.
pub const IMDS_ORIGIN: &str = "http://169.254.169.254";
/// Folder where Azure Arc's agent writes its challenge key files.
pub const ARC_KEY_FOLDER: &str = "/var/opt/azcmagent/tokens";
/// The file whose presence says the Azure Arc agent is installed.
pub const ARC_HIMDS_FILE: &str = "/opt/azcmagent/bin/himds";
/// Largest Arc key file accepted.
pub const ARC_MAX_KEY_LEN: usize = 4096;
/// Largest federated token file accepted.
pub const MAX_ASSERTION_LEN: usize = 64 * 1024;

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
                format!(
                    "{what} {} is not usable: {rule}",
                    crate::key_id::shown(value)
                ),
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

impl UserAssignedId {
    fn query(&self, appservice: bool) -> (&'static str, &str) {
        match self {
            UserAssignedId::ClientId(v) => ("client_id", v),
            UserAssignedId::ObjectId(v) => (
                if appservice {
                    "principal_id"
                } else {
                    "object_id"
                },
                v,
            ),
            UserAssignedId::ResourceId(v) => (
                if appservice {
                    "mi_res_id"
                } else {
                    "msi_res_id"
                },
                v,
            ),
        }
    }
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
}

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
    /// Whether [`ARC_HIMDS_FILE`] exists.
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
                crate::key_id::shown(value)
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

/// The output of a command run for a token source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code (`None` when killed by a signal or the timeout).
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// What a [`TokenFetch`] needs next.
#[derive(Debug)]
#[must_use]
pub enum FetchPoll {
    /// Send this request; answer with [`TokenFetch::handle_response`] or
    /// [`TokenFetch::handle_transport_error`].
    Send(Transmit),
    /// Read this file (at most `max_len` bytes; a longer file is an error); answer with
    /// [`TokenFetch::handle_file`].
    ReadFile {
        /// Path.
        path: PathBuf,
        /// Size limit.
        max_len: usize,
    },
    /// Run this program without a shell; answer with [`TokenFetch::handle_command`].
    RunCommand {
        /// Program, looked up on `PATH`.
        program: String,
        /// Arguments.
        args: Vec<String>,
        /// Kill it after this long.
        timeout: Duration,
    },
    /// Sleep, then poll again.
    Wait(Duration),
    /// Finished.
    Done(Result<AccessToken, CredentialError>),
}

#[derive(Debug)]
enum Step {
    Start,
    AwaitResponse,
    AwaitArcResponse,
    ReadArcKey(PathBuf),
    AwaitArcKey,
    AwaitAssertion,
    AwaitCommand,
    Backoff(Instant),
    Finished,
}

/// Fetches one token for one audience from one source (or a chain).
#[derive(Debug)]
pub struct TokenFetch {
    sources: Vec<CredentialSource>,
    chained: bool,
    index: usize,
    audience: Audience,
    step: Step,
    deadline: Instant,
    retries: u32,
    failures: Vec<String>,
    result: Option<Result<AccessToken, CredentialError>>,
    arc_key: Option<Secret>,
    assertion: Option<Secret>,
    unix_at_start: u64,
}

/// Retries of one managed identity or Entra request.
const MAX_RETRIES: u32 = 3;
/// How long a chain waits for IMDS before deciding it is not on Azure.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl TokenFetch {
    /// Starts a fetch. `budget` bounds the whole fetch; `preferred` is the chain entry that
    /// worked last time (see [`TokenFetch::source_index`]).
    pub fn new(
        source: &CredentialSource,
        audience: &Audience,
        budget: Duration,
        preferred: Option<usize>,
        now: Instant,
        unix_now: u64,
    ) -> TokenFetch {
        let (mut sources, chained) = match source {
            CredentialSource::Chain(list) => (list.clone(), true),
            other => (vec![other.clone()], false),
        };
        if let Some(i) = preferred.filter(|i| *i < sources.len()) {
            // Try the one that worked first, keeping the others as fallbacks.
            let chosen = sources.remove(i);
            sources.insert(0, chosen);
        }
        TokenFetch {
            sources,
            chained,
            index: 0,
            audience: audience.clone(),
            step: Step::Start,
            deadline: now + budget,
            retries: 0,
            failures: Vec::new(),
            result: None,
            arc_key: None,
            assertion: None,
            unix_at_start: unix_now,
        }
    }

    /// After success, the chain entry that produced the token (for `preferred`).
    pub fn source_index(&self, original: &CredentialSource) -> Option<usize> {
        let current = self.sources.get(self.index)?;
        match original {
            CredentialSource::Chain(list) => list.iter().position(|s| s == current),
            _ => Some(0),
        }
    }

    /// The name of the source being tried (or that succeeded).
    pub fn source_name(&self) -> String {
        self.sources
            .get(self.index)
            .map(|s| s.name())
            .unwrap_or_default()
    }

    fn source(&self) -> &CredentialSource {
        &self.sources[self.index]
    }

    /// What to do next.
    pub fn poll(&mut self, now: Instant) -> FetchPoll {
        loop {
            match std::mem::replace(&mut self.step, Step::Finished) {
                Step::Finished => {
                    return FetchPoll::Done(self.result.take().unwrap_or_else(|| {
                        Err(CredentialError::new(
                            "token fetch",
                            "polled after it finished",
                        ))
                    }));
                }
                Step::ReadArcKey(path) => {
                    self.step = Step::AwaitArcKey;
                    return FetchPoll::ReadFile {
                        path,
                        max_len: ARC_MAX_KEY_LEN,
                    };
                }
                Step::Backoff(until) if now < until => {
                    self.step = Step::Backoff(until);
                    return FetchPoll::Wait(until - now);
                }
                Step::Backoff(_) | Step::Start => {
                    if now >= self.deadline {
                        self.fail_source("the time budget for getting a token was spent".into());
                        continue;
                    }
                    return self.begin(now);
                }
                other => {
                    self.step = other;
                    return FetchPoll::Done(Err(CredentialError::new(
                        "token fetch",
                        "polled while an answer is outstanding",
                    )));
                }
            }
        }
    }

    fn timeout(&self, now: Instant) -> Duration {
        let left = self.deadline.saturating_duration_since(now);
        let imds_probe = self.chained
            && self.retries == 0
            && matches!(
                self.source(),
                CredentialSource::ManagedIdentity {
                    endpoint: ManagedIdentityEndpoint::Imds { .. },
                    ..
                }
            );
        if imds_probe {
            left.min(IMDS_PROBE_TIMEOUT)
        } else {
            left.min(Duration::from_secs(10))
        }
    }

    fn begin(&mut self, now: Instant) -> FetchPoll {
        let timeout = self.timeout(now);
        let audience = self.audience.clone();
        match self.source().clone() {
            CredentialSource::Static { token } => {
                // A ready token's lifetime is in its JWT `exp`; an opaque one is assumed to live
                // an hour (a 401 then ends the operation with the service's reason).
                let expires = match jwt_expiry(token.expose()) {
                    Some(exp) if exp <= self.unix_at_start => {
                        self.fail_source(
                            "the token in AZURE_CLI_ACCESS_TOKEN has expired; get a new one".into(),
                        );
                        return self.poll(now);
                    }
                    Some(exp) => Duration::from_secs(exp - self.unix_at_start),
                    None => Duration::from_secs(3600),
                };
                self.succeed(AccessToken::new(token.expose(), now + expires));
                FetchPoll::Done(self.result.take().expect("just set"))
            }
            CredentialSource::AzureCli {
                program,
                tenant,
                timeout,
            } => {
                let mut args: Vec<String> = [
                    "account",
                    "get-access-token",
                    "--output",
                    "json",
                    "--resource",
                    audience.as_str(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if let Some(t) = tenant {
                    args.push("--tenant".into());
                    args.push(t);
                }
                self.step = Step::AwaitCommand;
                FetchPoll::RunCommand {
                    program,
                    args,
                    timeout: timeout.min(self.deadline.saturating_duration_since(now)),
                }
            }
            CredentialSource::WorkloadIdentity { token_file, .. } if self.assertion.is_none() => {
                self.step = Step::AwaitAssertion;
                FetchPoll::ReadFile {
                    path: token_file,
                    max_len: MAX_ASSERTION_LEN,
                }
            }
            source => {
                let request = self.request(&source, self.arc_key.as_ref());
                self.step = if self.arc_key.is_none()
                    && matches!(
                        source,
                        CredentialSource::ManagedIdentity {
                            endpoint: ManagedIdentityEndpoint::Arc { .. },
                            ..
                        }
                    ) {
                    Step::AwaitArcResponse
                } else {
                    Step::AwaitResponse
                };
                FetchPoll::Send(Transmit { request, timeout })
            }
        }
    }

    fn request(&self, source: &CredentialSource, arc_key: Option<&Secret>) -> HttpRequest {
        let resource = self.audience.as_str();
        let mut builder = Request::builder().header("accept", "application/json");
        let body;
        match source {
            CredentialSource::ManagedIdentity { endpoint, identity } => {
                let (url, appservice) = match endpoint {
                    ManagedIdentityEndpoint::Imds { origin } => (
                        format!(
                            "{}/metadata/identity/oauth2/token?api-version=2018-02-01",
                            origin.as_str()
                        ),
                        false,
                    ),
                    ManagedIdentityEndpoint::AppService { endpoint, .. } => (
                        format!("{}?api-version=2019-08-01", endpoint.as_str()),
                        true,
                    ),
                    ManagedIdentityEndpoint::Arc { endpoint, .. } => (
                        format!("{}?api-version=2020-06-01", endpoint.as_str()),
                        false,
                    ),
                };
                let mut url = format!("{url}&resource={}", encode(resource));
                if let Some(id) = identity {
                    let (name, value) = id.query(appservice);
                    url.push_str(&format!("&{name}={}", encode(value)));
                }
                builder = builder.method(Method::GET).uri(url);
                match endpoint {
                    ManagedIdentityEndpoint::AppService { header, .. } => {
                        builder = builder.header("x-identity-header", sensitive(header.expose()));
                    }
                    _ => builder = builder.header("metadata", "true"),
                }
                if let Some(key) = arc_key {
                    builder = builder
                        .header(AUTHORIZATION, sensitive(&format!("Basic {}", key.expose())));
                }
                body = Vec::new();
            }
            CredentialSource::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => {
                builder = builder
                    .method(Method::POST)
                    .uri(format!("{}/{tenant}/oauth2/v2.0/token", authority.as_str()));
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("scope", &self.audience.scope()),
                    ("client_secret", secret.expose()),
                ]);
            }
            CredentialSource::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                ..
            } => {
                builder = builder
                    .method(Method::POST)
                    .uri(format!("{}/{tenant}/oauth2/v2.0/token", authority.as_str()));
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                let assertion = self
                    .assertion
                    .as_ref()
                    .map(|a| a.expose().to_owned())
                    .unwrap_or_default();
                body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("scope", &self.audience.scope()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ]);
            }
            _ => unreachable!("only HTTP sources build requests"),
        }
        builder.body(body).expect("validated parts")
    }

    /// Answers [`FetchPoll::Send`]. `unix_now` is the wall clock in Unix seconds, to read
    /// absolute `expires_on` values.
    pub fn handle_response(&mut self, response: HttpResponse, now: Instant, unix_now: u64) {
        let step = std::mem::replace(&mut self.step, Step::Finished);
        let status = response.status().as_u16();
        match step {
            Step::AwaitArcResponse if status == 401 => {
                let realm = response
                    .headers()
                    .get(http::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(crate::challenge::basic_realm);
                let CredentialSource::ManagedIdentity {
                    endpoint: ManagedIdentityEndpoint::Arc { key_folder, .. },
                    ..
                } = self.source().clone()
                else {
                    unreachable!()
                };
                match realm.map(|r| arc_key_path(&r, &key_folder)) {
                    Some(Ok(path)) => self.step = Step::ReadArcKey(path),
                    Some(Err(e)) => self.fail_source(e),
                    None => self.fail_source(
                        "the 401 answer carries no Basic realm with the key file path".into(),
                    ),
                }
            }
            Step::AwaitResponse | Step::AwaitArcResponse => {
                if (200..300).contains(&status) {
                    match parse_token_response(response.body(), now, unix_now) {
                        Ok(token) => self.succeed(token),
                        Err(e) => self.fail_source(e),
                    }
                    return;
                }
                let detail = token_error_detail(&response);
                let mi = matches!(self.source(), CredentialSource::ManagedIdentity { .. });
                let imds = matches!(
                    self.source(),
                    CredentialSource::ManagedIdentity {
                        endpoint: ManagedIdentityEndpoint::Imds { .. },
                        ..
                    }
                );
                let retryable = matches!(status, 408 | 429 | 500..=599)
                    || (imds && matches!(status, 404 | 410));
                if retryable {
                    self.retry(
                        now,
                        format!("HTTP {status}{detail}"),
                        crate::retry_after(response.headers()),
                    );
                } else if mi && status == 400 {
                    self.fail_source(format!("HTTP 400{detail}: no managed identity is assigned to this machine, or not the one requested (check AZURE_CLIENT_ID / the configured identity)"));
                } else {
                    self.fail_source(format!("HTTP {status}{detail}"));
                }
            }
            _ => self.misuse(),
        }
    }

    /// Answers [`FetchPoll::Send`] when no response arrived.
    pub fn handle_transport_error(&mut self, error: TransportError, now: Instant) {
        match std::mem::replace(&mut self.step, Step::Finished) {
            Step::AwaitResponse | Step::AwaitArcResponse => {
                let imds = matches!(
                    self.source(),
                    CredentialSource::ManagedIdentity {
                        endpoint: ManagedIdentityEndpoint::Imds { .. },
                        ..
                    }
                );
                if self.chained
                    && imds
                    && self.retries == 0
                    && matches!(
                        error.kind,
                        TransportErrorKind::Connect | TransportErrorKind::Timeout
                    )
                {
                    // Probing: no IMDS here, so not on an Azure VM. Move on at once.
                    return self.fail_source(format!(
                        "not reachable ({error}); not running on an Azure VM?"
                    ));
                }
                if matches!(
                    error.kind,
                    TransportErrorKind::Connect
                        | TransportErrorKind::Timeout
                        | TransportErrorKind::Io
                ) {
                    self.retry(now, error.to_string(), None);
                } else {
                    self.fail_source(error.to_string());
                }
            }
            _ => self.misuse(),
        }
    }

    /// The file [`FetchPoll::ReadFile`] asked for, or why it could not be read.
    pub fn handle_file(&mut self, contents: Result<Vec<u8>, String>) {
        match std::mem::replace(&mut self.step, Step::Finished) {
            Step::AwaitArcKey => match contents {
                Ok(bytes) if bytes.len() <= ARC_MAX_KEY_LEN => {
                    let key = String::from_utf8_lossy(&bytes).trim().to_owned();
                    self.arc_key = Some(Secret::new(key));
                    self.step = Step::Start;
                }
                Ok(bytes) => self.fail_source(format!(
                    "the Arc key file is {} bytes, more than {ARC_MAX_KEY_LEN}",
                    bytes.len()
                )),
                Err(e) => self.fail_source(format!("cannot read the Arc key file: {e}")),
            },
            Step::AwaitAssertion => match contents {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
                    if text.is_empty() {
                        self.fail_source("the federated token file is empty".into());
                    } else {
                        self.assertion = Some(Secret::new(text));
                        self.step = Step::Start;
                    }
                }
                Err(e) => self.fail_source(format!("cannot read AZURE_FEDERATED_TOKEN_FILE: {e}")),
            },
            _ => self.misuse(),
        }
    }

    /// The result of [`FetchPoll::RunCommand`], or why it could not run.
    pub fn handle_command(
        &mut self,
        output: Result<CommandOutput, String>,
        now: Instant,
        unix_now: u64,
    ) {
        if !matches!(
            std::mem::replace(&mut self.step, Step::Finished),
            Step::AwaitCommand
        ) {
            return self.misuse();
        }
        match output {
            Err(e) => self.fail_source(format!(
                "cannot run az: {e} (is the Azure CLI installed and on PATH?)"
            )),
            Ok(out) if out.exit_code != Some(0) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let first = stderr
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no message");
                let hint = if stderr.contains("az login") {
                    ""
                } else {
                    " (run 'az login' first)"
                };
                self.fail_source(format!(
                    "az failed ({}): {}{hint}",
                    out.exit_code
                        .map(|c| format!("exit code {c}"))
                        .unwrap_or("killed or timed out".into()),
                    clean_text(first, 300)
                ));
            }
            Ok(out) => match parse_cli_output(&out.stdout, now, unix_now) {
                Ok(token) => self.succeed(token),
                Err(e) => self.fail_source(e),
            },
        }
    }

    fn misuse(&mut self) {
        self.result = Some(Err(CredentialError::new(
            "token fetch",
            "answer handed in without a matching request",
        )));
        self.step = Step::Finished;
    }

    fn succeed(&mut self, token: AccessToken) {
        self.result = Some(Ok(token));
        self.step = Step::Finished;
    }

    fn retry(&mut self, now: Instant, reason: String, server_delay: Option<Duration>) {
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            return self.fail_source(format!("{reason} (after {MAX_RETRIES} retries)"));
        }
        let delay = server_delay.unwrap_or(Duration::from_millis(200) * (1 << (self.retries - 1)));
        match now.checked_add(delay) {
            Some(until) if until < self.deadline => self.step = Step::Backoff(until),
            _ => self.fail_source(format!("{reason}; no time left in the budget to retry")),
        }
    }

    /// Records why this source failed and moves to the next one of a chain.
    fn fail_source(&mut self, reason: String) {
        let name = self.source_name();
        self.failures.push(format!("{name}: {reason}"));
        self.retries = 0;
        self.arc_key = None;
        self.assertion = None;
        if self.index + 1 < self.sources.len() {
            self.index += 1;
            self.step = Step::Start;
        } else {
            let (source, message) = if self.chained {
                (
                    "no credential source worked".to_owned(),
                    self.failures.join("; "),
                )
            } else {
                (name, reason)
            };
            self.result = Some(Err(CredentialError::new(source, message)));
            self.step = Step::Finished;
        }
    }
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish().into_bytes()
}

fn sensitive(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Checks the key file path of Azure Arc's `Basic realm=` challenge: the agent writes the
/// file into its own folder, so anything else is an attempt to make us read (and send) some
/// other file.
pub fn arc_key_path(realm: &str, folder: &Path) -> Result<PathBuf, String> {
    let path = Path::new(realm);
    let refuse = |why: &str| {
        format!(
            "refusing the Arc key file {}: {why}",
            crate::key_id::shown(realm)
        )
    };
    if !path.is_absolute() {
        return Err(refuse("not an absolute path"));
    }
    // Checked on the text: `Path::components` silently drops `.` segments.
    if realm
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(refuse("it contains '.' or '..'"));
    }
    if path.parent() != Some(folder) {
        return Err(refuse(&format!(
            "it is not directly in {}",
            folder.display()
        )));
    }
    if path.extension().and_then(|e| e.to_str()) != Some("key") {
        return Err(refuse("it does not end in .key"));
    }
    Ok(path.to_path_buf())
}

/// A number that token services send either as a JSON number or as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(f64),
    Text(String),
}

impl NumberOrString {
    fn seconds(&self) -> Option<u64> {
        match self {
            NumberOrString::Number(n) if n.is_finite() && *n >= 0.0 => Some(*n as u64),
            NumberOrString::Text(t) => t
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n as u64),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct RawToken {
    access_token: Option<String>,
    expires_in: Option<NumberOrString>,
    expires_on: Option<NumberOrString>,
}

/// Longest token lifetime believed; anything longer is a clock or parsing problem.
const MAX_LIFETIME: u64 = 7 * 24 * 3600;

fn lifetime(
    expires_in: Option<u64>,
    expires_on: Option<u64>,
    unix_now: u64,
) -> Result<Duration, String> {
    let secs = match (expires_in.filter(|s| *s > 0), expires_on) {
        (Some(secs), _) => secs,
        (None, Some(on)) if on > unix_now => on - unix_now,
        (None, Some(_)) => {
            return Err(
                "the token it returned has already expired (check this machine's clock)".into(),
            );
        }
        (None, None) => return Err("the token answer has no expires_in or expires_on".into()),
    };
    Ok(Duration::from_secs(secs.min(MAX_LIFETIME)))
}

/// Parses a token answer of IMDS, App Service, Arc or Entra ID (numbers or strings).
/// Errors never quote the body: it may hold a token.
pub fn parse_token_response(
    body: &[u8],
    now: Instant,
    unix_now: u64,
) -> Result<AccessToken, String> {
    let raw: RawToken = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the token answer is not the expected JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("the token answer has no access_token")?;
    let life = lifetime(
        raw.expires_in.and_then(|v| v.seconds()),
        raw.expires_on.and_then(|v| v.seconds()),
        unix_now,
    )?;
    Ok(AccessToken::new(token, now + life))
}

pub(crate) fn parse_cli_output(
    stdout: &[u8],
    now: Instant,
    unix_now: u64,
) -> Result<AccessToken, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "accessToken")]
        access_token: Option<String>,
        expires_on: Option<NumberOrString>,
    }
    let raw: Raw = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "az printed something that is not its JSON token output ({:?} error)",
            e.classify()
        )
    })?;
    let token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("az printed no accessToken")?;
    // Older az versions print only `expiresOn` in local time, which cannot be read without
    // the time zone: fall back to the JWT's own `exp`.
    let on = raw
        .expires_on
        .and_then(|v| v.seconds())
        .or_else(|| jwt_expiry(&token));
    let life = lifetime(None, on, unix_now).or_else(|_| {
        if on.is_none() {
            Ok(Duration::from_secs(300))
        } else {
            Err("az returned an expired token".to_string())
        }
    })?;
    Ok(AccessToken::new(token, now + life))
}

/// The `exp` claim of a JWT, read without verifying anything (we only need to know when to
/// refresh; the service verifies the token).
pub fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = b64::decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// `": code: description"` from a token service's error body, cleaned and bounded.
fn token_error_detail(response: &HttpResponse) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(response.body()) else {
        return String::new();
    };
    let code = v.get("error").and_then(|e| {
        e.as_str()
            .map(str::to_owned)
            .or_else(|| e.get("code").and_then(|c| c.as_str()).map(str::to_owned))
    });
    let message = v
        .get("error_description")
        .or_else(|| v.get("error").and_then(|e| e.get("message")))
        .or_else(|| v.get("message"))
        .and_then(|m| m.as_str());
    match (code, message) {
        (Some(c), Some(m)) => format!(": {}: {}", clean_text(&c, 80), clean_text(m, 300)),
        (Some(c), None) => format!(": {}", clean_text(&c, 80)),
        (None, Some(m)) => format!(": {}", clean_text(m, 300)),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const UNIX: u64 = 1_700_000_000;

    fn aud() -> Audience {
        Audience::parse("https://vault.azure.net").unwrap()
    }

    fn inputs<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> CredentialInputs<'a> {
        CredentialInputs {
            env,
            arc_agent_installed: false,
            cloud: Cloud::Public,
            identity: None,
            cli_timeout: Duration::from_secs(10),
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn ok(status: u16, body: &str) -> HttpResponse {
        http::Response::builder()
            .status(status)
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    #[test]
    fn token_responses_of_every_shape() {
        let now = Instant::now();
        let text = include_str!("../tests/fixtures/identity/token-response-samples.json");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut parsed = 0;
        for sample in doc["samples"].as_array().unwrap() {
            let Some(response) = sample.get("response") else {
                continue;
            };
            let body = serde_json::to_vec(response).unwrap();
            // The recorded expires_on values are in 2019; read them as of just before.
            let t = parse_token_response(&body, now, 1_560_970_130)
                .unwrap_or_else(|e| panic!("{sample}: {e}"));
            assert!(t.expires_at() > now);
            parsed += 1;
        }
        assert!(parsed >= 3);
        let t = parse_token_response(br#"{"access_token":"a","expires_in":"3599"}"#, now, UNIX)
            .unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(3599));
        let t = parse_token_response(
            br#"{"access_token":"a","expires_in":"","expires_on":1700000600}"#,
            now,
            UNIX,
        )
        .unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(600));
        let err = parse_token_response(
            br#"{"access_token":"secret-abc","expires_in":"soon"}"#,
            now,
            UNIX,
        )
        .unwrap_err();
        assert!(!err.contains("secret-abc"), "{err}");
        assert!(
            parse_token_response(
                br#"{"access_token":"a","expires_on":"1600000000"}"#,
                now,
                UNIX
            )
            .unwrap_err()
            .contains("expired")
        );
        assert!(parse_token_response(br#"{"expires_in":1}"#, now, UNIX).is_err());
        let err = parse_token_response(br#"{"access_token":"secret-abc","#, now, UNIX).unwrap_err();
        assert!(!err.contains("secret-abc"));
    }

    #[test]
    fn auto_selection_follows_the_sdks() {
        let pick = |pairs: &[(&str, &str)], arc: bool| {
            let env = env_of(pairs);
            let mut i = inputs(&env);
            i.arc_agent_installed = arc;
            i.source(SourceChoice::Auto).unwrap()
        };
        let CredentialSource::Chain(c) = pick(&[], false) else {
            panic!()
        };
        assert_eq!(c.len(), 2);
        assert!(
            matches!(&c[0], CredentialSource::ManagedIdentity { endpoint: ManagedIdentityEndpoint::Imds { origin }, identity: None } if origin.as_str() == IMDS_ORIGIN)
        );
        assert!(matches!(&c[1], CredentialSource::AzureCli { .. }));

        let CredentialSource::Chain(c) = pick(
            &[
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/MSI/token/"),
                ("IDENTITY_HEADER", "h"),
            ],
            false,
        ) else {
            panic!()
        };
        assert!(matches!(
            &c[0],
            CredentialSource::ManagedIdentity {
                endpoint: ManagedIdentityEndpoint::AppService { .. },
                ..
            }
        ));

        let CredentialSource::Chain(c) = pick(
            &[
                (
                    "IDENTITY_ENDPOINT",
                    "http://localhost:40342/metadata/identity/oauth2/token",
                ),
                ("IMDS_ENDPOINT", "http://localhost:40342"),
            ],
            false,
        ) else {
            panic!()
        };
        assert!(matches!(
            &c[0],
            CredentialSource::ManagedIdentity {
                endpoint: ManagedIdentityEndpoint::Arc { .. },
                identity: None
            }
        ));
        let CredentialSource::Chain(c) = pick(
            &[(
                "IDENTITY_ENDPOINT",
                "http://localhost:40342/metadata/identity/oauth2/token",
            )],
            true,
        ) else {
            panic!()
        };
        assert!(matches!(
            &c[0],
            CredentialSource::ManagedIdentity {
                endpoint: ManagedIdentityEndpoint::Arc { .. },
                ..
            }
        ));

        let CredentialSource::Chain(c) = pick(
            &[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
                ("AZURE_CLI_ACCESS_TOKEN", "x"),
            ],
            false,
        ) else {
            panic!()
        };
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

        let CredentialSource::Chain(c) = pick(
            &[(
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                "http://127.0.0.1:9999/",
            )],
            false,
        ) else {
            panic!()
        };
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

    fn expect_send(fetch: &mut TokenFetch, now: Instant) -> HttpRequest {
        match fetch.poll(now) {
            FetchPoll::Send(t) => t.request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn expect_done(fetch: &mut TokenFetch, now: Instant) -> Result<AccessToken, CredentialError> {
        match fetch.poll(now) {
            FetchPoll::Done(r) => r,
            other => panic!("expected done, got {other:?}"),
        }
    }

    #[test]
    fn imds_request_retry_and_token() {
        let now = Instant::now();
        let source = CredentialSource::imds(
            "http://127.0.0.1:7777",
            Some(UserAssignedId::ClientId("abc".into())),
        )
        .unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let r = expect_send(&mut f, now);
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:7777/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=abc"
        );
        assert_eq!(r.headers()["metadata"], "true");
        f.handle_response(ok(410, ""), now, UNIX);
        let FetchPoll::Wait(d) = f.poll(now) else {
            panic!()
        };
        let now = now + d;
        let _ = expect_send(&mut f, now);
        f.handle_response(ok(200, r#"{"access_token":"tok","expires_in":"86399","expires_on":"0","token_type":"Bearer"}"#), now, UNIX);
        let t = expect_done(&mut f, now).unwrap();
        assert_eq!(t.secret(), "tok");
        assert_eq!(t.expires_at(), now + Duration::from_secs(86399));
    }

    #[test]
    fn imds_without_identity_is_a_clear_error() {
        let now = Instant::now();
        let source = CredentialSource::imds("http://127.0.0.1:7777", None).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let _ = expect_send(&mut f, now);
        f.handle_response(
            ok(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            ),
            now,
            UNIX,
        );
        let e = expect_done(&mut f, now).unwrap_err().to_string();
        assert!(e.contains("managed identity (IMDS): HTTP 400: invalid_request: Identity not found: no managed identity is assigned"), "{e}");
    }

    #[test]
    fn chain_moves_past_a_missing_imds_and_reports_every_failure() {
        let now = Instant::now();
        let env = env_of(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:1")]);
        let source = inputs(&env).source(SourceChoice::Auto).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let FetchPoll::Send(t) = f.poll(now) else {
            panic!()
        };
        assert_eq!(t.timeout, IMDS_PROBE_TIMEOUT);
        f.handle_transport_error(
            TransportError::new(TransportErrorKind::Connect, "refused"),
            now,
        );
        let FetchPoll::RunCommand { program, args, .. } = f.poll(now) else {
            panic!()
        };
        assert_eq!(program, "az");
        assert_eq!(
            args,
            [
                "account",
                "get-access-token",
                "--output",
                "json",
                "--resource",
                "https://vault.azure.net"
            ]
        );
        f.handle_command(
            Ok(CommandOutput {
                exit_code: Some(1),
                stdout: vec![],
                stderr: b"ERROR: Please run 'az login' to setup account.\n".to_vec(),
            }),
            now,
            UNIX,
        );
        let e = expect_done(&mut f, now).unwrap_err().to_string();
        assert!(
            e.starts_with("no credential source worked: managed identity (IMDS): not reachable"),
            "{e}"
        );
        assert!(
            e.contains(
                "Azure CLI: az failed (exit code 1): ERROR: Please run 'az login' to setup account."
            ),
            "{e}"
        );
    }

    #[test]
    fn chain_remembers_what_worked() {
        let now = Instant::now();
        let env = env_of(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:1")]);
        let source = inputs(&env).source(SourceChoice::Auto).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), Some(1), now, UNIX);
        let FetchPoll::RunCommand { .. } = f.poll(now) else {
            panic!("the preferred source goes first")
        };
        f.handle_command(
            Ok(CommandOutput {
                exit_code: Some(0),
                stdout:
                    br#"{"accessToken":"cli-token","expires_on":1700003600,"tokenType":"Bearer"}"#
                        .to_vec(),
                stderr: vec![],
            }),
            now,
            UNIX,
        );
        let t = expect_done(&mut f, now).unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(3600));
        assert_eq!(f.source_index(&source), Some(1));
    }

    #[test]
    fn app_service_request() {
        let now = Instant::now();
        let env = env_of(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/MSI/token/"),
            ("IDENTITY_HEADER", "hdr-secret"),
            ("AZURE_CLIENT_ID", "cid"),
        ]);
        let source = inputs(&env).source(SourceChoice::ManagedIdentity).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let r = expect_send(&mut f, now);
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:41741/MSI/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net&client_id=cid"
        );
        assert_eq!(r.headers()["x-identity-header"], "hdr-secret");
        assert!(r.headers()["x-identity-header"].is_sensitive());
        f.handle_response(ok(200, r#"{"access_token":"t","expires_on":"1700000900","resource":"https://vault.azure.net","token_type":"Bearer"}"#), now, UNIX);
        assert_eq!(
            expect_done(&mut f, now).unwrap().expires_at(),
            now + Duration::from_secs(900)
        );
    }

    #[test]
    fn arc_challenge_reads_the_key_file_and_retries() {
        let now = Instant::now();
        let folder = PathBuf::from("/tmp/arc-tokens");
        let source = CredentialSource::ManagedIdentity {
            endpoint: ManagedIdentityEndpoint::Arc {
                endpoint: ServiceUrl::parse(
                    "http://127.0.0.1:40342/metadata/identity/oauth2/token",
                    "x",
                )
                .unwrap(),
                key_folder: folder.clone(),
            },
            identity: None,
        };
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let r = expect_send(&mut f, now);
        assert!(r.uri().to_string().contains("api-version=2020-06-01"));
        assert!(r.headers().get("authorization").is_none());
        let challenge = http::Response::builder()
            .status(401)
            .header("www-authenticate", "Basic realm=/tmp/arc-tokens/abc.key")
            .body(Vec::new())
            .unwrap();
        f.handle_response(challenge, now, UNIX);
        let FetchPoll::ReadFile { path, max_len } = f.poll(now) else {
            panic!()
        };
        assert_eq!((path, max_len), (folder.join("abc.key"), ARC_MAX_KEY_LEN));
        f.handle_file(Ok(b"key-secret\n".to_vec()));
        let r = expect_send(&mut f, now);
        assert_eq!(r.headers()["authorization"], "Basic key-secret");
        assert!(r.headers()["authorization"].is_sensitive());
        f.handle_response(
            ok(200, r#"{"access_token":"t","expires_in":"3600"}"#),
            now,
            UNIX,
        );
        assert!(expect_done(&mut f, now).is_ok());
    }

    #[test]
    fn arc_refuses_key_files_elsewhere() {
        let folder = Path::new("/var/opt/azcmagent/tokens");
        assert!(arc_key_path("/var/opt/azcmagent/tokens/a.key", folder).is_ok());
        for bad in [
            "/etc/shadow",
            "/var/opt/azcmagent/tokens/../../../etc/x.key",
            "/var/opt/azcmagent/tokens/sub/a.key",
            "/var/opt/azcmagent/tokens/a.txt",
            "tokens/a.key",
            "/var/opt/azcmagent/tokens/./a.key",
        ] {
            assert!(arc_key_path(bad, folder).is_err(), "{bad}");
        }
    }

    #[test]
    fn workload_identity_rereads_its_file_and_posts_an_assertion() {
        let now = Instant::now();
        let env = env_of(&[
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "cid"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/token"),
            ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:5555/"),
        ]);
        let source = inputs(&env).source(SourceChoice::WorkloadIdentity).unwrap();
        for round in 0..2 {
            let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
            let FetchPoll::ReadFile { path, .. } = f.poll(now) else {
                panic!()
            };
            assert_eq!(path, PathBuf::from("/var/run/secrets/token"));
            f.handle_file(Ok(format!("assertion-{round}").into_bytes()));
            let r = expect_send(&mut f, now);
            assert_eq!(r.method(), "POST");
            assert_eq!(
                r.uri().to_string(),
                "http://127.0.0.1:5555/tenant-1/oauth2/v2.0/token"
            );
            let body = String::from_utf8(r.body().clone()).unwrap();
            assert!(
                body.contains(&format!("client_assertion=assertion-{round}")),
                "{body}"
            );
            assert!(
                body.contains("scope=https%3A%2F%2Fvault.azure.net%2F.default"),
                "{body}"
            );
            assert!(body.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"));
            f.handle_response(
                ok(
                    200,
                    r#"{"token_type":"Bearer","expires_in":86399,"access_token":"t"}"#,
                ),
                now,
                UNIX,
            );
            assert!(expect_done(&mut f, now).is_ok());
        }
    }

    #[test]
    fn client_secret_errors_carry_the_aadsts_reason_not_the_secret() {
        let now = Instant::now();
        let env = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "hunter2-secret"),
            ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:5555"),
        ]);
        let source = inputs(&env).source(SourceChoice::ClientSecret).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let r = expect_send(&mut f, now);
        assert!(String::from_utf8_lossy(r.body()).contains("client_secret=hunter2-secret"));
        f.handle_response(ok(401, r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#), now, UNIX);
        let e = expect_done(&mut f, now).unwrap_err().to_string();
        assert_eq!(
            e,
            "client secret: HTTP 401: invalid_client: AADSTS7000215: Invalid client secret provided."
        );
    }

    #[test]
    fn static_tokens_use_the_jwt_expiry() {
        let now = Instant::now();
        let payload = b64::encode(
            format!(
                r#"{{"aud":"https://vault.azure.net","exp":{}}}"#,
                UNIX + 1234
            )
            .as_bytes(),
        );
        let jwt = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        let source = CredentialSource::Static {
            token: Secret::new(jwt.clone()),
        };
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let t = expect_done(&mut f, now).unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(1234));
        let mut f = TokenFetch::new(
            &source,
            &aud(),
            Duration::from_secs(10),
            None,
            now,
            UNIX + 2000,
        );
        assert!(
            expect_done(&mut f, now)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        let opaque = CredentialSource::Static {
            token: Secret::new("opaque"),
        };
        let mut f = TokenFetch::new(&opaque, &aud(), Duration::from_secs(10), None, now, UNIX);
        assert_eq!(
            expect_done(&mut f, now).unwrap().expires_at(),
            now + Duration::from_secs(3600)
        );
    }

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
