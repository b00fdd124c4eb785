//! The credential chain: the Rust SDK has no `DefaultAzureCredential`, so skm builds one.
//!
//! Order (documented, fixed): environment client secret → workload identity → managed identity → Azure CLI /
//! Azure Developer CLI. The first step that returns a token is used from then on; when none does, the error
//! lists what each step said. `SKM_AZURE_CREDENTIAL=env|workload|managed|cli` keeps only that step.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::ClientOptions;
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, DeveloperToolsCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};

/// One step of the credential chain, as `SKM_AZURE_CREDENTIAL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// `env`: a service principal's client secret from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`.
    Env,
    /// `workload`: Kubernetes workload identity, `AZURE_FEDERATED_TOKEN_FILE` (with `AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID`).
    Workload,
    /// `managed`: the managed identity of the VM, App Service or container; user-assigned when
    /// `AZURE_CLIENT_ID` is set.
    Managed,
    /// `cli`: the developer's `az login` (then `azd auth login`).
    Cli,
}

impl CredentialKind {
    /// Every step, in the chain's order.
    pub const ALL: [CredentialKind; 4] = [
        CredentialKind::Env,
        CredentialKind::Workload,
        CredentialKind::Managed,
        CredentialKind::Cli,
    ];

    /// The name `SKM_AZURE_CREDENTIAL` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Env => "env",
            CredentialKind::Workload => "workload",
            CredentialKind::Managed => "managed",
            CredentialKind::Cli => "cli",
        }
    }

    fn title(self) -> &'static str {
        match self {
            CredentialKind::Env => "environment client secret",
            CredentialKind::Workload => "workload identity",
            CredentialKind::Managed => "managed identity",
            CredentialKind::Cli => "Azure CLI / Azure Developer CLI",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CredentialKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "env" | "environment" => Ok(CredentialKind::Env),
            "workload" | "workload-identity" => Ok(CredentialKind::Workload),
            "managed" | "managed-identity" | "msi" => Ok(CredentialKind::Managed),
            "cli" | "az" | "azd" => Ok(CredentialKind::Cli),
            other => Err(format!(
                "SKM_AZURE_CREDENTIAL=`{other}` is not one of env, workload, managed, cli"
            )),
        }
    }
}

/// What the chain is built from: the variables it read and the HTTP options its credentials share.
pub(crate) struct ChainConfig<'a> {
    pub(crate) var: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) only: Option<CredentialKind>,
    /// Options (authority host, transport, retries) for the credentials that call Entra ID.
    pub(crate) options: ClientOptions,
    /// Options for the managed-identity endpoint: a short timeout, so that off Azure the probe fails fast.
    pub(crate) probe_options: ClientOptions,
}

/// A step that could be built, or why it could not (shown in the aggregated error).
enum Step {
    Ready(Arc<dyn TokenCredential>),
    Unavailable(String),
}

/// The chain, as a [`TokenCredential`] the SDK's clients take.
pub(crate) struct ChainCredential {
    steps: Vec<(CredentialKind, Step)>,
    /// The index of the step that first returned a token; `usize::MAX` before any did.
    chosen: AtomicUsize,
}

impl fmt::Debug for ChainCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<&str> = self.steps.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ChainCredential")
            .field("steps", &steps)
            .field("chosen", &self.chosen())
            .finish()
    }
}

