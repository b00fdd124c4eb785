//! Writes and inspection for the `skm` tool: set (tags, content type), list (paging), versions, soft delete
//! and `--force` (delete, then purge).

use std::collections::HashMap;

use async_trait::async_trait;
use azure_security_keyvault_secrets::models::{SecretAttributes, SetSecretParameters};
use azure_security_keyvault_secrets::ResourceExt;
use futures_util::TryStreamExt;
use secrecy::ExposeSecret;

use super::error::{admin_error, describe, is_disabled, who};
use super::{secret_name, AzureBackend, Inner, BINARY_CONTENT_TYPE};
use crate::backend::{
    AdminBackend, AdminError, AdminErrorKind, DeleteMode, ListEntry, PutRequest, SecretValue, VersionInfo,
};

fn admin_name(path: &str) -> Result<String, AdminError> {
    secret_name(path).map_err(|e| AdminError::new(AdminErrorKind::Other, path, e))
}

#[async_trait]
impl AdminBackend for AzureBackend {
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        // Key Vault has no conditional write (no ETag on set): refuse a check-and-set rather than write unchecked.
        crate::backend::cas_unsupported(&request, "Azure Key Vault")?;
        let path = request.path.as_str();
        let name = admin_name(path)?;
        if request.create_only {
            // Key Vault has no conditional create: check first (a concurrent writer can slip in between).
            match self.inner.get(&name, None).await {
                Ok(_) => {
                    return Err(AdminError::new(
                        AdminErrorKind::AlreadyExists,
                        path,
                        format!("{} already exists", who(path, &name)),
                    ))
                }
                Err(e) if e.http_status().map(u16::from) == Some(404) => {}
                // A disabled secret exists too.
                Err(e) if e.http_status().map(u16::from) == Some(403) && is_disabled(&e) => {
                    return Err(AdminError::new(
                        AdminErrorKind::AlreadyExists,
                        path,
                        format!("{} already exists (disabled)", who(path, &name)),
                    ))
                }
                Err(e) => return Err(self.inner.admin_error(&e, path, &name)),
            }
        }
        let (value, content_type) = match &request.value {
            SecretValue::Text(s) => {
                let text = s.expose_secret().to_string();
                let json = text.trim_start().starts_with('{')
                    && serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.is_object());
                (text, if json { "application/json" } else { "text/plain" })
            }
            SecretValue::Binary(b) => {
                use base64::Engine as _;
                (
                    base64::engine::general_purpose::STANDARD.encode(b.expose_secret()),
                    BINARY_CONTENT_TYPE,
                )
            }
        };
        let mut tags: HashMap<String, String> = request.tags.iter().cloned().collect();
        if let Some(description) = &request.description {
            tags.insert("description".into(), description.clone());
        }
        // The declared path, so that `list` can show it even where `-` was in the path itself.
        tags.insert("skm-path".into(), path.to_string());
        let parameters = SetSecretParameters {
            value: Some(value),
            content_type: Some(content_type.to_string()),
            tags: Some(tags),
            secret_attributes: Some(SecretAttributes {
                enabled: Some(true),
                ..Default::default()
            }),
        };
        let body = parameters
            .try_into()
            .map_err(|e: azure_core::Error| AdminError::new(AdminErrorKind::Other, path, e.to_string()))?;
        let secret = self
            .inner
            .client
            .set_secret(&name, body, None)
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| self.inner.admin_error(&e, path, &name))?;
        secret
            .resource_id()
            .ok()
            .and_then(|id| id.version)
            .ok_or_else(|| AdminError::new(AdminErrorKind::Other, path, "Key Vault returned no version id"))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        let mut pages = self
            .inner
            .client
            .list_secret_properties(None)
            .map_err(|e| AdminError::new(AdminErrorKind::Other, prefix, describe(&e)))?
            .into_pages();
        let mut out = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) => return Err(self.inner.admin_error(&e, prefix, "*")),
            };
            let page = page
                .into_model()
                .map_err(|e| AdminError::new(AdminErrorKind::Other, prefix, describe(&e)))?;
            for item in page.value {
                // Secrets skm wrote carry their declared path; others are listed by name.
                let path = match item.tags.as_ref().and_then(|t| t.get("skm-path")) {
                    Some(p) => p.clone(),
                    None => match item.resource_id() {
                        Ok(id) => id.name,
                        Err(_) => continue,
                    },
                };
                if path.starts_with(prefix) {
                    let updated = item.attributes.and_then(|a| a.updated).map(std::time::SystemTime::from);
                    out.push(ListEntry { path, updated });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        let name = admin_name(path)?;
        if let DeleteMode::RecoveryDays(_) = mode {
            return Err(AdminError::new(
                AdminErrorKind::Unsupported,
                path,
                "Key Vault's recovery window is set per vault (7 to 90 days), not per delete",
            ));
        }
        let client = &self.inner.client;
        match client.delete_secret(&name, None).await {
            Ok(_) => {}
            // Already soft-deleted: `--force` still purges it.
            Err(e) if mode == DeleteMode::Force && e.http_status().map(u16::from) == Some(404) => {
                if client.get_deleted_secret(&name, None).await.is_err() {
                    return Err(self.inner.admin_error(&e, path, &name));
                }
            }
            Err(e) => return Err(self.inner.admin_error(&e, path, &name)),
        }
        if mode != DeleteMode::Force {
            return Ok(());
        }
        // Deletion completes asynchronously in Key Vault: purge once the deleted secret is visible.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match client.purge_deleted_secret(&name, None).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(e.http_status().map(u16::from), Some(404 | 409))
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => return Err(self.inner.admin_error(&e, path, &name)),
            }
        }
    }

    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        let name = admin_name(path)?;
        let mut versions = self
            .inner
            .list_versions(&name)
            .await
            .map_err(|e| self.inner.admin_error(&e, path, &name))?;
        if versions.is_empty() {
            return Err(AdminError::new(
                AdminErrorKind::NotFound,
                path,
                format!("{} not found", who(path, &name)),
            ));
        }
        // The current version is what a read without a version returns; ask rather than trust creation
        // times, which Key Vault keeps in whole seconds.
        let current = match self.inner.get(&name, None).await {
            Ok(secret) => secret.resource_id().ok().and_then(|id| id.version),
            Err(_) => None,
        };
        versions.sort_by(|a, b| {
            let a_cur = current.as_deref() == Some(a.id.as_str());
            let b_cur = current.as_deref() == Some(b.id.as_str());
            b_cur.cmp(&a_cur).then(b.created.cmp(&a.created))
        });
        let current = current.or_else(|| versions.first().map(|v| v.id.clone()));
        Ok(versions
            .into_iter()
            .map(|v| {
                let mut stages = Vec::new();
                if current.as_deref() == Some(v.id.as_str()) {
                    stages.push("current".to_string());
                }
                if !v.enabled {
                    stages.push("disabled".to_string());
                }
                VersionInfo {
                    id: v.id,
                    stages,
                    created: v.created.map(std::time::SystemTime::from),
                }
            })
            .collect())
    }
}

impl Inner {
    fn admin_error(&self, e: &azure_core::Error, path: &str, name: &str) -> AdminError {
        admin_error(e, path, name, &self.vault_url)
    }
}
