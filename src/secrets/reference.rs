//! The reference syntax: `<scheme>:<what>`, for schemes `[secrets] schemes` turns on.
//!
//! | scheme | form | as in |
//! | --- | --- | --- |
//! | `ssm` | `ssm:/app/prod/db`, `ssm:/app/prod/db:3` (version), `ssm:/app/prod/db:live` (label), `ssm:arn:aws:ssm:R:A:parameter/app/prod/db`, `ssm:///app/prod/db` | SSM's own `name:selector`; ssm-env's `ssm://`; secrets-init's ARNs |
//! | `secretsmanager` | `secretsmanager:NAME-or-ARN[:json-key[:version-stage[:version-id]]]` | ECS task definitions' `valueFrom` |
//! | `gcp` | `gcp:projects/P/secrets/S[/versions/N\|latest]`, also `gcp:secretmanager:projects/...` | GCP resource names; secrets-init |
//! | `keyvault` | `keyvault:VAULT/NAME[/VERSION]`, `keyvault:https://VAULT.vault.azure.net/secrets/NAME[/VERSION]` | Key Vault secret identifiers |

use crate::aws::{Arn, Region};
use crate::config::{Scheme, SecretsConfig};
use std::fmt;

/// A parsed reference. `Display` gives it back as written (names, never values).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// As written, e.g. `ssm:/app/prod/db:3`.
    pub text: String,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Ssm(SsmParameter),
    SecretsManager(SecretsManagerSecret),
    Gcp(GcpSecret),
    KeyVault(KeyVaultSecret),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SsmParameter {
    /// What GetParameters is asked: name or ARN, with its `:selector`.
    pub request: String,
    /// The parameter's name (`/app/prod/db`), to find it in the answer.
    pub name: String,
    /// The ARN's region, when given by ARN.
    pub region: Option<Region>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretsManagerSecret {
    /// Name or ARN.
    pub id: String,
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
    pub region: Option<Region>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GcpSecret {
    pub project: String,
    pub secret: String,
    /// A number or `latest`.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyVaultSecret {
    pub vault: String,
    pub name: String,
    pub version: Option<String>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Reference {
    /// None when `value` is not a reference under `config` (no enabled scheme prefix); an error
    /// when it has an enabled prefix but is not a valid reference. Errors say why and never
    /// quote the value: a value with a reference's prefix may be a pasted secret, or a hostile
    /// one (user-data, tags) built to show up in a log.
    pub fn parse(value: &str, config: &SecretsConfig) -> Option<Result<Reference, String>> {
        let (scheme, rest) = value.split_once(':')?;
        let scheme = Scheme::ALL.into_iter().find(|s| s.as_str() == scheme)?;
        if !config.enables(scheme) {
            return None;
        }
        let target = match scheme {
            Scheme::Ssm => parse_ssm(rest).map(Target::Ssm),
            Scheme::Secretsmanager => parse_secrets_manager(rest).map(Target::SecretsManager),
            Scheme::Gcp => parse_gcp(rest).map(Target::Gcp),
            Scheme::Keyvault => parse_key_vault(rest).map(Target::KeyVault),
        };
        Some(
            target
                .map(|target| Reference {
                    text: value.to_string(),
                    target,
                })
                .map_err(|e| format!("the value is not a valid {scheme} reference: {e}")),
        )
    }

    pub fn scheme(&self) -> Scheme {
        match self.target {
            Target::Ssm(_) => Scheme::Ssm,
            Target::SecretsManager(_) => Scheme::Secretsmanager,
            Target::Gcp(_) => Scheme::Gcp,
            Target::KeyVault(_) => Scheme::Keyvault,
        }
    }
}

fn is_name_char(c: char, extra: &str) -> bool {
    c.is_ascii_alphanumeric() || extra.contains(c)
}

fn parse_ssm(rest: &str) -> Result<SsmParameter, String> {
    // ssm-env writes ssm://NAME: the name follows the two slashes.
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (name, selector, region, arn) = if rest.starts_with("arn:") {
        let parsed = Arn::parse(rest, "ssm")?;
        let (resource, selector) = match parsed.resource.split_once(':') {
            Some((resource, selector)) => (resource, Some(selector)),
            None => (parsed.resource, None),
        };
        let path = resource
            .strip_prefix("parameter/")
            .ok_or("an SSM ARN's resource is parameter/NAME")?;
        // arn:...:parameter/app/db names /app/db; arn:...:parameter/db names db.
        let name = if path.contains('/') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let arn = match selector {
            Some(s) => &rest[..rest.len() - s.len() - 1],
            None => rest,
        };
        (name, selector, Some(parsed.region), Some(arn))
    } else {
        match rest.split_once(':') {
            Some((name, selector)) => (name.to_string(), Some(selector), None, None),
            None => (rest.to_string(), None, None, None),
        }
    };
    if name.is_empty() || name.ends_with('/') || !name.chars().all(|c| is_name_char(c, "/_.-")) {
        return Err(
            "a parameter name holds letters, digits, '/', '_', '.', '-' and does not end in '/'".into(),
        );
    }
    if let Some(selector) = selector
        && (selector.is_empty() || selector.len() > 100 || !selector.chars().all(|c| is_name_char(c, "_.-")))
    {
        return Err("after ':' comes a version number or a label".into());
    }
    let base = arn.map(str::to_string).unwrap_or_else(|| name.clone());
    let request = match selector {
        Some(s) => format!("{base}:{s}"),
        None => base,
    };
    Ok(SsmParameter {
        request,
        name,
        region,
    })
}

fn parse_secrets_manager(rest: &str) -> Result<SecretsManagerSecret, String> {
    let secret_name = |name: &str| {
        if name.is_empty() || name.len() > 512 || !name.chars().all(|c| is_name_char(c, "/_+=.@-")) {
            return Err("a secret name is 1 to 512 letters, digits and '/_+=.@-'".to_string());
        }
        Ok(())
    };
    let (id, region, fields): (String, Option<Region>, Vec<&str>) = if rest.starts_with("arn:") {
        let parsed = Arn::parse(rest, "secretsmanager")?;
        let mut extra = parsed
            .resource
            .strip_prefix("secret:")
            .ok_or("a Secrets Manager ARN is arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME")?
            .split(':');
        secret_name(extra.next().unwrap_or(""))?;
        let arn_len = rest.len() - extra.clone().map(|f| f.len() + 1).sum::<usize>();
        (rest[..arn_len].to_string(), Some(parsed.region), extra.collect())
    } else {
        let mut fields = rest.split(':');
        let name = fields.next().unwrap_or("");
        secret_name(name)?;
        (name.to_string(), None, fields.collect())
    };
    if fields.len() > 3 {
        return Err("at most :json-key:version-stage:version-id after the secret".into());
    }
    let field = |i: usize| fields.get(i).filter(|f| !f.is_empty()).map(|f| f.to_string());
    let (version_stage, version_id) = (field(1), field(2));
    if version_stage.is_some() && version_id.is_some() {
        return Err("give a version stage or a version id, not both".into());
    }
    Ok(SecretsManagerSecret {
        id,
        json_key: field(0),
        version_stage,
        version_id,
        region,
    })
}

fn parse_gcp(rest: &str) -> Result<GcpSecret, String> {
    let rest = rest.strip_prefix("secretmanager:").unwrap_or(rest);
    let parts: Vec<&str> = rest.split('/').collect();
    let (project, secret, version) = match parts.as_slice() {
        ["projects", p, "secrets", s] => (*p, *s, "latest"),
        ["projects", p, "secrets", s, "versions", v] => (*p, *s, *v),
        _ => return Err("give projects/PROJECT/secrets/SECRET[/versions/VERSION]".into()),
    };
    if !is_gcp_project(project) {
        return Err("a project is its id (6 to 30 lower-case letters, digits and '-') or its number".into());
    }
    if secret.is_empty() || secret.len() > 255 || !secret.chars().all(|c| is_name_char(c, "_-")) {
        return Err("a secret id is 1 to 255 letters, digits, '_' and '-'".into());
    }
    let number = !version.is_empty() && version.len() <= 20 && version.chars().all(|c| c.is_ascii_digit());
    if version != "latest" && !number {
        return Err("a version is a number or latest".into());
    }
    Ok(GcpSecret {
        project: project.into(),
        secret: secret.into(),
        version: version.into(),
    })
}

/// A GCP project id (`[a-z][a-z0-9-]{4,28}[a-z0-9]`), optionally scoped by a domain
/// (`example.com:my-project`), or a project number.
fn is_gcp_project(project: &str) -> bool {
    let id = |s: &str| {
        (6..=30).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let number = (1..=20).contains(&project.len()) && project.chars().all(|c| c.is_ascii_digit());
    match project.split_once(':') {
        Some((domain, project)) => domain.len() <= 253 && domain.split('.').all(label) && id(project),
        None => number || id(project),
    }
}

/// Key Vault's host for `vault` in the public cloud, the one kiln reads by default.
const KEY_VAULT_SUFFIX: &str = ".vault.azure.net";

fn parse_key_vault(rest: &str) -> Result<KeyVaultSecret, String> {
    let (vault, path) = match rest.strip_prefix("https://") {
        Some(url) => {
            let (host, path) = url
                .split_once('/')
                .ok_or("give https://VAULT.vault.azure.net/secrets/NAME")?;
            let vault = host.split('.').next().unwrap_or("");
            if !host
                .get(vault.len()..)
                .is_some_and(|suffix| suffix.eq_ignore_ascii_case(KEY_VAULT_SUFFIX))
            {
                return Err(
                    "a secret identifier's host is VAULT.vault.azure.net (else give VAULT/NAME)".into(),
                );
            }
            let path = path
                .strip_prefix("secrets/")
                .ok_or("a secret identifier's path is /secrets/NAME[/VERSION]")?;
            (vault, path)
        }
        None => rest.split_once('/').ok_or("give VAULT/NAME[/VERSION]")?,
    };
    let mut parts = path.trim_end_matches('/').split('/');
    let name = parts.next().unwrap_or("");
    let version = parts.next().map(str::to_string);
    if parts.next().is_some() {
        return Err("give VAULT/NAME[/VERSION]".into());
    }
    let vault_ok = (3..=24).contains(&vault.len())
        && vault.chars().all(|c| is_name_char(c, "-"))
        && vault.starts_with(|c: char| c.is_ascii_alphabetic())
        && !vault.ends_with('-')
        && !vault.contains("--");
    if !vault_ok {
        return Err("a vault name is 3 to 24 letters, digits and '-', starting with a letter".into());
    }
    if name.is_empty() || name.len() > 127 || !name.chars().all(|c| is_name_char(c, "-")) {
        return Err("a secret name is 1 to 127 letters, digits and '-'".into());
    }
    if version
        .as_deref()
        .is_some_and(|v| v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err("a version is letters and digits".into());
    }
    Ok(KeyVaultSecret {
        vault: vault.into(),
        name: name.into(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schemes: &str) -> SecretsConfig {
        toml::from_str(schemes).unwrap()
    }

    fn parse(value: &str) -> Target {
        Reference::parse(value, &config("")).unwrap().unwrap().target
    }

    fn error(value: &str) -> String {
        Reference::parse(value, &config("")).unwrap().unwrap_err()
    }

    #[test]
    fn only_enabled_schemes_make_references() {
        let ssm_only = config("schemes = [\"ssm\"]");
        assert!(Reference::parse("ssm:/app/db", &ssm_only).is_some());
        assert!(Reference::parse("gcp:projects/p/secrets/s", &ssm_only).is_none());
        assert!(Reference::parse("postgres://u@h/db", &ssm_only).is_none());
        assert!(Reference::parse("plain value", &ssm_only).is_none());
        assert!(Reference::parse("SSM:/app/db", &ssm_only).is_none());
    }

    #[test]
    fn ssm_names_versions_labels_and_arns() {
        let p = |v| match parse(v) {
            Target::Ssm(p) => (p.request, p.name, p.region),
            t => panic!("{t:?}"),
        };
        assert_eq!(p("ssm:/app/db"), ("/app/db".into(), "/app/db".into(), None));
        assert_eq!(p("ssm:/app/db:3"), ("/app/db:3".into(), "/app/db".into(), None));
        assert_eq!(
            p("ssm:///app/db:live"),
            ("/app/db:live".into(), "/app/db".into(), None)
        );
        assert_eq!(p("ssm://db"), ("db".into(), "db".into(), None));
        assert_eq!(
            p("ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/app/db:2"),
            (
                "arn:aws:ssm:eu-west-1:123456789012:parameter/app/db:2".into(),
                "/app/db".into(),
                Region::parse("eu-west-1").ok()
            )
        );
        assert!(error("ssm:").contains("parameter name"));
        assert!(error("ssm:/app/").contains("parameter name"));
        assert!(error("ssm:/app/db:").contains("version number or a label"));
        assert!(error("ssm:arn:aws:s3:::bucket").contains("arn:PARTITION:ssm"));
    }

    #[test]
    fn secrets_manager_like_ecs_value_from() {
        let s = |v| match parse(v) {
            Target::SecretsManager(s) => s,
            t => panic!("{t:?}"),
        };
        let plain = s("secretsmanager:app/rds");
        assert_eq!(
            (plain.id.as_str(), plain.json_key, plain.region),
            ("app/rds", None, None)
        );
        let key = s("secretsmanager:app/rds:password::");
        assert_eq!(key.json_key.as_deref(), Some("password"));
        let staged = s("secretsmanager:app/rds::AWSPREVIOUS");
        assert_eq!(staged.version_stage.as_deref(), Some("AWSPREVIOUS"));
        let arn =
            s("secretsmanager:arn:aws:secretsmanager:us-east-1:123456789012:secret:app/rds-AbCdEf:password");
        assert_eq!(
            arn.id,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/rds-AbCdEf"
        );
        assert_eq!(arn.json_key.as_deref(), Some("password"));
        assert_eq!(arn.region.as_ref().map(Region::as_str), Some("us-east-1"));
        assert!(error("secretsmanager:a:k:STAGE:id").contains("not both"));
        assert!(error("secretsmanager:a:1:2:3:4").contains("at most"));
    }

    #[test]
    fn gcp_and_key_vault() {
        assert_eq!(
            parse("gcp:projects/proj-1/secrets/db"),
            Target::Gcp(GcpSecret {
                project: "proj-1".into(),
                secret: "db".into(),
                version: "latest".into()
            })
        );
        assert!(
            matches!(parse("gcp:secretmanager:projects/proj-1/secrets/db/versions/3"), Target::Gcp(g) if g.version == "3")
        );
        assert!(error("gcp:projects/proj-1/db").contains("projects/PROJECT"));
        assert_eq!(
            parse("keyvault:my-vault/db-password"),
            Target::KeyVault(KeyVaultSecret {
                vault: "my-vault".into(),
                name: "db-password".into(),
                version: None
            })
        );
        assert!(matches!(
            parse("keyvault:https://my-vault.vault.azure.net/secrets/db/0123abcd"),
            Target::KeyVault(k) if k.vault == "my-vault" && k.version.as_deref() == Some("0123abcd")
        ));
        assert!(error("keyvault:v/db").contains("vault name"));
    }

    #[test]
    fn a_hostile_arn_is_refused_without_being_quoted() {
        for (value, why) in [
            (
                "ssm:arn:aws:ssm:x@127.0.0.1/:123456789012:parameter/app/db",
                "the ARN's region is not an AWS region (e.g. eu-west-1)",
            ),
            (
                "ssm:arn:aws:ssm:eu-west-1.evil.example:123456789012:parameter/app/db",
                "the ARN's region is not an AWS region (e.g. eu-west-1)",
            ),
            (
                "secretsmanager:arn:aws:secretsmanager:x@127.0.0.1:9/:123456789012:secret:app/rds",
                "the ARN's region is not an AWS region (e.g. eu-west-1)",
            ),
            (
                "ssm:arn:aws:ssm:eu-west-1:evil:parameter/app/db",
                "the ARN's account is not 12 digits",
            ),
            (
                "secretsmanager:arn:aws:secretsmanager:us-east-1:123456789012:secret:a#b",
                "a secret name is 1 to 512 letters, digits and '/_+=.@-'",
            ),
        ] {
            let e = error(value);
            let scheme = value.split(':').next().unwrap();
            assert_eq!(
                e,
                format!("the value is not a valid {scheme} reference: {why}"),
                "{value}"
            );
            assert!(!e.contains("127.0.0.1") && !e.contains("evil"), "{e}");
        }
        assert!(matches!(
            parse("ssm:arn:aws-cn:ssm:cn-north-1:123456789012:parameter/db"),
            Target::Ssm(p) if p.region.as_ref().unwrap().partition() == crate::aws::Partition::AwsCn
        ));
    }

    #[test]
    fn gcp_and_key_vault_names_that_reach_a_url_follow_their_grammar() {
        assert!(
            matches!(parse("gcp:projects/123456789/secrets/db"), Target::Gcp(g) if g.project == "123456789")
        );
        assert!(matches!(
            parse("gcp:projects/example.com:my-project/secrets/db_url-2"),
            Target::Gcp(g) if g.project == "example.com:my-project"
        ));
        for bad in [
            "gcp:projects/../secrets/db",
            "gcp:projects/proj-1/secrets/..",
            "gcp:projects/proj-1/secrets/db/versions/..",
            "gcp:projects/My-Project/secrets/db",
            "gcp:projects/evil.com@x/secrets/db",
            "gcp:projects/short/secrets/db",
            "gcp:projects/p1%2f/secrets/db",
        ] {
            assert!(Reference::parse(bad, &config("")).unwrap().is_err(), "{bad}");
        }
        for bad in [
            "keyvault:https://my-vault.evil.example/secrets/db",
            "keyvault:https://my-vault.vault.azure.net.evil.example/secrets/db",
            "keyvault:https://my-vault.vault.azure.net:8443/secrets/db",
            "keyvault:-vault/db",
            "keyvault:my--vault/db",
            "keyvault:9vault/db",
            "keyvault:my-vault/..",
        ] {
            assert!(Reference::parse(bad, &config("")).unwrap().is_err(), "{bad}");
        }
        assert!(matches!(
            parse("keyvault:https://My-Vault.VAULT.azure.net/secrets/db"),
            Target::KeyVault(k) if k.vault == "My-Vault"
        ));
    }
}
