//! The KV engine's admin side: writes (with check-and-set), listings, deletes and version listings.

use std::collections::HashMap;

use serde_json::Value;
use vaultrs::client::VaultClient;

use super::config::KvVersion;
use super::errors::VaultFailure;
use super::kv::*;
use super::Inner;
use crate::backend::{AdminError, AdminErrorKind, DeleteMode, FailureKind, ListEntry, PutRequest, VersionInfo};

impl Inner {
    async fn admin_client(&self, path: &str) -> Result<(std::sync::Arc<VaultClient>, KvVersion), AdminError> {
        let client = self.client().await.map_err(|e| {
            let kind = match e.kind {
                FailureKind::Forbidden => AdminErrorKind::Forbidden,
                FailureKind::Unavailable | FailureKind::Throttled => AdminErrorKind::Unavailable,
                _ => AdminErrorKind::Other,
            };
            AdminError::new(kind, path, e.detail)
        })?;
        let kv = self.kv_version(&client).await;
        Ok((client, kv))
    }

    fn admin_path<'p>(&self, path: &'p str) -> Result<&'p str, AdminError> {
        clean_path(path).map_err(|e| AdminError::new(AdminErrorKind::Other, path, e))
    }

    fn context(&self, kv: KvVersion, op: &str) -> String {
        format!("{op} in {kv} mount `{}`{}", self.mount, self.namespace_note())
    }

    /// Writes a secret; KV v2 returns the new version number.
    pub(crate) async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        let path = self.admin_path(&request.path)?.to_string();
        let (client, kv) = self.admin_client(&path).await?;
        let encoded = url_path(&path);
        let data = encode(&request.value);
        match kv {
            KvVersion::V2 => {
                // cas=0: the server refuses the write if the path has any version; cas=N: unless N is current.
                let cas = match (&request.expected_version, request.create_only) {
                    (Some(v), _) => Some(v.parse::<u32>().map_err(|_| {
                        AdminError::new(
                            AdminErrorKind::Conflict,
                            &path,
                            "check-and-set: a KV v2 version is a number; the expected version is not one",
                        )
                    })?),
                    (None, true) => Some(0),
                    (None, false) => None,
                };
                let written = vaultrs::api::exec_with_result(
                    &*client,
                    RawWrite {
                        mount: self.mount.clone(),
                        path: encoded.clone(),
                        body: raw_body(&request.value, cas),
                    },
                )
                .await;
                let meta = written.map_err(|e| {
                    let f = VaultFailure::from_client(&e);
                    // OpenBao and Vault answer a check-and-set mismatch with 400 "check-and-set parameter did not match".
                    let cas_refused = f.message.contains("check-and-set") || f.status == Some(412);
                    match (cas_refused, request.expected_version.is_some()) {
                        (true, true) => AdminError::new(
                            AdminErrorKind::Conflict,
                            &path,
                            format!(
                                "{}: the current version is not the expected one (check-and-set refused the write)",
                                self.context(kv, "write")
                            ),
                        ),
                        (true, false) => AdminError::new(
                            AdminErrorKind::AlreadyExists,
                            &path,
                            format!(
                                "{}: the path already exists (check-and-set refused the write)",
                                self.context(kv, "create")
                            ),
                        ),
                        _ => f.into_admin(&path, &self.context(kv, "write")),
                    }
                })?;
                if !request.tags.is_empty() || request.description.is_some() {
                    let mut custom: HashMap<String, String> = request.tags.iter().cloned().collect();
                    if let Some(d) = &request.description {
                        custom.insert("description".into(), d.clone());
                    }
                    let mut opts = vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder();
                    opts.custom_metadata(custom);
                    vaultrs::kv2::set_metadata(&*client, &self.mount, &encoded, Some(&mut opts))
                        .await
                        .map_err(|e| {
                            VaultFailure::from_client(&e).into_admin(&path, &self.context(kv, "write metadata"))
                        })?;
                }
                Ok(meta.version.to_string())
            }
            KvVersion::V1 => {
                crate::backend::cas_unsupported(&request, "a KV v1 mount")?;
                if !request.tags.is_empty() || request.description.is_some() {
                    return Err(AdminError::new(
                        AdminErrorKind::Unsupported,
                        &path,
                        "a KV v1 mount has no metadata for tags or a description: write without them, or use KV v2",
                    ));
                }
                if request.create_only {
                    // KV v1 has no check-and-set: check first (a concurrent writer can still slip in between).
                    match vaultrs::kv1::get_raw(&*client, &self.mount, &encoded).await {
                        Ok(_) => {
                            return Err(AdminError::new(
                                AdminErrorKind::AlreadyExists,
                                &path,
                                format!("{}: the path already exists", self.context(kv, "create")),
                            ))
                        }
                        Err(e) => {
                            let f = VaultFailure::from_client(&e);
                            if f.kind() != FailureKind::NotFound {
                                return Err(f.into_admin(&path, &self.context(kv, "create")));
                            }
                        }
                    }
                }
                let map: HashMap<&str, Value> = data.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                vaultrs::kv1::set(&*client, &self.mount, &encoded, &map)
                    .await
                    .map_err(|e| VaultFailure::from_client(&e).into_admin(&path, &self.context(kv, "write")))?;
                Ok("unversioned".into())
            }
        }
    }

    /// One directory level; a missing directory is empty.
    async fn list_dir(&self, client: &VaultClient, kv: KvVersion, dir: &str) -> Result<Vec<String>, AdminError> {
        let encoded = url_path(dir);
        let keys = match kv {
            KvVersion::V2 => vaultrs::kv2::list(client, &self.mount, &encoded).await,
            KvVersion::V1 => vaultrs::kv1::list(client, &self.mount, &encoded)
                .await
                .map(|r| r.data.keys),
        };
        match keys {
            Ok(k) => Ok(k),
            Err(e) => {
                let f = VaultFailure::from_client(&e);
                if f.kind() == FailureKind::NotFound {
                    Ok(Vec::new())
                } else {
                    Err(f.into_admin(dir, &self.context(kv, "list")))
                }
            }
        }
    }

    /// Every secret whose path starts with `prefix`, walking sub-directories.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        let prefix = prefix.trim_start_matches('/');
        let (client, kv) = self.admin_client(prefix).await?;
        // Start at the deepest directory the prefix names fully.
        let start = match prefix.rfind('/') {
            Some(i) => prefix[..=i].to_string(),
            None => String::new(),
        };
        let mut found = Vec::new();
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            for key in self.list_dir(&client, kv, &dir).await? {
                let full = format!("{dir}{key}");
                if key.ends_with('/') {
                    if full.starts_with(prefix) || prefix.starts_with(&full) {
                        pending.push(full);
                    }
                } else if full.starts_with(prefix) {
                    found.push(full);
                }
            }
        }
        found.sort();
        found.dedup();
        Ok(found
            .into_iter()
            .map(|path| ListEntry { path, updated: None })
            .collect())
    }

    /// Deletes a secret: KV v2 soft-deletes the latest version by default and removes every version and the
    /// metadata with [`DeleteMode::Force`]; KV v1 deletes the only value.
    pub(crate) async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        let path = self.admin_path(path)?.to_string();
        let (client, kv) = self.admin_client(&path).await?;
        let encoded = url_path(&path);
        if let DeleteMode::RecoveryDays(_) = mode {
            return Err(AdminError::new(
                AdminErrorKind::Unsupported,
                &path,
                "Vault has no recovery window: the default delete is a soft delete (undo with `vault kv undelete`), \
                 or delete for good with Force",
            ));
        }
        // Vault answers deletes of missing paths with success; check first so that a typo is reported.
        let exists = match kv {
            KvVersion::V2 => vaultrs::kv2::read_metadata(&*client, &self.mount, &encoded)
                .await
                .map(|_| ()),
            KvVersion::V1 => vaultrs::kv1::get_raw(&*client, &self.mount, &encoded).await.map(|_| ()),
        };
        exists.map_err(|e| VaultFailure::from_client(&e).into_admin(&path, &self.context(kv, "delete")))?;
        let deleted = match (kv, mode) {
            (KvVersion::V2, DeleteMode::Force) => vaultrs::kv2::delete_metadata(&*client, &self.mount, &encoded).await,
            (KvVersion::V2, _) => vaultrs::kv2::delete_latest(&*client, &self.mount, &encoded).await,
            (KvVersion::V1, _) => vaultrs::kv1::delete(&*client, &self.mount, &encoded).await,
        };
        deleted.map_err(|e| VaultFailure::from_client(&e).into_admin(&path, &self.context(kv, "delete")))
    }

    /// KV v2 versions, newest first; `current` marks the latest, `deleted`/`destroyed` the unreadable ones.
    pub(crate) async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        let path = self.admin_path(path)?.to_string();
        let (client, kv) = self.admin_client(&path).await?;
        if kv == KvVersion::V1 {
            return Err(AdminError::new(
                AdminErrorKind::Unsupported,
                &path,
                format!("mount `{}` is KV v1, which keeps no versions", self.mount),
            ));
        }
        let meta = vaultrs::kv2::read_metadata(&*client, &self.mount, &url_path(&path))
            .await
            .map_err(|e| VaultFailure::from_client(&e).into_admin(&path, &self.context(kv, "versions")))?;
        let mut versions: Vec<(u64, VersionInfo)> = meta
            .versions
            .iter()
            .filter_map(|(id, v)| {
                let n: u64 = id.parse().ok()?;
                let mut stages = Vec::new();
                if n == meta.current_version {
                    stages.push("current".to_string());
                }
                if v.destroyed {
                    stages.push("destroyed".to_string());
                } else if !v.deletion_time.is_empty() {
                    stages.push("deleted".to_string());
                }
                Some((
                    n,
                    VersionInfo {
                        id: id.clone(),
                        stages,
                        created: parse_time(&v.created_time),
                    },
                ))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        Ok(versions.into_iter().map(|(_, v)| v).collect())
    }
}
