//! The HTTP side: the Microsoft Entra token endpoints and the Key Vault secrets data plane.

// An error answer is built at most once per request in a test server: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::store::{self, Deleted, Secret, Version};
use super::Inner;

/// The api-versions this server answers; others get Key Vault's 400 `BadParameter`.
pub(crate) const API_VERSIONS: [&str; 10] = [
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-06-01-preview",
    "2025-07-01",
    "2026-04-01",
];

/// The audience Key Vault tokens are for.
pub(crate) const RESOURCE: &str = "https://vault.azure.net";

/// Page size of the list operations unless the client asks for fewer (Key Vault's own is 25).
pub(crate) const DEFAULT_PAGE_SIZE: usize = 3;

pub(crate) type Reply = Response<Full<Bytes>>;

fn reply(status: u16, headers: &[(&'static str, String)], body: Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).expect("valid status");
    response.headers_mut().insert(
        "content-type",
        "application/json; charset=utf-8".parse().expect("header"),
    );
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(*name, value.parse().expect("header value"));
    }
    response
}

fn empty(status: u16) -> Reply {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::from_u16(status).expect("valid status");
    response
}

/// Key Vault's error envelope; `inner` is `innererror.code`.
fn kv_error(status: u16, code: &str, message: &str, inner: Option<&str>) -> Reply {
    let mut error = json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        error["innererror"] = json!({ "code": inner });
    }
    reply(status, &[], json!({ "error": error }))
}

