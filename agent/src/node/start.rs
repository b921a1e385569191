//! Building the node metrics from the configuration (called by `run.rs`):
//! the `/metrics` scraper, the registry of traced processes and the OTLP
//! metrics export.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use opentelemetry::KeyValue;
use tokio::sync::watch;

use super::{
    Node, NodeError,
    config::NodeConfig,
    export::{ExportStats, MetricsExportError, MetricsExporter, Sources},
    process::{ProcessMetrics, TracedProcesses},
    scrape::{ExtraFamilies, NodeScraper},
};
use crate::resource::{HostInfo, keys};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Export(#[from] MetricsExportError),
}

/// The parts `run.rs` wires in.
pub struct NodeRuntime {
    /// For `/metrics` (`None`: no collector enabled).
    pub scraper: Option<Arc<NodeScraper>>,
    /// For the pipeline to register traced processes (`None`: process
    /// metrics off, or nothing exports them).
    pub traced: Option<Arc<TracedProcesses>>,
    export: Option<(MetricsExporter, Arc<Sources>)>,
}

/// The host resource of the node metrics: the spans' `host.*` and `os.*`
/// attributes and the agent as telemetry distribution.
pub fn host_resource(root: &Path) -> Vec<KeyValue> {
    let mut attrs = HostInfo::detect(root).attributes();
    attrs.push(KeyValue::new(
        keys::TELEMETRY_DISTRO_NAME,
        keys::DISTRO_NAME,
    ));
    attrs.push(KeyValue::new(
        keys::TELEMETRY_DISTRO_VERSION,
        keys::DISTRO_VERSION,
    ));
    attrs
}

impl NodeRuntime {
    /// Builds the collectors and, with an OTLP endpoint, the exporter (in
    /// the tokio runtime). `extra` families go on `/metrics` after the
    /// collectors'.
    pub fn new(
        cfg: &NodeConfig,
        max_processes: usize,
        extra: Vec<Arc<dyn ExtraFamilies>>,
        red: Option<Arc<crate::red::RedShared>>,
    ) -> Result<Self, StartError> {
        let stats = Arc::new(ExportStats::default());
        let scraper = if cfg.collectors.is_empty() {
            None
        } else {
            let node = Node::new(&cfg.options())?;
            tracing::info!(
                "node collectors: {}",
                node.enabled().collect::<Vec<_>>().join(", ")
            );
            let mut s = NodeScraper::new(node);
            for e in extra {
                s = s.with_extra(e);
            }
            if cfg.otlp.endpoint.is_some() {
                s = s.with_extra(stats.clone());
            }
            Some(Arc::new(s))
        };
        let Some(endpoint) = &cfg.otlp.endpoint else {
            return Ok(Self {
                scraper,
                traced: None,
                export: None,
            });
        };
        let traced = cfg
            .process_metrics
            .then(|| Arc::new(TracedProcesses::new(max_processes)));
        let exporter = MetricsExporter::new(&cfg.otlp, stats)?;
        tracing::info!(
            "node and process metrics go to OTLP {} every {:?}",
            endpoint,
            cfg.otlp.interval
        );
        let sources = Arc::new(Sources {
            node: scraper.clone(),
            processes: traced
                .clone()
                .map(|t| Mutex::new(ProcessMetrics::new(t, cfg.proc.clone()))),
            host: host_resource(&cfg.root),
            proc_root: cfg.proc.clone(),
            red,
        });
        Ok(Self {
            scraper,
            traced,
            export: Some((exporter, sources)),
        })
    }

    /// Starts the periodic OTLP export (if configured) until `stop`.
    pub fn spawn_export(
        &mut self,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let (exporter, sources) = self.export.take()?;
        Some(tokio::spawn(super::export::run(exporter, sources, stop)))
    }
}
