//! Metadata served as a tree of text leaves, one request a fact (`.../instance-id`,
//! `.../local-ipv4`): Alibaba Cloud and Exoscale (CloudStack's layout).

use super::Result;
use super::client::{Http, Request, text};

/// The text of one leaf, trimmed; None when absent (404) or empty.
pub(super) async fn leaf(http: &Http, request: Request) -> Result<Option<String>> {
    let step = request.path.rsplit('/').next().unwrap_or("").to_string();
    match http.get_optional(&step, &request).await? {
        Some(body) => Ok(Some(text(http, &step, &body)?).filter(|s| !s.is_empty())),
        None => Ok(None),
    }
}
