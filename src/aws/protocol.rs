//! The two wire protocols: JSON 1.1 (SSM, Secrets Manager) and Query (ELBv2, Auto Scaling, and
//! EC2's dialect of it: the same requests, answers without a result wrapper and with `<item>`
//! lists).

use super::{Api, Call, CallError, Protocol};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

/// A Query API list (`<Things><member>..</member><member>..</member></Things>`), for answer types.
#[derive(Debug, serde::Deserialize)]
#[serde(bound(deserialize = "T: serde::Deserialize<'de>"))]
pub struct Members<T> {
    #[serde(default)]
    pub member: Vec<T>,
}

/// An EC2 list (`<reservationSet><item>..</item><item>..</item></reservationSet>`), for answer
/// types of [`super::EC2`].
#[derive(Debug, serde::Deserialize)]
#[serde(bound(deserialize = "T: serde::Deserialize<'de>"))]
pub struct Items<T> {
    #[serde(default)]
    pub item: Vec<T>,
}

impl Api {
    /// A JSON 1.1 call: `input` serialized as the body, the answer deserialized into `O`.
    pub async fn json<I: Serialize, O: DeserializeOwned>(
        &self,
        action: &str,
        input: &I,
        deadline: Instant,
    ) -> Result<O, CallError> {
        self.json_of("application/x-amz-json-1.1", action, input, deadline)
            .await
    }

    /// A JSON call with the protocol version's content type (`application/x-amz-json-1.0` or
    /// `-1.1`, the only difference between the two).
    pub(super) async fn json_of<I: Serialize, O: DeserializeOwned>(
        &self,
        content_type: &'static str,
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
            content_type,
            target: Some(format!("{target_prefix}.{action}")),
            body,
        };
        let answer = self.send(&call, deadline).await?;
        // serde_json's errors name a position, never the text: safe even when the answer is a secret.
        serde_json::from_slice(&answer).map_err(|e| {
            self.failed(action, format!("unexpected answer: {e}"))
                .not_transient()
        })
    }

    /// A Query call: `Action`, `Version` and `params` form-encoded, the XML answer deserialized
    /// into `O` (the response element's content: `<ActionResult>`, `<ResponseMetadata>`).
    pub async fn query<O: DeserializeOwned>(
        &self,
        action: &str,
        params: &[(&str, String)],
        deadline: Instant,
    ) -> Result<O, CallError> {
        let Protocol::Query { version } = self.service.protocol else {
            return Err(self.failed(action, "not a Query service".into()).not_transient());
        };
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action).append_pair("Version", version);
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let call = Call {
            action,
            content_type: "application/x-www-form-urlencoded; charset=utf-8",
            target: None,
            body,
        };
        let answer = self.send(&call, deadline).await?;
        let text = std::str::from_utf8(&answer).map_err(|_| {
            self.failed(action, "the answer is not UTF-8".into())
                .not_transient()
        })?;
        quick_xml::de::from_str(text).map_err(|e| {
            self.failed(action, format!("unexpected answer: {e}"))
                .not_transient()
        })
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Response {
        #[serde(rename = "DescribeTargetHealthResult")]
        result: Result,
    }
    #[derive(serde::Deserialize, Debug)]
    struct Result {
        #[serde(rename = "TargetHealthDescriptions")]
        list: List,
    }
    #[derive(serde::Deserialize, Debug)]
    struct List {
        #[serde(default)]
        member: Vec<Member>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "PascalCase")]
    struct Member {
        target: Target,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "PascalCase")]
    struct Target {
        id: String,
        port: Option<u16>,
    }

    #[test]
    fn query_answers_deserialize_with_member_lists() {
        let xml = r#"<DescribeTargetHealthResponse xmlns="x"><DescribeTargetHealthResult><TargetHealthDescriptions>
          <member><Target><Id>i-0abc</Id><Port>8080</Port></Target></member>
          <member><Target><Id>i-0def</Id></Target></member>
          </TargetHealthDescriptions></DescribeTargetHealthResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeTargetHealthResponse>"#;
        let r: Response = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(r.result.list.member.len(), 2);
        assert_eq!(r.result.list.member[0].target.id, "i-0abc");
        assert_eq!(r.result.list.member[0].target.port, Some(8080));
        assert_eq!(r.result.list.member[1].target.port, None);
        let empty =
            r#"<R><DescribeTargetHealthResult><TargetHealthDescriptions/></DescribeTargetHealthResult></R>"#;
        let r: Response = quick_xml::de::from_str(empty).unwrap();
        assert!(r.result.list.member.is_empty());
    }
}
