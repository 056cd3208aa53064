//! Exoscale instance metadata (CloudStack's layout): text leaves under `/1.0/meta-data/` and the
//! raw user-data at `/1.0/user-data`. No header is required.
//!
//! Exoscale has one zone per region (`ch-gva-2`): it is both. Labels are not in the metadata.

use super::client::{Http, Request};
use super::leaves::leaf;
use super::{InstanceFacts, MetadataProvider, Result};

pub(super) struct Exoscale {
    http: Http,
}

impl Exoscale {
    pub fn new(http: Http) -> Exoscale {
        Exoscale { http }
    }

    async fn meta(&self, name: &str) -> Result<Option<String>> {
        leaf(&self.http, Request::get(format!("/1.0/meta-data/{name}"))).await
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Exoscale {
    fn name(&self) -> &'static str {
        "exoscale"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let (id, zone, ipv4, hostname) = tokio::try_join!(
            self.meta("instance-id"),
            self.meta("availability-zone"),
            self.meta("local-ipv4"),
            self.meta("local-hostname"),
        )?;
        Ok(InstanceFacts {
            provider: "exoscale".into(),
            instance_id: id,
            region: zone.clone(),
            zone,
            local_ipv4: ipv4,
            hostname,
        })
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let request = Request::get("/1.0/user-data");
        let body = self.http.get_optional("user-data", &request).await?;
        Ok(body.filter(|b| !b.is_empty()).map(|b| b.to_vec()))
    }
}
