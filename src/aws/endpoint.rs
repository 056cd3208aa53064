//! Which URL a service is called at, and under which names it is known.
//!
//! Resolution, first match wins: the endpoint in kiln's config; `AWS_ENDPOINT_URL_<SERVICE>` in
//! kiln's environment; `AWS_ENDPOINT_URL`; `https://<host>.<region>.amazonaws.com`. The variables
//! are the AWS SDKs' and CLI's own, so VPC endpoints, LocalStack and moto are set up the way
//! users already do it. Only kiln's own environment counts: user-data cannot redirect AWS calls,
//! and the region that picks the default host is a [`Region`], never free text.

use crate::aws_names::Region;
use reqwest::Url;

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
    /// For messages: `ssm`, `secretsmanager`, `elbv2`, `autoscaling`, `ec2`.
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

/// EC2's Query dialect: the requests are Query's (`InstanceId.N` lists), the answers have no
/// `<ActionResult>` wrapper and list `<item>`s (see [`super::Items`]).
pub static EC2: Service = Service {
    name: "ec2",
    signing_name: "ec2",
    env_name: "EC2",
    host: "ec2",
    protocol: Protocol::Query {
        version: "2016-11-15",
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
    /// The base URL (a configured one may carry a path).
    pub url: Url,
    /// The SigV4 signing region.
    pub region: Region,
    /// `config`, `AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL` or `default`.
    pub from: String,
}

impl Endpoint {
    /// The URL requests are POSTed to: the base with a trailing `/`.
    pub fn request_url(&self) -> Url {
        let mut url = self.url.clone();
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url
    }

    /// The URL for messages, without a trailing `/`.
    pub fn shown(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }
}

impl Service {
    /// The endpoint in `region`; `configured` is the config's override (may use `{region}`).
    pub fn endpoint(&self, region: &Region, configured: Option<&str>) -> Result<Endpoint, String> {
        self.endpoint_from(region, configured, |name| std::env::var(name).ok())
    }

    fn endpoint_from(
        &self,
        region: &Region,
        configured: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Endpoint, String> {
        let specific = format!("AWS_ENDPOINT_URL_{}", self.env_name);
        let given = match configured {
            // `{region}` is a validated region: one DNS label.
            Some(url) => Some((url.replace("{region}", region.as_str()), "config".to_string())),
            None => match var(&specific).filter(|v| !v.is_empty()) {
                Some(url) => Some((url, specific)),
                None => var("AWS_ENDPOINT_URL")
                    .filter(|v| !v.is_empty())
                    .map(|url| (url, "AWS_ENDPOINT_URL".to_string())),
            },
        };
        let (url, from) = match given {
            Some((text, from)) => {
                let url = Url::parse(&text)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| format!("{} endpoint of {from} is not an http(s) URL", self.name))?;
                (url, from)
            }
            None => (self.default_url(region)?, "default".to_string()),
        };
        Ok(Endpoint {
            url,
            region: region.clone(),
            from,
        })
    }

    /// `https://HOST.REGION.SUFFIX/`, the host set from the service's own label, the validated
    /// region and its partition's suffix: nothing of it is free text.
    fn default_url(&self, region: &Region) -> Result<Url, String> {
        let host = format!("{}.{region}.{}", self.host, region.partition().dns_suffix());
        let mut url = Url::parse("https://amazonaws.com/").map_err(|e| e.to_string())?;
        url.set_host(Some(&host))
            .map_err(|e| format!("{} endpoint in {region}: {e}", self.name))?;
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> Region {
        Region::parse(name).unwrap()
    }

    #[test]
    fn config_then_service_variable_then_global_variable_then_default() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| set.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let both: &[(&str, &str)] = &[
            ("AWS_ENDPOINT_URL_SSM", "http://ssm.local:4566/"),
            ("AWS_ENDPOINT_URL", "http://all.local:4566"),
        ];
        let eu = region("eu-west-1");
        let e = SSM
            .endpoint_from(&eu, Some("http://cfg/{region}"), vars(both))
            .unwrap();
        assert_eq!(
            (e.request_url().as_str(), e.shown(), e.from.as_str()),
            ("http://cfg/eu-west-1/", "http://cfg/eu-west-1", "config")
        );
        let e = SSM.endpoint_from(&eu, None, vars(both)).unwrap();
        assert_eq!(
            (e.shown(), e.from.as_str()),
            ("http://ssm.local:4566", "AWS_ENDPOINT_URL_SSM")
        );
        let e = SECRETS_MANAGER.endpoint_from(&eu, None, vars(both)).unwrap();
        assert_eq!(e.from, "AWS_ENDPOINT_URL");
        let e = ELBV2
            .endpoint_from(&region("us-east-2"), None, vars(&[]))
            .unwrap();
        assert_eq!(
            e.request_url().as_str(),
            "https://elasticloadbalancing.us-east-2.amazonaws.com/"
        );
        assert_eq!(e.region.as_str(), "us-east-2");
        let bad: &[(&str, &str)] = &[("AWS_ENDPOINT_URL", "not a url")];
        let e = SSM.endpoint_from(&eu, None, vars(bad)).unwrap_err();
        assert_eq!(e, "ssm endpoint of AWS_ENDPOINT_URL is not an http(s) URL");
    }

    #[test]
    fn the_default_host_is_the_service_the_region_and_the_partitions_suffix() {
        let none = |_: &str| None;
        let url = |service: &Service, name: &str| {
            let e = service.endpoint_from(&region(name), None, none).unwrap();
            (
                e.url.host_str().unwrap().to_string(),
                e.url.port_or_known_default(),
            )
        };
        assert_eq!(
            url(&SSM, "eu-west-1"),
            ("ssm.eu-west-1.amazonaws.com".into(), Some(443))
        );
        assert_eq!(
            url(&SECRETS_MANAGER, "cn-north-1"),
            ("secretsmanager.cn-north-1.amazonaws.com.cn".into(), Some(443))
        );
        assert_eq!(
            url(&AUTOSCALING, "us-gov-west-1"),
            ("autoscaling.us-gov-west-1.amazonaws.com".into(), Some(443))
        );
        assert_eq!(
            url(&EC2, "eu-central-1"),
            ("ec2.eu-central-1.amazonaws.com".into(), Some(443))
        );
        assert_eq!(
            url(&SSM, "us-isob-east-1"),
            ("ssm.us-isob-east-1.sc2s.sgov.gov".into(), Some(443))
        );
    }
}
