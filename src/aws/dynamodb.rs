//! DynamoDB's protocol: JSON 1.0. The same as JSON 1.1 (`X-Amz-Target: DynamoDB_20120810.<Action>`,
//! JSON in and out, errors as `{"__type": "...#Code", "message"}`) but for its content type,
//! `application/x-amz-json-1.0`, which DynamoDB requires.

use super::{Api, CallError};
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
        self.json_of("application/x-amz-json-1.0", action, input, deadline)
            .await
    }
}
