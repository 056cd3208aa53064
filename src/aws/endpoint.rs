//! Which URL a service is called at, and under which names it is known.
//!
//! Resolution, first match wins: the endpoint in kiln's config; `AWS_ENDPOINT_URL_<SERVICE>` in
//! kiln's environment; `AWS_ENDPOINT_URL`; `https://<host>.<region>.amazonaws.com`. The variables
//! are the AWS SDKs' and CLI's own, so VPC endpoints, LocalStack and moto are set up the way
//! users already do it. Only kiln's own environment counts: user-data cannot redirect AWS calls.

/// The wire protocol a service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /`, `X-Amz-Target: <prefix>.<Action>`, JSON in and out.
    Json { target_prefix: &'static str },
    /// `POST /`, form-encoded `Action` and `Version`, XML out.
    Query { version: &'static str },
}

/// What kiln needs to know to call a service.
#[derive(Debug)]
pub struct Service {
    /// For messages: `ssm`, `secretsmanager`, `elbv2`, `autoscaling`.
    pub name: &'static str,
    /// SigV4 service name.
    pub signing_name: &'static str,
    /// `<SERVICE>` of `AWS_ENDPOINT_URL_<SERVICE>`, as the SDKs spell it.
    pub env_name: &'static str,
    /// First label of the default host name.
    pub host: &'static str,
    pub protocol: Protocol,
}

pub static SSM: Service = Service {
    name: "ssm",
    signing_name: "ssm",
    env_name: "SSM",
    host: "ssm",
    protocol: Protocol::Json {
        target_prefix: "AmazonSSM",
    },
};

pub static SECRETS_MANAGER: Service = Service {
    name: "secretsmanager",
    signing_name: "secretsmanager",
    env_name: "SECRETS_MANAGER",
    host: "secretsmanager",
    protocol: Protocol::Json {
        target_prefix: "secretsmanager",
    },
};

pub static ELBV2: Service = Service {
    name: "elbv2",
    signing_name: "elasticloadbalancing",
    env_name: "ELASTIC_LOAD_BALANCING_V2",
    host: "elasticloadbalancing",
    protocol: Protocol::Query {
        version: "2015-12-01",
    },
};

pub static AUTOSCALING: Service = Service {
    name: "autoscaling",
    signing_name: "autoscaling",
    env_name: "AUTO_SCALING",
    host: "autoscaling",
    protocol: Protocol::Query {
        version: "2011-01-01",
    },
};

/// Where a service is called, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Without a trailing `/`.
    pub url: String,
    /// The SigV4 signing region.
    pub region: String,
    /// `config`, `AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL` or `default`.
    pub from: String,
}

impl Service {
    /// The endpoint in `region`; `configured` is the config's override (may use `{region}`).
    pub fn endpoint(&self, region: &str, configured: Option<&str>) -> Endpoint {
        self.endpoint_from(region, configured, |name| std::env::var(name).ok())
    }

    fn endpoint_from(
        &self,
        region: &str,
        configured: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Endpoint {
        let specific = format!("AWS_ENDPOINT_URL_{}", self.env_name);
        let (url, from) = match configured {
            Some(url) => (url.replace("{region}", region), "config".to_string()),
            None => match var(&specific).filter(|v| !v.is_empty()) {
                Some(url) => (url, specific),
                None => match var("AWS_ENDPOINT_URL").filter(|v| !v.is_empty()) {
                    Some(url) => (url, "AWS_ENDPOINT_URL".to_string()),
                    None => (
                        format!("https://{}.{region}.amazonaws.com", self.host),
                        "default".to_string(),
                    ),
                },
            },
        };
        Endpoint {
            url: url.trim_end_matches('/').to_string(),
            region: region.to_string(),
            from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_then_service_variable_then_global_variable_then_default() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| set.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let both: &[(&str, &str)] = &[
            ("AWS_ENDPOINT_URL_SSM", "http://ssm.local:4566/"),
            ("AWS_ENDPOINT_URL", "http://all.local:4566"),
        ];
        let e = SSM.endpoint_from("eu-west-1", Some("http://cfg/{region}"), vars(both));
        assert_eq!(
            (e.url.as_str(), e.from.as_str()),
            ("http://cfg/eu-west-1", "config")
        );
        let e = SSM.endpoint_from("eu-west-1", None, vars(both));
        assert_eq!(
            (e.url.as_str(), e.from.as_str()),
            ("http://ssm.local:4566", "AWS_ENDPOINT_URL_SSM")
        );
        let e = SECRETS_MANAGER.endpoint_from("eu-west-1", None, vars(both));
        assert_eq!(e.from, "AWS_ENDPOINT_URL");
        let e = ELBV2.endpoint_from("us-east-2", None, vars(&[]));
        assert_eq!(e.url, "https://elasticloadbalancing.us-east-2.amazonaws.com");
        assert_eq!(e.region, "us-east-2");
    }
}
