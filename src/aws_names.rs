//! AWS names that reach a URL or a signature, as typed values that only validation makes: a
//! [`Region`] (which picks the endpoint's host), its [`Partition`] (which picks the DNS suffix),
//! an account id and the ARNs kiln reads (SSM parameters, Secrets Manager secrets, ELBv2 target
//! groups). A region field of `x@127.0.0.1/` in user-data would otherwise become the host kiln
//! sends its signed request, credentials and session token to.
//!
//! Errors say what is wrong and never quote the text: it came from user-data, tags or a peer.
//!
//! A leaf: pure grammar, importing nothing of kiln, so that `config` (which checks a target
//! group ARN in `[lb]`) and `aws` (which calls the API it names) both read these types without
//! either importing the other. `aws` re-exports them.

use std::fmt;

/// An AWS partition: the ARN's second field, and where its endpoints live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
    AwsIso,
    AwsIsoB,
    AwsIsoE,
    AwsIsoF,
}

impl Partition {
    const ALL: [Partition; 7] = [
        Partition::Aws,
        Partition::AwsCn,
        Partition::AwsUsGov,
        Partition::AwsIso,
        Partition::AwsIsoB,
        Partition::AwsIsoE,
        Partition::AwsIsoF,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsIso => "aws-iso",
            Partition::AwsIsoB => "aws-iso-b",
            Partition::AwsIsoE => "aws-iso-e",
            Partition::AwsIsoF => "aws-iso-f",
        }
    }

    fn parse(text: &str) -> Option<Partition> {
        Partition::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The suffix of the default endpoints' host names (`ssm.REGION.SUFFIX`).
    pub fn dns_suffix(self) -> &'static str {
        match self {
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::AwsIso => "c2s.ic.gov",
            Partition::AwsIsoB => "sc2s.sgov.gov",
            Partition::AwsIsoE => "cloud.adc-e.uk",
            Partition::AwsIsoF => "csp.hci.ic.gov",
        }
    }
}

/// An AWS region name, `[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}`, of a known partition
/// (`eu-west-1`, `cn-north-1`, `us-gov-west-1`, `us-isob-east-1`). Only [`Region::parse`] makes
/// one, so a `Region` is always one DNS label, safe in a host name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region {
    name: String,
    partition: Partition,
}

