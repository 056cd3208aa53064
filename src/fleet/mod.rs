//! `kiln fleet`: one look at every instance behind the load balancer. Read-only: it asks the
//! load balancer who is in it (`source`), asks each member's kiln for its verbose `/readyz`
//! (`ask`), puts both answers together into a state per member and a verdict (`assess`), and
//! shows them (`render`); `words` are what those share (the image a member runs, the load
//! balancer's view of it). It never changes the load balancer or an instance.
//!
//! Each member's kiln is asked at the host the load balancer sends it traffic to, on the health
//! port (`--health-port`, else the port of `[health] listen`): the instances of one fleet come
//! from one image and listen alike. ELBv2 `instance` targets (what an Auto Scaling group
//! registers) have no address in the target group: EC2 `DescribeInstances` gives their private
//! address (`ec2`); one EC2 cannot place takes the answer of the `--instance` whose kiln reports
//! that instance id.

mod ask;
mod assess;
mod ec2;
mod render;
mod source;
mod words;

pub use ask::{KilnView, Pin};
pub use assess::{ImageCount, MemberState, Verdict};
pub use words::{Image, LbView};

use crate::config::{HealthConfig, HumanDuration, LbConfig, LbTable};
use assess::{Assessment, Sighting};
use serde::Serialize;
use source::LbFlags;
pub use source::Source;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The flags of `kiln fleet`.
#[derive(Debug, clap::Args)]
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "these comments are the --help text, which names config sections as [lb]"
)]
pub struct FleetArgs {
    /// Take [lb] and [health] from this kiln.toml (the image's; other sections are not read).
    /// Default: /etc/kiln/kiln.toml when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// How long each member's kiln has to answer.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub timeout: HumanDuration,
    /// Port of each member's /readyz (default: the port of [health] listen).
    #[arg(long, value_name = "PORT")]
    pub health_port: Option<u16>,
    /// Also ask this instance's kiln, listed by the load balancer or not (its /readyz at
    /// HOST[:PORT]; e.g. an ELBv2 instance target EC2 cannot place). Repeatable.
    #[arg(long = "instance", value_name = "HOST[:PORT]")]
    pub instances: Vec<String>,
    /// HAProxy runtime API: a socket path or tcp:HOST:PORT (overrides [lb] socket).
    #[arg(long, value_name = "SOCKET", help_heading = "HAProxy")]
    pub socket: Option<String>,
    /// HAProxy backend (overrides [lb] backend).
    #[arg(long, value_name = "NAME", help_heading = "HAProxy")]
    pub backend: Option<String>,
    /// Consul agent URL (overrides [lb] agent).
    #[arg(long, value_name = "URL", help_heading = "Consul")]
    pub agent: Option<String>,
    /// Consul service name (overrides [lb] service).
    #[arg(long, value_name = "NAME", help_heading = "Consul")]
    pub service: Option<String>,
    /// ELBv2 target group (overrides [lb] target_group_arn). Credentials: AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), else the instance role. Instance targets are
    /// found with ec2:DescribeInstances (endpoint: AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL).
    #[arg(long, value_name = "ARN", help_heading = "ELBv2")]
    pub target_group_arn: Option<String>,
}

/// The longest `--timeout`: a fleet view is a quick look, not a wait.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything `kiln fleet` found, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `haproxy backend app (/run/haproxy/admin.sock)`.
    pub source: String,
    #[serde(flatten)]
    pub assessment: Assessment,
    pub members: Vec<Member>,
    /// Why the load balancer could not be asked (verdict `unreachable`).
    pub error: Option<String>,
    /// Wall time of the whole look: the load balancer and every member.
    pub elapsed_ms: u64,
}

/// One row: a member as both sides see it.
#[derive(Debug, Serialize)]
pub struct Member {
    pub name: Option<String>,
    pub address: Option<String>,
    /// Where its kiln was asked (None: the load balancer gave no address and no `--instance`
    /// answered for it).
    pub health: Option<String>,
    pub lb: LbView,
    pub lb_word: Option<String>,
    pub state: MemberState,
    pub problem: Option<String>,
    /// Its verbose `/readyz`, when it answered.
    pub kiln: Option<KilnView>,
    /// Why its kiln did not answer.
    pub error: Option<String>,
}

pub fn run(args: FleetArgs) -> ExitCode {
    let plan = match Plan::from_args(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("kiln fleet: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln fleet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(survey(&plan));
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("kiln fleet: cannot write JSON: {e}"),
        }
    } else {
        print!("{}", render::table(&report));
    }
    ExitCode::from(report.assessment.verdict.exit_code())
}

/// What to ask, checked: the load balancer, the health port, the extra instances, the timeout.
pub struct Plan {
    pub source: Source,
    pub health_port: u16,
    /// `--instance` health addresses, `HOST:PORT`.
    pub extra: Vec<String>,
    pub timeout: Duration,
}

