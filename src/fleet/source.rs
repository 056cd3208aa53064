//! Which load balancer `kiln fleet` asks, and its answer in one shape: the `[lb]` settings of
//! the config, overridden by flags (for an operator's laptop), through kiln's own clients.

use super::words::LbView;
use crate::aws_names::TargetGroupArn;
use crate::config::LbConfig;
use crate::config::lb::{ConsulPlan, Elbv2Plan, HaproxyPlan, LbKind, LbName, LbPlan, RuntimeSocket};
use crate::lb::LbError;
use crate::lb::consul::ConsulApi;
use crate::lb::elbv2::{CredentialSource, TargetGroup};
use crate::lb::haproxy::RuntimeApi;
use crate::terminal::peer_text;

/// `[lb]` keys that flags override.
#[derive(Debug, Clone, Default)]
pub struct LbFlags {
    pub socket: Option<String>,
    pub backend: Option<String>,
    pub agent: Option<String>,
    pub service: Option<String>,
    pub target_group_arn: Option<String>,
}

impl LbFlags {
    /// The kind the flags given belong to, None when no flag is given.
    fn kind(&self) -> Result<Option<LbKind>, String> {
        let given = [
            (LbKind::Haproxy, self.socket.is_some() || self.backend.is_some()),
            (LbKind::Consul, self.agent.is_some() || self.service.is_some()),
            (LbKind::Elbv2, self.target_group_arn.is_some()),
        ];
        let mut kinds = given.iter().filter(|(_, given)| *given).map(|(kind, _)| *kind);
        match (kinds.next(), kinds.next()) {
            (Some(_), Some(_)) => Err(
                "--socket/--backend (HAProxy), --agent/--service (Consul) and --target-group-arn \
                 (ELBv2) ask different load balancers: give the flags of one"
                    .into(),
            ),
            (kind, _) => Ok(kind),
        }
    }
}

/// One member as the load balancer lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    /// Where the load balancer sends its traffic, `HOST:PORT`; for an ELBv2 `instance` target,
    /// which the target group names by instance id only, the instance's private address from
    /// EC2 (None when EC2 could not say).
    pub address: Option<String>,
    /// The host part of `address`, where its kiln is asked too.
    pub host: Option<String>,
    pub view: LbView,
    /// The load balancer's own word for its state.
    pub word: String,
    /// The instance id its kiln must report, when the load balancer names it by one (ELBv2
    /// `instance` targets): a kiln that answers at its address as another instance is not it.
    pub instance_id: Option<String>,
    /// Why `host` is None, when kiln knows (EC2 did not give the instance's address).
    pub no_host: Option<String>,
    /// The port the load balancer sends traffic to, when it names one apart from an address
    /// (ELBv2 targets).
    pub port: Option<u16>,
}

/// A load balancer to list the members of.
pub enum Source {
    Haproxy { api: RuntimeApi, backend: LbName },
    Consul { api: ConsulApi, service: LbName },
    Elbv2 { group: TargetGroup },
}

