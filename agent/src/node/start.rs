//! Building the node metrics from the configuration (called by `run.rs`).

use std::sync::Arc;

use super::{Node, NodeError, config::NodeConfig, scrape::NodeScraper};

/// The `/metrics` scraper of the enabled collectors (`None` when none is).
pub fn node_scraper(cfg: &NodeConfig) -> Result<Option<Arc<NodeScraper>>, NodeError> {
    if cfg.collectors.is_empty() {
        return Ok(None);
    }
    let node = Node::new(&cfg.options())?;
    tracing::info!(
        "node collectors: {}",
        node.enabled().collect::<Vec<_>>().join(", ")
    );
    Ok(Some(Arc::new(NodeScraper::new(node))))
}
