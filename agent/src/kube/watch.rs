//! List and watch the node's pods: one list (paged), then a watch from its
//! `resourceVersion`, re-opened when the server ends it, a relist when the
//! version expired (410 Gone), reconnects with exponential backoff.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;

use super::{KubeError, KubeMetrics, PodStore, api::ApiConfig, pod::PodJson};

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The server ends a watch after this long (then it is re-opened).
const WATCH_SECONDS: u32 = 290;
/// Pods per list page.
const PAGE: u32 = 500;
/// Longest watch event line (a pod object is at most ~1.5 MB in etcd).
const MAX_LINE: usize = 8 << 20;
/// How long one list page may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
struct PodList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<PodJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// Lists and watches until the task is dropped.
pub async fn run(api: ApiConfig, node: Option<String>, store: Arc<PodStore>, metrics: KubeMetrics) {
    let client = match api.client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("kubernetes metadata disabled: {e}");
            return;
        }
    };
    let selector = node.map(|n| format!("spec.nodeName={n}"));
    let watcher = Watcher {
        client,
        api,
        selector,
        store,
        metrics,
    };
    watcher.run().await;
}

struct Watcher {
    client: reqwest::Client,
    api: ApiConfig,
    selector: Option<String>,
    store: Arc<PodStore>,
    metrics: KubeMetrics,
}

impl Watcher {
    async fn run(&self) {
        let mut backoff = BACKOFF_MIN;
        let mut version: Option<String> = None;
        let mut failures = 0u32;
        loop {
            let result = match &version {
                None => self.list().await.map(|v| {
                    version = Some(v);
                }),
                Some(_) => self.watch(&mut version).await,
            };
            match result {
                Ok(()) => {
                    backoff = BACKOFF_MIN;
                    failures = 0;
                }
                Err(KubeError::Gone) => {
                    // The version is too old: start over with a list.
                    self.metrics.relists.inc();
                    version = None;
                }
                Err(e) => {
                    self.metrics.errors.with_label_values(&[e.reason()]).inc();
                    failures += 1;
                    // Loud at first, then once per ~10 failures.
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(
                            "kubernetes API {}: {e} (retrying in {backoff:?})",
                            self.api.server
                        );
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn request(&self, query: &[(&str, String)]) -> reqwest::RequestBuilder {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(s) = &self.selector {
            q.push(("fieldSelector", s.clone()));
        }
        q.extend(query.iter().cloned());
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/pods", self.api.server))
            .unwrap_or_else(|_| reqwest::Url::parse("http://invalid/").expect("valid"));
        url.query_pairs_mut()
            .extend_pairs(q.iter().map(|(k, v)| (*k, v.as_str())));
        let mut req = self.client.get(url).header("accept", "application/json");
        if let Some(token) = self.api.token.current() {
            req = req.bearer_auth(token);
        }
        req
    }

    /// Lists every page; returns the list's resourceVersion.
    async fn list(&self) -> Result<String, KubeError> {
        let mut pods = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("limit", PAGE.to_string())];
            if let Some(t) = &token {
                q.push(("continue", t.clone()));
            }
            let resp = self
                .request(&q)
                .timeout(LIST_TIMEOUT)
                .send()
                .await
                .map_err(KubeError::Http)?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(KubeError::Http)?;
            if status.as_u16() == 410 {
                // The continue token expired: the whole list again.
                return Err(KubeError::Gone);
            }
            if !status.is_success() {
                return Err(status_error(status.as_u16(), &body));
            }
            let list: PodList = serde_json::from_slice(&body)
                .map_err(|e| KubeError::Decode(format!("pod list: {e}")))?;
            pods.extend(list.items.into_iter().map(PodJson::into_meta));
            match list.metadata.continue_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => {
                    let version = list.metadata.resource_version.unwrap_or_default();
                    tracing::info!("kubernetes: {} pods on this node", pods.len());
                    self.store.replace_all(pods);
                    self.metrics.pods.set(self.store.len() as i64);
                    return Ok(version);
                }
            }
        }
    }

    /// One watch request, applying events; `version` follows them.
    async fn watch(&self, version: &mut Option<String>) -> Result<(), KubeError> {
        let q = vec![
            ("watch", "true".to_string()),
            ("allowWatchBookmarks", "true".to_string()),
            ("timeoutSeconds", WATCH_SECONDS.to_string()),
            ("resourceVersion", version.clone().unwrap_or_default()),
        ];
        let mut resp = self
            .request(&q)
            .timeout(Duration::from_secs(u64::from(WATCH_SECONDS) + 30))
            .send()
            .await
            .map_err(KubeError::Http)?;
        let status = resp.status();
        if status.as_u16() == 410 {
            return Err(KubeError::Gone);
        }
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(status_error(status.as_u16(), &body));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(KubeError::Http)? {
            buf.extend_from_slice(&chunk);
            while let Some(end) = memchr::memchr(b'\n', &buf) {
                let line: Vec<u8> = buf.drain(..=end).collect();
                self.apply(&line[..end], version)?;
            }
            if buf.len() > MAX_LINE {
                return Err(KubeError::Decode("watch event too long".into()));
            }
        }
        if !buf.iter().all(u8::is_ascii_whitespace) {
            self.apply(&buf, version)?;
        }
        Ok(())
    }

    fn apply(&self, line: &[u8], version: &mut Option<String>) -> Result<(), KubeError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let event: WatchEvent = serde_json::from_slice(line)
            .map_err(|e| KubeError::Decode(format!("watch event: {e}")))?;
        self.metrics
            .events
            .with_label_values(&[event_label(&event.kind)])
            .inc();
        if event.kind == "ERROR" {
            let status: Status = serde_json::from_value(event.object).unwrap_or(Status {
                code: 0,
                reason: String::new(),
                message: String::new(),
            });
            if status.code == 410 {
                return Err(KubeError::Gone);
            }
            return Err(KubeError::Status {
                code: status.code,
                message: format!("{}: {}", status.reason, status.message),
            });
        }
        let pod: PodJson = serde_json::from_value(event.object)
            .map_err(|e| KubeError::Decode(format!("watch {}: {e}", event.kind)))?;
        if let Some(v) = pod.metadata.resource_version.clone() {
            *version = Some(v);
        }
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" => self.store.upsert(pod.into_meta()),
            "DELETED" => self.store.delete(&pod.metadata.uid),
            _ => {} // BOOKMARK: only the version moves.
        }
        self.metrics.pods.set(self.store.len() as i64);
        Ok(())
    }
}

fn event_label(kind: &str) -> &'static str {
    match kind {
        "ADDED" => "added",
        "MODIFIED" => "modified",
        "DELETED" => "deleted",
        "BOOKMARK" => "bookmark",
        "ERROR" => "error",
        _ => "other",
    }
}

fn status_error(code: u16, body: &[u8]) -> KubeError {
    let message = serde_json::from_slice::<Status>(body)
        .map(|s| s.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    KubeError::Status { code, message }
}