impl Source {
    /// From the config's `[lb]` plan (`from`: the file it was read from, if any) and the flags.
    /// Any problem is a sentence naming the key or flag.
    pub fn resolve(lb: &LbConfig, flags: &LbFlags, from: Option<&str>) -> Result<Source, String> {
        let flagged = flags.kind()?;
        if let (Some(flagged), Some(plan)) = (flagged, &lb.plan)
            && flagged != plan.kind()
        {
            return Err(format!(
                "the flags ask {} but [lb] kind = {:?} in {}",
                flagged.name(),
                plan.kind().name(),
                from.unwrap_or("the config")
            ));
        }
        match (flagged, &lb.plan) {
            (_, Some(LbPlan::Haproxy(plan))) => haproxy(flags, Some(plan)),
            (_, Some(LbPlan::Consul(plan))) => consul(flags, Some(plan)),
            (_, Some(LbPlan::Elbv2(plan))) => elbv2(flags, Some(plan)),
            (Some(LbKind::Haproxy), None) => haproxy(flags, None),
            (Some(LbKind::Consul), None) => consul(flags, None),
            (Some(LbKind::Elbv2), None) => elbv2(flags, None),
            (Some(LbKind::None) | None, None) => Err(no_load_balancer(from)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Source::Haproxy { .. } => "haproxy",
            Source::Consul { .. } => "consul",
            Source::Elbv2 { .. } => "elbv2",
        }
    }

    /// `haproxy backend app (/run/haproxy/admin.sock)`.
    pub fn describe(&self) -> String {
        match self {
            Source::Haproxy { api, backend } => format!("haproxy backend {backend} ({})", api.socket()),
            Source::Consul { api, service } => format!("consul service {service} ({})", api.agent()),
            Source::Elbv2 { group } => format!("elbv2 {}", group.describe()),
        }
    }

    /// Every member, as the load balancer sees it now. What it says is kept as
    /// [`peer_text`]: names, addresses and states are printed, and an error is shown whole.
    pub async fn members(&self) -> Result<Vec<Listed>, LbError> {
        let listed = self.listed().await.map_err(|e| LbError(peer_text(&e.0)))?;
        Ok(listed
            .into_iter()
            .map(|l| Listed {
                name: peer_text(&l.name),
                address: l.address.as_deref().map(peer_text),
                word: peer_text(&l.word),
                ..l
            })
            .collect())
    }

    async fn listed(&self) -> Result<Vec<Listed>, LbError> {
        match self {
            Source::Haproxy { api, backend, .. } => Ok(api
                .servers(backend.as_str())
                .await?
                .into_iter()
                .map(|s| Listed {
                    host: Some(host_of(&s.addr)),
                    view: haproxy_view(&s.status),
                    name: s.name,
                    address: Some(s.addr),
                    word: s.status,
                    instance_id: None,
                    no_host: None,
                    port: None,
                })
                .collect()),
            Source::Consul { api, service } => Ok(api
                .service_health(service.as_str())
                .await?
                .into_iter()
                .map(|h| Listed {
                    address: Some(join_host_port(&h.address, h.port)),
                    view: consul_view(&h.status),
                    name: h.id,
                    host: Some(h.address),
                    word: h.status,
                    instance_id: None,
                    no_host: None,
                    port: None,
                })
                .collect()),
            Source::Elbv2 { group } => {
                let mut listed: Vec<Listed> = group.members().await?.into_iter().map(elbv2_listed).collect();
                place_instances(group, &mut listed).await;
                Ok(listed)
            }
        }
    }
}

/// ELBv2 `instance` targets get their instance's private address from EC2 `DescribeInstances`:
/// the target group sends them traffic there, at the target's port.
async fn place_instances(group: &TargetGroup, listed: &mut [Listed]) {
    let ids: Vec<String> = listed.iter().filter_map(|l| l.instance_id.clone()).collect();
    if ids.is_empty() {
        return;
    }
    let addresses = match super::ec2::api(group.api()) {
        Ok(ec2) => {
            let deadline = tokio::time::Instant::now() + crate::net::API_CALL_BUDGET;
            super::ec2::addresses(&ec2, &ids, deadline).await
        }
        Err(e) => ids.iter().map(|id| (id.clone(), Err(e.clone()))).collect(),
    };
    for l in listed.iter_mut() {
        let Some(found) = l.instance_id.as_ref().and_then(|id| addresses.get(id)) else {
            continue;
        };
        match found {
            Ok(ip) => {
                l.address = Some(match l.port {
                    Some(port) => join_host_port(ip, port),
                    None => ip.clone(),
                });
                l.host = Some(ip.clone());
            }
            Err(why) => l.no_host = Some(why.clone()),
        }
    }
}

/// Why there is nothing to ask.
fn no_load_balancer(from: Option<&str>) -> String {
    let why = match from {
        Some(file) => format!("{file} has no [lb]"),
        None => format!("no --config and no {}", crate::config::DEFAULT_PATH),
    };
    format!(
        "no load balancer to ask ({why}): give --socket and --backend (HAProxy) or \
         --service [--agent] (Consul)"
    )
}

/// `--socket` and `--backend` over `[lb]`'s, the flags checked as the config's keys are.
fn haproxy(flags: &LbFlags, planned: Option<&HaproxyPlan>) -> Result<Source, String> {
    // Refused in this order: no socket, the backend, a socket that is not one.
    let socket = match (&flags.socket, planned) {
        (Some(socket), _) => RuntimeSocket::parse(socket),
        (None, Some(plan)) => Ok(plan.socket.clone()),
        (None, None) => {
            return Err("HAProxy: give --socket (the runtime API: a path or tcp:HOST:PORT)".into());
        }
    };
    let backend = match (&flags.backend, planned) {
        (Some(backend), _) => LbName::parse(backend).map_err(|e| format!("backend {backend:?}: {e}"))?,
        (None, Some(plan)) => plan.backend.clone(),
        (None, None) => return Err("HAProxy: give --backend".into()),
    };
    let socket = socket?;
    Ok(Source::Haproxy {
        api: RuntimeApi::new(socket),
        backend,
    })
}

/// `--service` and `--agent` over `[lb]`'s (the agent: the local one by default).
fn consul(flags: &LbFlags, planned: Option<&ConsulPlan>) -> Result<Source, String> {
    let service = match (&flags.service, planned) {
        (Some(service), _) => LbName::parse(service).map_err(|e| format!("service {service:?}: {e}"))?,
        (None, Some(plan)) => plan.service.clone(),
        (None, None) => return Err("Consul: give --service".into()),
    };
    let agent = match (&flags.agent, planned) {
        (Some(agent), _) if !(agent.starts_with("http://") || agent.starts_with("https://")) => {
            return Err(format!("agent {agent:?}: give an http:// or https:// URL"));
        }
        (Some(agent), _) => agent.as_str(),
        (None, Some(plan)) => plan.agent.as_str(),
        (None, None) => ConsulPlan::DEFAULT_AGENT,
    };
    Ok(Source::Consul {
        api: ConsulApi::new(agent).map_err(|e| e.0)?,
        service,
    })
}

/// `--target-group-arn` over `[lb]`'s, at `[lb]`'s endpoint, with credentials from kiln's
/// environment or the instance role (`[lb] imds_endpoint`).
fn elbv2(flags: &LbFlags, planned: Option<&Elbv2Plan>) -> Result<Source, String> {
    let arn = match (&flags.target_group_arn, planned) {
        (Some(arn), _) => TargetGroupArn::parse(arn).map_err(|e| format!("target group {arn:?}: {e}"))?,
        (None, Some(plan)) => plan.target_group_arn.clone(),
        (None, None) => return Err("[lb] target_group_arn is required".into()),
    };
    let endpoint = planned.and_then(|p| p.endpoint.as_ref());
    let imds = planned
        .and_then(|p| p.imds_endpoint.as_deref())
        .unwrap_or(crate::net::METADATA);
    let credentials = CredentialSource::from_env(imds).map_err(|e| format!("elbv2: {e}"))?;
    let group = TargetGroup::new(&arn, endpoint, credentials).map_err(|e| e.0)?;
    Ok(Source::Elbv2 { group })
}

/// An ELBv2 target: an `ip` target's id is its address; an `instance` target's id is an
/// instance id, placed by [`place_instances`].
fn elbv2_listed(t: crate::lb::elbv2::TargetHealth) -> Listed {
    let ip = t.id.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string());
    Listed {
        address: ip.as_deref().map(|ip| match t.port {
            Some(port) => join_host_port(ip, port),
            None => ip.to_string(),
        }),
        instance_id: ip.is_none().then(|| t.id.clone()),
        host: ip,
        view: elbv2_view(&t.state),
        name: t.id,
        word: t.state,
        no_host: None,
        port: t.port,
    }
}

