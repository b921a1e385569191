//! How to reach the API server: the in-cluster service account (token and
//! CA files, re-read so rotated tokens are picked up) or a kubeconfig
//! file (current context: server, CA, token or client certificate).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::KubeError;
use crate::config::KubernetesConfig;

/// Where the bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    None,
    Static(String),
    /// Read before each list or watch (service account tokens rotate).
    File(PathBuf),
}

impl Token {
    pub fn current(&self) -> Option<String> {
        match self {
            Token::None => None,
            Token::Static(t) => Some(t.clone()),
            Token::File(p) => std::fs::read_to_string(p)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        }
    }
}

/// A resolved API server connection.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base URL without a trailing slash.
    pub server: String,
    pub token: Token,
    /// PEM bundle trusted for the server (only these roots).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate followed by its key.
    pub identity_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}

impl ApiConfig {
    pub fn resolve(cfg: &KubernetesConfig) -> Result<Self, KubeError> {
        if let Some(path) = &cfg.kubeconfig {
            let mut api = from_kubeconfig(path)?;
            if let Some(server) = &cfg.api_server {
                api.server = server.clone();
            }
            return Ok(api);
        }
        let server = cfg.api_server.clone().ok_or_else(|| {
            KubeError::Config("no API server: not in a cluster and none configured".into())
        })?;
        let token = if cfg.token_file.exists() {
            Token::File(cfg.token_file.clone())
        } else {
            Token::None
        };
        let ca_pem = if server.starts_with("https://") && cfg.ca_file.exists() {
            Some(read(&cfg.ca_file)?)
        } else {
            None
        };
        Ok(Self {
            server,
            token,
            ca_pem,
            identity_pem: None,
            insecure_skip_verify: false,
        })
    }

    /// A client for list and watch requests: no overall timeout (a watch
    /// lasts minutes), a connect timeout, and the TLS settings above.
    pub fn client(&self) -> Result<reqwest::Client, KubeError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .tcp_keepalive(std::time::Duration::from_secs(30))
            .user_agent(concat!("agent/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| KubeError::Config(format!("CA bundle: {e}")))?;
            b = b.tls_certs_only(certs);
        }
        if let Some(pem) = &self.identity_pem {
            let id = reqwest::Identity::from_pem(pem)
                .map_err(|e| KubeError::Config(format!("client certificate: {e}")))?;
            b = b.identity(id);
        }
        if self.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        b.build()
            .map_err(|e| KubeError::Config(format!("HTTP client: {e}")))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KubeError> {
    std::fs::read(path).map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KubeConfigFile {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

/// The current context of a kubeconfig file. Relative file paths are
/// relative to the file, as kubectl reads them.
pub fn from_kubeconfig(path: &Path) -> Result<ApiConfig, KubeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KubeError::Config(format!("kubeconfig {}: {e}", path.display())))?;
    parse_kubeconfig(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| KubeError::Config(format!("kubeconfig {}: {e}", path.display())))
}

fn parse_kubeconfig(text: &str, base: &Path) -> Result<ApiConfig, String> {
    let file: KubeConfigFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let ctx_name = file
        .current_context
        .clone()
        .or_else(|| file.contexts.first().map(|c| c.name.clone()))
        .ok_or("no context")?;
    let ctx = &file
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .ok_or_else(|| format!("context {ctx_name:?} not found"))?
        .value;
    let cluster = &file
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| format!("cluster {:?} not found", ctx.cluster))?
        .value;
    let user = match &ctx.user {
        Some(u) => Some(
            &file
                .users
                .iter()
                .find(|x| &x.name == u)
                .ok_or_else(|| format!("user {u:?} not found"))?
                .value,
        ),
        None => None,
    };
    let abs = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let data = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("base64: {e}"))
    };
    let file_or_data =
        |file: &Option<PathBuf>, b64: &Option<String>| -> Result<Option<Vec<u8>>, String> {
            match (b64, file) {
                (Some(d), _) => data(d).map(Some),
                (None, Some(f)) => std::fs::read(abs(f))
                    .map(Some)
                    .map_err(|e| format!("{}: {e}", abs(f).display())),
                (None, None) => Ok(None),
            }
        };
    let ca_pem = file_or_data(
        &cluster.certificate_authority,
        &cluster.certificate_authority_data,
    )?;
    let mut token = Token::None;
    let mut identity_pem = None;
    if let Some(u) = user {
        if let Some(t) = &u.token {
            token = Token::Static(t.clone());
        } else if let Some(f) = &u.token_file {
            token = Token::File(abs(f));
        }
        let cert = file_or_data(&u.client_certificate, &u.client_certificate_data)?;
        let key = file_or_data(&u.client_key, &u.client_key_data)?;
        if let (Some(mut cert), Some(key)) = (cert, key) {
            cert.push(b'\n');
            cert.extend_from_slice(&key);
            identity_pem = Some(cert);
        }
    }
    if !(cluster.server.starts_with("https://") || cluster.server.starts_with("http://")) {
        return Err(format!("server {:?} is not an http(s) URL", cluster.server));
    }
    Ok(ApiConfig {
        server: cluster.server.trim_end_matches('/').to_string(),
        token,
        ca_pem,
        identity_pem,
        insecure_skip_verify: cluster.insecure_skip_tls_verify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_current_context() {
        let text = "apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: dev
  cluster: { server: https://dev:6443 }
- name: prod
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
users:
- name: admin
  user: { token: s3cret }
- name: bot
  user: { tokenFile: tok }
contexts:
- name: dev
  context: { cluster: dev, user: bot }
- name: prod
  context: { cluster: prod, user: admin, namespace: shop }
";
        let api = parse_kubeconfig(text, Path::new("/etc/k")).unwrap();
        assert_eq!(api.server, "https://10.0.0.1:6443");
        assert_eq!(api.token, Token::Static("s3cret".into()));
        assert_eq!(
            api.ca_pem.as_deref(),
            Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
        );
        let dev = text.replace("current-context: prod", "current-context: dev");
        let api = parse_kubeconfig(&dev, Path::new("/etc/k")).unwrap();
        assert_eq!(api.token, Token::File(PathBuf::from("/etc/k/tok")));
        assert!(api.ca_pem.is_none());
        let bad = text.replace("current-context: prod", "current-context: nope");
        assert!(
            parse_kubeconfig(&bad, Path::new("/"))
                .unwrap_err()
                .contains("nope")
        );
    }
}