impl ChainCredential {
    pub(crate) fn build(config: ChainConfig<'_>) -> ChainCredential {
        let set = |name: &str| (config.var)(name).filter(|v| !v.trim().is_empty());
        let kinds: Vec<CredentialKind> = match config.only {
            Some(kind) => vec![kind],
            None => CredentialKind::ALL.to_vec(),
        };
        let mut steps = Vec::new();
        for kind in kinds {
            let step = match kind {
                CredentialKind::Env => {
                    let missing: Vec<&str> = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]
                        .into_iter()
                        .filter(|n| set(n).is_none())
                        .collect();
                    if missing.is_empty() {
                        let tenant = set("AZURE_TENANT_ID").unwrap_or_default();
                        let client = set("AZURE_CLIENT_ID").unwrap_or_default();
                        let secret = Secret::new(set("AZURE_CLIENT_SECRET").unwrap_or_default());
                        ready(ClientSecretCredential::new(
                            &tenant,
                            client,
                            secret,
                            Some(ClientSecretCredentialOptions {
                                client_options: config.options.clone(),
                            }),
                        ))
                    } else {
                        Step::Unavailable(format!("{} not set", missing.join(", ")))
                    }
                }
                CredentialKind::Workload => match set("AZURE_FEDERATED_TOKEN_FILE") {
                    None => Step::Unavailable("AZURE_FEDERATED_TOKEN_FILE not set".into()),
                    Some(file) => {
                        let missing: Vec<&str> = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID"]
                            .into_iter()
                            .filter(|n| set(n).is_none())
                            .collect();
                        if missing.is_empty() {
                            ready(WorkloadIdentityCredential::new(Some(
                                WorkloadIdentityCredentialOptions {
                                    credential_options: ClientAssertionCredentialOptions {
                                        client_options: config.options.clone(),
                                    },
                                    client_id: set("AZURE_CLIENT_ID"),
                                    tenant_id: set("AZURE_TENANT_ID"),
                                    token_file_path: Some(PathBuf::from(file)),
                                },
                            )))
                        } else {
                            Step::Unavailable(format!(
                                "AZURE_FEDERATED_TOKEN_FILE is set but {} not",
                                missing.join(", ")
                            ))
                        }
                    }
                },
                CredentialKind::Managed => {
                    ready(ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                        user_assigned_id: set("AZURE_CLIENT_ID").map(UserAssignedId::ClientId),
                        client_options: config.probe_options.clone(),
                    })))
                }
                CredentialKind::Cli => ready(DeveloperToolsCredential::new(None)),
            };
            steps.push((kind, step));
        }
        ChainCredential {
            steps,
            chosen: AtomicUsize::new(usize::MAX),
        }
    }

    /// The step that returned a token, once one did.
    pub(crate) fn chosen(&self) -> Option<CredentialKind> {
        self.steps
            .get(self.chosen.load(Ordering::SeqCst))
            .map(|(kind, _)| *kind)
    }
}

fn ready<T: TokenCredential + 'static>(built: azure_core::Result<Arc<T>>) -> Step {
    match built {
        Ok(credential) => Step::Ready(credential),
        Err(e) => Step::Unavailable(one_line(&e.to_string())),
    }
}

/// The first line of an SDK message, without its troubleshooting link: the aggregated error stays readable.
fn one_line(message: &str) -> String {
    let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    first
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string()
}

#[async_trait]
impl TokenCredential for ChainCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some((_, Step::Ready(credential))) = self.steps.get(self.chosen.load(Ordering::SeqCst)) {
            return credential.get_token(scopes, options).await;
        }
        let mut said = Vec::new();
        for (index, (kind, step)) in self.steps.iter().enumerate() {
            match step {
                Step::Unavailable(why) => said.push(format!("{} ({kind}): {why}", kind.title())),
                Step::Ready(credential) => match credential.get_token(scopes, options.clone()).await {
                    Ok(token) => {
                        self.chosen.store(index, Ordering::SeqCst);
                        tracing::debug!(target: "skm", credential = %kind, "Azure credential chain: using {}", kind.title());
                        return Ok(token);
                    }
                    Err(e) => said.push(format!("{} ({kind}): {}", kind.title(), one_line(&e.to_string()))),
                },
            }
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            format!(
                "no Azure credential worked (set SKM_AZURE_CREDENTIAL=env|workload|managed|cli to use one):\n  - {}",
                said.join("\n  - ")
            ),
        ))
    }
}