/// Microsoft Entra's OAuth error shape.
fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    reply(
        status,
        &[],
        json!({ "error": error, "error_description": description, "error_codes": [], "timestamp": "" }),
    )
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_decode_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Answers one request.
pub(crate) fn handle(
    kv: &Arc<Inner>,
    method: &Method,
    path: &str,
    query: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Reply {
    let params = url_decode_pairs(query);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    // Microsoft Entra ID, at the authority host: `/{tenant}/v2.0/.well-known/openid-configuration` and
    // `/{tenant}/oauth2/v2.0/token`.
    match (method, segments.as_slice()) {
        (&Method::GET, [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
            return openid_configuration(kv, tenant);
        }
        (&Method::POST, [tenant, "oauth2", "v2.0", "token"]) => return token(kv, tenant, body),
        _ => {}
    }

    // Key Vault answers an unauthenticated request with the bearer challenge, before looking at anything else.
    let token = auth
        .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
        .map(str::trim);
    let challenge = format!(
        "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"{RESOURCE}\"",
        kv.tenant_id
    );
    match token {
        None => {
            return reply(
                401,
                &[("www-authenticate", challenge)],
                json!({ "error": { "code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token." } }),
            )
        }
        Some(t) if !kv.tokens.lock().expect("tokens").contains(t) => {
            return reply(
                401,
                &[("www-authenticate", challenge)],
                json!({ "error": { "code": "Unauthorized", "message": "AKV10032: Invalid issuer or token." } }),
            )
        }
        Some(_) => {}
    }

    match param(&params, "api-version") {
        None => {
            return kv_error(400, "BadParameter", "The api-version query parameter is missing.", None);
        }
        Some(v) if !API_VERSIONS.contains(&v) => {
            return kv_error(
                400,
                "BadParameter",
                &format!(
                    "The specified version ({v}) is not recognized. Consider using the latest supported version (7.6)."
                ),
                None,
            );
        }
        Some(_) => {}
    }

    let base = kv.base_url();
    let now = kv.now();
    let mut store = kv.store.lock().expect("store");
    let store = &mut *store;
    match (method, segments.as_slice()) {
        (&Method::GET, ["secrets"]) => {
            let mut items: Vec<Value> = store
                .secrets
                .values()
                .map(|s| store::item(&base, s, s.latest(), false))
                .collect();
            page(kv, &base, "/secrets", &params, &mut items)
        }
        (&Method::GET, ["deletedsecrets"]) => {
            let mut items: Vec<Value> = store.deleted.values().map(|d| store::deleted(&base, d, true)).collect();
            page(kv, &base, "/deletedsecrets", &params, &mut items)
        }
        (_, ["secrets", name, ..]) | (_, ["deletedsecrets", name, ..]) if !store::valid_name(name) => kv_error(
            400,
            "BadParameter",
            &format!("The request URI contains an invalid name: {name}"),
            None,
        ),
        (&Method::PUT, ["secrets", name]) => set(store, &base, name, body, now),
        (&Method::GET, ["secrets", name, "versions"]) => match store.secrets.get(&name.to_ascii_lowercase()) {
            None => not_found(name),
            Some(s) => {
                let mut items: Vec<Value> = s.versions.iter().map(|v| store::item(&base, s, v, true)).collect();
                page(kv, &base, &format!("/secrets/{name}/versions"), &params, &mut items)
            }
        },
        (&Method::GET, ["secrets", name]) => get(store, &base, name, ""),
        (&Method::GET, ["secrets", name, version]) => get(store, &base, name, version),
        (&Method::PATCH, ["secrets", name]) => update(store, &base, name, "", body, now),
        (&Method::PATCH, ["secrets", name, version]) => update(store, &base, name, version, body, now),
        (&Method::DELETE, ["secrets", name]) => match store.secrets.remove(&name.to_ascii_lowercase()) {
            None => not_found(name),
            Some(secret) => {
                let d = Deleted { secret, deleted: now };
                let answer = store::deleted(&base, &d, false);
                store.deleted.insert(name.to_ascii_lowercase(), d);
                reply(200, &[], answer)
            }
        },
        (&Method::GET, ["deletedsecrets", name]) => match store.deleted.get(&name.to_ascii_lowercase()) {
            None => deleted_not_found(name),
            Some(d) => reply(200, &[], store::deleted(&base, d, false)),
        },
        (&Method::DELETE, ["deletedsecrets", name]) => match store.deleted.remove(&name.to_ascii_lowercase()) {
            None => deleted_not_found(name),
            Some(_) => empty(204),
        },
        (&Method::POST, ["deletedsecrets", name, "recover"]) => {
            match store.deleted.remove(&name.to_ascii_lowercase()) {
                None => deleted_not_found(name),
                Some(d) => {
                    let answer = store::bundle(&base, &d.secret, d.secret.latest(), false);
                    store.secrets.insert(name.to_ascii_lowercase(), d.secret);
                    reply(200, &[], answer)
                }
            }
        }
        _ => kv_error(
            400,
            "BadParameter",
            &format!("The request URI is not supported by this test server: {method} {path}"),
            None,
        ),
    }
}

fn not_found(name: &str) -> Reply {
    kv_error(
        404,
        "SecretNotFound",
        &format!("A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command."),
        None,
    )
}

fn version_not_found(name: &str, version: &str) -> Reply {
    kv_error(
        404,
        "SecretNotFound",
        &format!("A secret with (name/id) {name}/{version} was not found in this key vault."),
        None,
    )
}

fn deleted_not_found(name: &str) -> Reply {
    kv_error(
        404,
        "SecretNotFound",
        &format!("Deleted Secret not found: {name}"),
        None,
    )
}

fn get(store: &store::Store, base: &str, name: &str, version: &str) -> Reply {
    let Some(secret) = store.secrets.get(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let Some(v) = secret.version(version) else {
        return version_not_found(name, version);
    };
    if !v.enabled {
        return kv_error(
            403,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            Some("SecretDisabled"),
        );
    }
    reply(200, &[], store::bundle(base, secret, v, true))
}

/// Reads `attributes.enabled/nbf/exp`, `contentType` and `tags` from a request body into `v`.
fn apply(v: &mut Version, body: &Value) -> Result<(), Reply> {
    if let Some(attributes) = body.get("attributes").filter(|a| !a.is_null()) {
        let Some(attributes) = attributes.as_object() else {
            return Err(kv_error(400, "BadParameter", "attributes must be an object", None));
        };
        for (key, value) in attributes {
            match (key.as_str(), value) {
                (_, Value::Null) => {}
                ("enabled", Value::Bool(b)) => v.enabled = *b,
                ("nbf", n) if n.is_i64() => v.nbf = n.as_i64(),
                ("exp", n) if n.is_i64() => v.exp = n.as_i64(),
                // Read-only attributes a client may echo back.
                ("created" | "updated" | "recoveryLevel" | "recoverableDays", _) => {}
                (other, _) => {
                    return Err(kv_error(
                        400,
                        "BadParameter",
                        &format!("Invalid attribute: {other}"),
                        None,
                    ))
                }
            }
        }
    }
    match body.get("contentType") {
        None | Some(Value::Null) => {}
        Some(Value::String(ct)) => v.content_type = Some(ct.clone()),
        Some(_) => return Err(kv_error(400, "BadParameter", "contentType must be a string", None)),
    }
    match body.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(tags)) if tags.values().all(Value::is_string) => {
            if tags.len() > 15 {
                return Err(kv_error(
                    400,
                    "BadParameter",
                    "A secret may have at most 15 tags.",
                    None,
                ));
            }
            v.tags = Some(tags.clone());
        }
        Some(_) => return Err(kv_error(400, "BadParameter", "tags must be an object of strings", None)),
    }
    Ok(())
}

fn parse_body(body: &[u8]) -> Result<Value, Reply> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| kv_error(400, "BadParameter", "The request body is not a JSON object.", None))
}