/// ELBv2 target states: `initial`, `healthy`, `unhealthy`, `unused`, `draining`, `unavailable`.
fn elbv2_view(state: &str) -> LbView {
    match state {
        "healthy" => LbView::InService,
        "initial" => LbView::Joining,
        "draining" => LbView::Draining,
        "unused" => LbView::Maintenance,
        _ => LbView::Down,
    }
}

/// HAProxy's `show stat` status: `UP`, `UP 1/3` (going down, still taking traffic), `no check`,
/// `DOWN`, `DOWN 1/2` (going up), `DRAIN`, `NOLB`, `MAINT`, `MAINT (via b/s)`...
fn haproxy_view(status: &str) -> LbView {
    match status {
        s if s.starts_with("UP") || s == "no check" => LbView::InService,
        s if s.starts_with("DRAIN") || s.starts_with("NOLB") => LbView::Draining,
        s if s.starts_with("MAINT") => LbView::Maintenance,
        _ => LbView::Down,
    }
}

/// Consul's aggregated status; `warning` instances are still served (as Consul's DNS does).
fn consul_view(status: &str) -> LbView {
    match status {
        "passing" | "warning" => LbView::InService,
        "maintenance" => LbView::Maintenance,
        _ => LbView::Down,
    }
}

/// A member's host as `kiln fleet` asks it: an IP address, or a DNS name (1 to 253
/// characters, labels of letters, digits, `-` and `_`, the last one starting with a letter).
/// Anything else a load balancer lists (`10.0.0.5/x?`, `user@10.0.0.5`) would make the URL
/// kiln asks point somewhere else.
pub fn is_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last_is_a_name = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()));
    (1..=253).contains(&host.len()) && host.split('.').all(label) && last_is_a_name
}

/// `http://HOST:PORT/readyz?verbose` for a health address `HOST:PORT` (IPv6 in brackets), the
/// host and port set as parts of the URL; None when it is not one.
pub fn health_url(health: &str) -> Option<reqwest::Url> {
    let (host, port) = health.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let v6 = bare.parse::<std::net::Ipv6Addr>().is_ok();
    if !is_host(bare) || (v6 && bare == host) || (!v6 && bare != host) {
        return None;
    }
    let mut url = reqwest::Url::parse("http://127.0.0.1/readyz?verbose").ok()?;
    url.set_host(Some(host)).ok()?;
    url.set_port(Some(port)).ok()?;
    Some(url)
}