impl Region {
    /// The region `text` names, or why it is not one (without quoting it).
    pub fn parse(text: &str) -> Result<Region, String> {
        let bad = || "not an AWS region (e.g. eu-west-1)".to_string();
        let fields: Vec<&str> = text.split('-').collect();
        let (country, middle, number) = match fields.as_slice() {
            [country, middle @ .., number] if !middle.is_empty() && middle.len() <= 2 => {
                (*country, middle, *number)
            }
            _ => return Err(bad()),
        };
        let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
        let digits = !number.is_empty() && number.len() <= 2 && number.bytes().all(|b| b.is_ascii_digit());
        if country.len() != 2 || !lower(country) || !digits || !middle.iter().all(|m| lower(m)) {
            return Err(bad());
        }
        let partition = match (country, middle) {
            ("cn", [_]) => Partition::AwsCn,
            (_, [_]) => Partition::Aws,
            (_, ["gov", _]) => Partition::AwsUsGov,
            (_, ["iso", _]) => Partition::AwsIso,
            (_, ["isob", _]) => Partition::AwsIsoB,
            (_, ["isoe", _]) => Partition::AwsIsoE,
            (_, ["isof", _]) => Partition::AwsIsoF,
            _ => return Err(bad()),
        };
        Ok(Region {
            name: text.to_string(),
            partition,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn partition(&self) -> Partition {
        self.partition
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`, checked: a known partition that holds the
/// region, the service asked for, a 12-digit account. `resource` is everything after the
/// account (it may hold `:`); the caller checks its own grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: Partition,
    pub region: Region,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// The ARN of `service` that `text` is, or why it is not one.
    pub fn parse(text: &'a str, service: &str) -> Result<Arn<'a>, String> {
        let shape = || format!("an ARN here is arn:PARTITION:{service}:REGION:ACCOUNT:...");
        let mut fields = text.splitn(6, ':');
        let mut next = || fields.next().ok_or_else(shape);
        let (arn, partition, named, region, account, resource) =
            (next()?, next()?, next()?, next()?, next()?, next()?);
        if arn != "arn" || named != service {
            return Err(shape());
        }
        let partition = Partition::parse(partition)
            .ok_or("the ARN's partition is not an AWS partition (aws, aws-cn, aws-us-gov, ...)")?;
        let region = Region::parse(region).map_err(|e| format!("the ARN's region is {e}"))?;
        if region.partition() != partition {
            return Err(format!(
                "the ARN's region is not in its partition {}",
                partition.as_str()
            ));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the ARN's account is not 12 digits".into());
        }
        Ok(Arn {
            partition,
            region,
            account,
            resource,
        })
    }
}

/// An ELBv2 target group ARN:
/// `arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID`, NAME 1 to 32
/// letters, digits and `-` (not at either end), ID 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupArn {
    text: String,
    region: Region,
}

impl TargetGroupArn {
    pub fn parse(text: &str) -> Result<TargetGroupArn, String> {
        let shape =
            "not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)";
        let arn = Arn::parse(text, "elasticloadbalancing").map_err(|e| format!("{shape}: {e}"))?;
        let (name, id) = arn
            .resource
            .strip_prefix("targetgroup/")
            .and_then(|rest| rest.split_once('/'))
            .ok_or(shape)?;
        let name_ok = (1..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !name_ok {
            return Err(format!(
                "{shape}: a target group name is 1 to 32 letters, digits and '-'"
            ));
        }
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{shape}: a target group id is 16 hex digits"));
        }
        Ok(TargetGroupArn {
            text: text.to_string(),
            region: arn.region,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Where the target group lives, and so where its API is called.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// `NAME/ID`, for messages.
    pub fn name(&self) -> &str {
        self.text.split_once(":targetgroup/").map_or("", |(_, n)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_of_every_partition_and_nothing_else() {
        for (name, partition) in [
            ("eu-west-1", Partition::Aws),
            ("ap-southeast-7", Partition::Aws),
            ("us-east-1", Partition::Aws),
            ("cn-north-1", Partition::AwsCn),
            ("cn-northwest-1", Partition::AwsCn),
            ("us-gov-west-1", Partition::AwsUsGov),
            ("us-iso-east-1", Partition::AwsIso),
            ("us-isob-east-1", Partition::AwsIsoB),
            ("eu-isoe-west-1", Partition::AwsIsoE),
            ("us-isof-south-1", Partition::AwsIsoF),
        ] {
            let region = Region::parse(name).unwrap();
            assert_eq!((region.as_str(), region.partition()), (name, partition));
        }
        for bad in [
            "",
            "x@127.0.0.1/",
            "x@127.0.0.1:9/",
            "eu-west-1.evil.com",
            "eu-west-1/",
            "eu-west-1#",
            "EU-WEST-1",
            "eu-west",
            "eu-west-",
            "eu--1",
            "e-west-1",
            "eur-west-1",
            "eu-west-100",
            "eu-we5t-1",
            "us-isox-east-1",
            "us-gov-west-east-1",
            "eu-west-1 ",
            "local",
            "eu-west-1\n",
        ] {
            let e = Region::parse(bad).unwrap_err();
            assert_eq!(e, "not an AWS region (e.g. eu-west-1)", "{bad:?}");
        }
        assert_eq!(Partition::AwsCn.dns_suffix(), "amazonaws.com.cn");
    }

    #[test]
    fn arns_check_every_field_and_never_quote_them() {
        let arn = Arn::parse("arn:aws:ssm:eu-west-1:123456789012:parameter/app/db:2", "ssm").unwrap();
        assert_eq!(
            (arn.partition, arn.region.as_str(), arn.account, arn.resource),
            (Partition::Aws, "eu-west-1", "123456789012", "parameter/app/db:2")
        );
        let cn = Arn::parse("arn:aws-cn:ssm:cn-north-1:123456789012:parameter/db", "ssm").unwrap();
        assert_eq!(cn.region.partition().dns_suffix(), "amazonaws.com.cn");
        let refused = |text: &str| Arn::parse(text, "ssm").unwrap_err();
        let hostile = refused("arn:aws:ssm:x@127.0.0.1/:123456789012:parameter/app/db");
        assert_eq!(hostile, "the ARN's region is not an AWS region (e.g. eu-west-1)");
        assert!(!hostile.contains("127.0.0.1"));
        assert!(refused("arn:aws:ssm:eu-west-1:1234:parameter/db").contains("12 digits"));
        assert!(refused("arn:evil:ssm:eu-west-1:123456789012:parameter/db").contains("partition"));
        assert!(refused("arn:aws:ssm:cn-north-1:123456789012:parameter/db").contains("partition aws"));
        assert!(refused("arn:aws:s3:eu-west-1:123456789012:b").contains("arn:PARTITION:ssm"));
        assert!(refused("arn:aws:ssm:eu-west-1").contains("arn:PARTITION:ssm"));
    }

    #[test]
    fn target_group_arns() {
        let arn = TargetGroupArn::parse(
            "arn:aws:elasticloadbalancing:eu-west-3:123456789012:targetgroup/app/73e2d6bc24d8a067",
        )
        .unwrap();
        assert_eq!(
            (arn.region().as_str(), arn.name()),
            ("eu-west-3", "app/73e2d6bc24d8a067")
        );
        for bad in [
            "arn:aws:elasticloadbalancing:x@127.0.0.1/:123456789012:targetgroup/app/73e2d6bc24d8a067",
            "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/a/0123456789abcdef",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/a",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/a/b",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/a%2f/0123456789abcdef",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/a/0123456789abcdef",
            "arn:aws:s3:::bucket",
        ] {
            let e = TargetGroupArn::parse(bad).unwrap_err();
            assert!(e.starts_with("not a target group ARN"), "{bad}: {e}");
        }
    }
}