impl Plan {
    /// From the flags and the config they name; an error is a sentence naming the flag or key.
    fn from_args(args: &FleetArgs) -> Result<Plan, String> {
        let (lb, health, from) = load(args.config.as_deref())?;
        let flags = LbFlags {
            socket: args.socket.clone(),
            backend: args.backend.clone(),
            agent: args.agent.clone(),
            service: args.service.clone(),
            target_group_arn: args.target_group_arn.clone(),
        };
        let source = Source::resolve(&lb, &flags, from.as_deref())?;
        let timeout = args.timeout.get();
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(format!("--timeout {}: give 1ms to 60s", args.timeout));
        }
        let health_port = args.health_port.unwrap_or(health.listen.port());
        if health_port == 0 {
            return Err("--health-port 0: give the port kiln's /readyz listens on".into());
        }
        let extra = args
            .instances
            .iter()
            .map(|i| health_address(i, health_port))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            source,
            health_port,
            extra,
            timeout,
        })
    }
}

/// `[lb]` and `[health]` of the config, and the file they came from (none without a config).
/// Only these two sections are read (and checked): the image's config names programs the
/// operator's machine lacks.
fn load(path: Option<&Path>) -> Result<(LbConfig, HealthConfig, Option<String>), String> {
    #[derive(serde::Deserialize)]
    struct Sections {
        #[serde(default)]
        lb: LbTable,
        #[serde(default)]
        health: HealthConfig,
    }
    let default = Path::new(crate::config::DEFAULT_PATH);
    let path = match path {
        Some(p) => p,
        None if default.exists() => default,
        None => return Ok((LbConfig::default(), HealthConfig::default(), None)),
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let sections: Sections =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let lb = sections.lb.check().map_err(|problems| {
        crate::config::ConfigError {
            file: path.to_path_buf(),
            problems,
        }
        .to_string()
    })?;
    Ok((lb, sections.health, Some(path.display().to_string())))
}

/// `HOST` or `HOST:PORT` (IPv6 in brackets) → `HOST:PORT`, with `port` when none is given.
fn health_address(instance: &str, port: u16) -> Result<String, String> {
    let bad = || format!("--instance {instance:?}: give HOST or HOST:PORT (IPv6 in brackets)");
    if instance.is_empty() || instance.contains(char::is_whitespace) || instance.contains('/') {
        return Err(bad());
    }
    if let Ok(addr) = instance.parse::<std::net::SocketAddr>() {
        return (addr.port() > 0).then(|| addr.to_string()).ok_or_else(bad);
    }
    if let Ok(ip) = instance
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(std::net::SocketAddr::new(ip, port).to_string());
    }
    match instance.rsplit_once(':') {
        Some((host, p)) if source::is_host(host) => {
            let p: u16 = p.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
            Ok(format!("{host}:{p}"))
        }
        Some(_) => Err(bad()),
        None if source::is_host(instance) => Ok(format!("{instance}:{port}")),
        None => Err(bad()),
    }
}