/// `10.0.0.5:8080` → `10.0.0.5`; `[::1]:8080` → `::1`; a bare host is returned as is.
pub fn host_of(address: &str) -> String {
    match address.rsplit_once(':') {
        Some((host, port))
            if port.parse::<u16>().is_ok() && (!host.contains(':') || host.starts_with('[')) =>
        {
            host.trim_start_matches('[').trim_end_matches(']').to_string()
        }
        _ => address.trim_start_matches('[').trim_end_matches(']').to_string(),
    }
}

/// `HOST:PORT`, with an IPv6 host in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_hosts_and_back() {
        assert_eq!(host_of("10.0.0.5:8080"), "10.0.0.5");
        assert_eq!(host_of("[::1]:8080"), "::1");
        assert_eq!(host_of("10.0.0.5"), "10.0.0.5");
        assert_eq!(host_of("fd00::5"), "fd00::5");
        assert_eq!(join_host_port("::1", 9100), "[::1]:9100");
        assert_eq!(join_host_port("10.0.0.5", 9100), "10.0.0.5:9100");
    }

    #[test]
    fn only_hosts_make_health_urls() {
        for host in ["10.0.0.5", "fd00::5", "web-1.internal", "web_1", "localhost"] {
            assert!(is_host(host), "{host}");
        }
        for bad in [
            "",
            "10.0.0.5/x?",
            "user@10.0.0.5",
            "a b",
            "-web",
            "web.",
            "x.123",
            "0x7f.1",
            "a#b",
            "[::1]",
        ] {
            assert!(!is_host(bad), "{bad}");
        }
        assert_eq!(
            health_url("10.0.0.5:9100").unwrap().as_str(),
            "http://10.0.0.5:9100/readyz?verbose"
        );
        assert_eq!(
            health_url("[fd00::5]:9100").unwrap().as_str(),
            "http://[fd00::5]:9100/readyz?verbose"
        );
        for bad in [
            "127.0.0.77/?:9100",
            "user@10.0.0.5:9100",
            "fd00::5:9100",
            "10.0.0.5",
            "a:0",
        ] {
            assert_eq!(health_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn elbv2_ip_targets_have_an_address_instance_targets_an_instance_id() {
        let target = |id: &str, state: &str| crate::lb::elbv2::TargetHealth {
            id: id.into(),
            port: Some(8080),
            state: state.into(),
            reason: None,
        };
        let ip = elbv2_listed(target("10.0.0.5", "healthy"));
        assert_eq!(
            (ip.address.as_deref(), ip.host.as_deref(), ip.view),
            (Some("10.0.0.5:8080"), Some("10.0.0.5"), LbView::InService)
        );
        let instance = elbv2_listed(target("i-0abc", "draining"));
        assert_eq!(
            (instance.address, instance.host, instance.view),
            (None, None, LbView::Draining)
        );
        assert_eq!(
            (instance.instance_id.as_deref(), ip.instance_id, instance.port),
            (Some("i-0abc"), None, Some(8080))
        );
        assert_eq!(elbv2_view("initial"), LbView::Joining);
        assert_eq!(elbv2_view("unhealthy"), LbView::Down);
    }

    #[test]
    fn haproxy_words_map_to_views() {
        assert_eq!(haproxy_view("UP 1/3"), LbView::InService);
        assert_eq!(haproxy_view("no check"), LbView::InService);
        assert_eq!(haproxy_view("DOWN 1/2"), LbView::Down);
        assert_eq!(haproxy_view("DRAIN (agent)"), LbView::Draining);
        assert_eq!(haproxy_view("MAINT (via app/x)"), LbView::Maintenance);
    }

    #[test]
    fn flags_of_two_kinds_or_against_the_config_are_refused() {
        let flags = LbFlags {
            socket: Some("/s".into()),
            service: Some("app".into()),
            ..LbFlags::default()
        };
        let err = Source::resolve(&LbConfig::default(), &flags, Some("x.toml"))
            .err()
            .unwrap();
        assert!(err.contains("give the flags of one"), "{err}");
        let consul: crate::config::LbTable =
            toml::from_str("kind = \"consul\"\nservice = \"app\"\naddress = \"{local_ipv4}:80\"").unwrap();
        let consul = consul.check().unwrap();
        let flags = LbFlags {
            socket: Some("/s".into()),
            backend: Some("app".into()),
            ..LbFlags::default()
        };
        let err = Source::resolve(&consul, &flags, Some("x.toml")).err().unwrap();
        assert_eq!(err, "the flags ask haproxy but [lb] kind = \"consul\" in x.toml");
        let err = Source::resolve(&LbConfig::default(), &LbFlags::default(), Some("x.toml"))
            .err()
            .unwrap();
        assert!(
            err.starts_with("no load balancer to ask (x.toml has no [lb])"),
            "{err}"
        );
    }
}
