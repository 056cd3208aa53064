//! Alibaba Cloud ECS instance metadata at `http://100.100.100.200`: a session token from `PUT
//! /latest/api/token` (`X-aliyun-ecs-metadata-token-ttl-seconds`), then text leaves under
//! `/latest/meta-data/` and the raw `/latest/user-data`, each with
//! `X-aliyun-ecs-metadata-token`. An instance in hardened (token-only) mode refuses a request
//! without the token (403), so kiln always sends one.

use super::client::{Http, Request, session_token};
use super::leaves::leaf;
use super::{InstanceFacts, MetadataProvider, Result};
use reqwest::header::HeaderValue;
use tokio::sync::OnceCell;

/// How long the token lives: the longest Alibaba allows, far more than one fetch needs.
const TOKEN_TTL_SECONDS: &str = "21600";

pub(super) struct Alibaba {
    http: Http,
    token: OnceCell<HeaderValue>,
}

impl Alibaba {
    pub fn new(http: Http) -> Alibaba {
        Alibaba {
            http,
            token: OnceCell::new(),
        }
    }

    async fn token(&self) -> Result<&HeaderValue> {
        self.token
            .get_or_try_init(|| {
                session_token(
                    &self.http,
                    "session token",
                    "/latest/api/token",
                    "x-aliyun-ecs-metadata-token-ttl-seconds",
                    TOKEN_TTL_SECONDS,
                )
            })
            .await
    }

    async fn get(&self, path: &str) -> Result<Request> {
        let token = self.token().await?.clone();
        Ok(Request::get(path).header("x-aliyun-ecs-metadata-token", token))
    }

    async fn meta(&self, name: &str) -> Result<Option<String>> {
        let request = self.get(&format!("/latest/meta-data/{name}")).await?;
        leaf(&self.http, request).await
    }
}

#[async_trait::async_trait]
impl MetadataProvider for Alibaba {
    fn name(&self) -> &'static str {
        "alibaba"
    }

    fn endpoint(&self) -> String {
        self.http.base.clone()
    }

    async fn facts(&self) -> Result<InstanceFacts> {
        let (id, region, zone, ipv4, hostname) = tokio::try_join!(
            self.meta("instance-id"),
            self.meta("region-id"),
            self.meta("zone-id"),
            self.meta("private-ipv4"),
            self.meta("hostname"),
        )?;
        Ok(InstanceFacts {
            provider: "alibaba".into(),
            instance_id: id,
            region,
            zone,
            local_ipv4: ipv4,
            hostname,
        })
    }

    async fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let request = self.get("/latest/user-data").await?;
        let body = self.http.get_optional("user-data", &request).await?;
        Ok(body.filter(|b| !b.is_empty()).map(|b| b.to_vec()))
    }
}