/// Lists the members, asks every kiln (the listed ones and the extra instances), and assesses
/// the whole.
pub async fn survey(plan: &Plan) -> Report {
    let started = Instant::now();
    let report = |assessment, members, error| Report {
        source: plan.source.describe(),
        assessment,
        members,
        error,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    let listed = match plan.source.members().await {
        Ok(listed) => listed,
        Err(e) => {
            let assessment = Assessment {
                verdict: Verdict::Unreachable,
                summary: format!("cannot list the members: {}", e.0),
                images: Vec::new(),
                problems: Vec::new(),
            };
            return report(assessment, Vec::new(), Some(e.0));
        }
    };
    let mut sightings = sightings(listed, plan);
    let healths: Vec<String> = sightings.iter().filter_map(|s| s.health.clone()).collect();
    let mut answers = ask::ask_all(&healths, plan.timeout).await.into_iter();
    for s in sightings.iter_mut().filter(|s| s.health.is_some()) {
        s.kiln = answers.next().unwrap_or_else(|| Err("not asked".into()));
    }
    let sightings = match_by_instance_id(sightings);
    let rows: Vec<_> = sightings
        .into_iter()
        .map(|s| {
            let (state, problem) = assess::classify(&s);
            (s, state, problem)
        })
        .collect();
    let assessment = assess::assess(&rows);
    let members = rows
        .into_iter()
        .map(|(s, state, problem)| Member::new(s, state, problem))
        .collect();
    report(assessment, members, None)
}

/// The listed members and the extra instances not among them, each with the health address
/// where its kiln is asked; nobody asked yet.
fn sightings(listed: Vec<source::Listed>, plan: &Plan) -> Vec<Sighting> {
    let mut sightings: Vec<Sighting> = listed
        .into_iter()
        .map(|l| Sighting {
            health: l
                .host
                .as_deref()
                .filter(|h| source::is_host(h))
                .map(|h| source::join_host_port(h, plan.health_port)),
            kiln: Err(match (l.host, l.no_host) {
                (Some(h), _) if source::is_host(&h) => "not asked".into(),
                (Some(_), _) => NOT_AN_ADDRESS.into(),
                (None, Some(why)) => format!("{why}: give its address with --instance"),
                (None, None) => NO_ADDRESS.into(),
            }),
            name: Some(l.name),
            address: l.address,
            lb: l.view,
            lb_word: Some(l.word),
            instance_id: l.instance_id,
        })
        .collect();
    for health in &plan.extra {
        if !sightings.iter().any(|s| s.health.as_ref() == Some(health)) {
            sightings.push(Sighting {
                name: None,
                address: None,
                health: Some(health.clone()),
                lb: LbView::NotListed,
                lb_word: None,
                kiln: Err("not asked".into()),
                instance_id: None,
            });
        }
    }
    sightings
}

/// Why a member the load balancer names by instance id only was not asked.
const NO_ADDRESS: &str = "it is named by instance id only: give its address with --instance \
                          (or register targets by ip)";

/// Why a member whose address is not `HOST:PORT` (an IP address or a DNS name) was not asked.
const NOT_AN_ADDRESS: &str = "the load balancer gives an address that is not HOST:PORT: not asked";

/// Members the load balancer names by instance id only (ELBv2 `instance` targets) take the
/// answer of the `--instance` whose kiln says it is that instance.
fn match_by_instance_id(sightings: Vec<Sighting>) -> Vec<Sighting> {
    let (mut listed, extra): (Vec<Sighting>, Vec<Sighting>) =
        sightings.into_iter().partition(|s| s.lb != LbView::NotListed);
    let mut unmatched = Vec::new();
    for e in extra {
        let id = e.kiln.as_ref().ok().and_then(|k| k.instance_id.clone());
        let member = listed
            .iter_mut()
            .find(|l| l.health.is_none() && id.is_some() && l.name == id);
        match member {
            Some(l) => {
                l.health = e.health;
                l.kiln = e.kiln;
            }
            None => unmatched.push(e),
        }
    }
    listed.extend(unmatched);
    listed
}

impl Member {
    fn new(s: Sighting, state: MemberState, problem: Option<String>) -> Member {
        let (kiln, error) = match s.kiln {
            Ok(k) => (Some(k), None),
            Err(e) => (None, Some(e)),
        };
        Member {
            name: s.name,
            address: s.address,
            health: s.health,
            lb: s.lb,
            lb_word: s.lb_word,
            state,
            problem,
            kiln,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_named_by_instance_id_takes_the_answer_of_the_instance_that_says_so() {
        let listed = |id: &str| Sighting {
            name: Some(id.into()),
            address: None,
            health: None,
            lb: LbView::InService,
            lb_word: Some("healthy".into()),
            kiln: Err(NO_ADDRESS.into()),
            instance_id: Some(id.into()),
        };
        let extra = |health: &str, id: &str| Sighting {
            name: None,
            address: None,
            health: Some(health.into()),
            lb: LbView::NotListed,
            lb_word: None,
            kiln: Ok(KilnView {
                instance_id: Some(id.into()),
                ..KilnView::default()
            }),
            instance_id: None,
        };
        let merged = match_by_instance_id(vec![
            listed("i-1"),
            listed("i-2"),
            extra("10.0.0.1:9100", "i-1"),
            extra("10.0.0.9:9100", "i-9"),
        ]);
        let seen: Vec<(Option<&str>, Option<&str>, bool)> = merged
            .iter()
            .map(|s| (s.name.as_deref(), s.health.as_deref(), s.kiln.is_ok()))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("i-1"), Some("10.0.0.1:9100"), true),
                (Some("i-2"), None, false),
                (None, Some("10.0.0.9:9100"), true),
            ]
        );
    }

    #[test]
    fn instance_addresses_take_the_health_port_when_they_have_none() {
        assert_eq!(health_address("10.0.0.5", 9100).unwrap(), "10.0.0.5:9100");
        assert_eq!(health_address("10.0.0.5:9200", 9100).unwrap(), "10.0.0.5:9200");
        assert_eq!(health_address("fd00::5", 9100).unwrap(), "[fd00::5]:9100");
        assert_eq!(health_address("[fd00::5]:9200", 9100).unwrap(), "[fd00::5]:9200");
        assert_eq!(
            health_address("web-1.internal", 9100).unwrap(),
            "web-1.internal:9100"
        );
        for bad in [
            "",
            "10.0.0.5:0",
            "10.0.0.5:x",
            "http://10.0.0.5",
            "a b",
            "user@10.0.0.5",
            "h?x",
        ] {
            assert!(health_address(bad, 9100).is_err(), "{bad:?}");
        }
    }
}
