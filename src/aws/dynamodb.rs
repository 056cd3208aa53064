//! DynamoDB's protocol: JSON 1.0. The same as JSON 1.1 (`X-Amz-Target: DynamoDB_20120810.<Action>`,
//! JSON in and out, errors as `{"__type": "...#Code", "message"}`) but for its content type,
//! `application/x-amz-json-1.0`, which DynamoDB requires.

use super::{Api, Call, CallError, Protocol};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

impl Api {
    /// A DynamoDB call: `input` as the body, the answer deserialized into `O`.
    pub async fn dynamodb<I: Serialize, O: DeserializeOwned>(
        &self,
        action: &str,
        input: &I,
        deadline: Instant,
    ) -> Result<O, CallError> {
        let Protocol::Json { target_prefix } = self.service.protocol else {
            return Err(self.failed(action, "not a JSON service".into()).not_transient());
        };
        let body = serde_json::to_string(input).map_err(|e| {
            self.failed(action, format!("cannot encode the request: {e}"))
                .not_transient()
        })?;
        let call = Call {
            action,
            content_type: "application/x-amz-json-1.0",
            target: Some(format!("{target_prefix}.{action}")),
            body,
        };
        let answer = self.send(&call, deadline).await?;
        serde_json::from_slice(&answer).map_err(|e| {
            self.failed(action, format!("unexpected answer: {e}"))
                .not_transient()
        })
    }
}