fn set(store: &mut store::Store, base: &str, name: &str, body: &[u8], now: i64) -> Reply {
    let key = name.to_ascii_lowercase();
    if store.deleted.contains_key(&key) {
        // What Key Vault says when a name is held by a soft-deleted secret.
        return kv_error(
            409,
            "Conflict",
            &format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."),
            Some("ObjectIsDeletedButRecoverable"),
        );
    }
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(value) = body.get("value").and_then(Value::as_str) else {
        return kv_error(400, "BadParameter", "Property value is required.", None);
    };
    let mut version = Version {
        id: super::version_id(),
        value: value.to_string(),
        content_type: None,
        enabled: true,
        nbf: None,
        exp: None,
        created: now,
        updated: now,
        tags: None,
    };
    if let Err(reply) = apply(&mut version, &body) {
        return reply;
    }
    let secret = store.secrets.entry(key).or_insert_with(|| Secret {
        name: name.to_string(),
        versions: Vec::new(),
    });
    secret.versions.push(version);
    reply(200, &[], store::bundle(base, secret, secret.latest(), true))
}

fn update(store: &mut store::Store, base: &str, name: &str, version: &str, body: &[u8], now: i64) -> Reply {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(secret) = store.secrets.get_mut(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let Some(v) = secret.version_mut(version) else {
        return version_not_found(name, version);
    };
    let mut changed = v.clone();
    if let Err(reply) = apply(&mut changed, &body) {
        return reply;
    }
    changed.updated = now;
    *v = changed;
    let v = secret.version(version).expect("just updated");
    reply(200, &[], store::bundle(base, secret, v, false))
}

/// One page of `items` from `$skiptoken` (an offset), with `nextLink` when more remain.
fn page(kv: &Inner, base: &str, path: &str, params: &[(String, String)], items: &mut Vec<Value>) -> Reply {
    let requested = param(params, "maxresults").and_then(|m| m.parse::<usize>().ok());
    if requested.is_some_and(|m| !(1..=25).contains(&m)) {
        return kv_error(400, "BadParameter", "maxresults must be between 1 and 25.", None);
    }
    let size = requested.unwrap_or(25).min(kv.page_size());
    let start = param(params, "$skiptoken")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0)
        .min(items.len());
    let end = (start + size).min(items.len());
    let value: Vec<Value> = items.drain(start..end).collect();
    let total = items.len() + (end - start);
    let next_link = if end < total {
        let api = param(params, "api-version").unwrap_or("7.6");
        let mut link = format!("{base}{path}?api-version={api}&$skiptoken={end}");
        if let Some(m) = requested {
            link.push_str(&format!("&maxresults={m}"));
        }
        Value::String(link)
    } else {
        Value::Null
    };
    reply(200, &[], json!({ "value": value, "nextLink": next_link }))
}

fn openid_configuration(kv: &Inner, tenant: &str) -> Reply {
    if tenant != kv.tenant_id {
        return oauth_error(
            400,
            "invalid_tenant",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    let issuer = format!("{}/{tenant}", kv.base_url());
    reply(
        200,
        &[],
        json!({
            "token_endpoint": format!("{issuer}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{issuer}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{issuer}/oauth2/v2.0/devicecode"),
            "issuer": format!("{issuer}/v2.0"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "tenant_region_scope": null,
        }),
    )
}

fn token(kv: &Inner, tenant: &str, body: &[u8]) -> Reply {
    if tenant != kv.tenant_id {
        return oauth_error(
            400,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    let form = url_decode_pairs(std::str::from_utf8(body).unwrap_or(""));
    let get = |name: &str| param(&form, name).unwrap_or("");
    if get("grant_type") != "client_credentials" {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type; this test server serves client_credentials only.",
        );
    }
    if get("client_id") != kv.client_id {
        return oauth_error(
            400,
            "unauthorized_client",
            &format!(
                "AADSTS700016: Application with identifier '{}' was not found in the directory.",
                get("client_id")
            ),
        );
    }
    if get("client_secret") != kv.client_secret {
        return oauth_error(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    let scope = get("scope");
    if !scope
        .split(' ')
        .any(|s| s == format!("{RESOURCE}/.default") || s == format!("{RESOURCE}/.default/"))
    {
        return oauth_error(
            400,
            "invalid_scope",
            &format!("AADSTS70011: The provided value for the input parameter 'scope' is not valid: {scope}"),
        );
    }
    let token = format!("skm-test-token-{}", super::version_id());
    kv.tokens.lock().expect("tokens").insert(token.clone());
    kv.tokens_issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    reply(
        200,
        &[],
        json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token }),
    )
}
