//! The ELBv2 registrar against a real moto_server (PyPI) with signature checking on: an IAM
//! user's key from the free setup calls, a target group, and every later call signed by kiln.

use kiln::aws::TargetGroupArn;
use kiln::config::LbTable;
use kiln::config::lb::{Elbv2Plan, LbPlan};
use kiln::lb::elbv2::{CredentialSource, Elbv2Registrar};
use kiln::lb::{Membership, Registrar};
use kiln::metadata::InstanceFacts;
use kiln::state::{LbState, Phase, Shared};
use kiln::systemd::notify::Notifier;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use testkit::moto::Moto;
use testkit::wait::wait_until;

const INSTANCE: &str = "i-0123456789abcdef0";
const DEADLINE: Duration = Duration::from_secs(20);

fn facts() -> InstanceFacts {
    InstanceFacts {
        provider: "test".into(),
        instance_id: Some(INSTANCE.into()),
        local_ipv4: Some("10.0.0.5".into()),
        region: Some("eu-west-1".into()),
        ..Default::default()
    }
}

/// `[lb]` text as a checked ELBv2 plan.
fn elbv2_plan(text: &str) -> Elbv2Plan {
    let table: LbTable = toml::from_str(text).unwrap();
    match table.check().unwrap().plan {
        Some(LbPlan::Elbv2(plan)) => plan,
        other => panic!("not an elbv2 plan: {other:?}"),
    }
}

fn lb_config(moto: &Moto, imds: Option<&str>) -> Elbv2Plan {
    let mut text = format!(
        "kind = \"elbv2\"\ntarget_group_arn = {:?}\nport = 8080\nendpoint = {:?}\ndrain_timeout = \"10s\"\n",
        moto.target_group_arn,
        moto.endpoint()
    );
    if let Some(imds) = imds {
        text.push_str(&format!("imds_endpoint = {imds:?}\n"));
    }
    elbv2_plan(&text)
}

fn keys(id: &str, secret: &str) -> CredentialSource {
    CredentialSource::Static(aws_credential_types::Credentials::new(
        id, secret, None, None, "test",
    ))
}

fn registrar(moto: &Moto, secret: &str) -> Elbv2Registrar {
    Elbv2Registrar::with_credentials(
        &lb_config(moto, None),
        &facts(),
        keys(&moto.access_key_id, secret),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_shows_in_target_health_deregisters_and_is_gone() {
    let moto = Moto::start();
    let lb = registrar(&moto, &moto.secret_access_key);
    assert!(moto.targets().is_empty());

    lb.register().await.unwrap();
    assert_eq!(
        moto.targets(),
        vec![(INSTANCE.to_string(), 8080, "healthy".to_string())]
    );
    let health = lb.target_health().await.unwrap().unwrap();
    assert_eq!(health.state, "healthy");

    lb.deregister().await.unwrap();
    lb.wait_drained(Instant::now() + DEADLINE, &|_| {}).await.unwrap();
    assert!(moto.targets().is_empty(), "{:?}", moto.targets());
    assert_eq!(lb.target_health().await.unwrap().unwrap().state, "unused");
    // Deregistering again (a second stop) is not an error.
    lb.deregister().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_names_signature_does_not_match_and_registers_nothing() {
    let moto = Moto::start();
    let lb = registrar(&moto, "not-the-secret");
    let err = lb.register().await.unwrap_err().0;
    assert!(err.contains("RegisterTargets"), "{err}");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(err.contains("signature we calculated does not match"), "{err}");
    assert!(!err.contains("not-the-secret"), "the secret leaked: {err}");
    assert!(moto.targets().is_empty());

    // Through the membership: it retries, says why, and never claims to be registered.
    let shared = Shared::new();
    shared.update(|s| s.phase = Phase::Ready);
    let membership = Membership::start(
        Box::new(registrar(&moto, "not-the-secret")),
        shared.clone(),
        Arc::new(Notifier::disabled()),
        Duration::from_secs(5),
    );
    let reason = wait_until("a second failed attempt", DEADLINE, || {
        let lb = shared.snapshot().lb.clone()?;
        assert_ne!(lb.state, LbState::Registered);
        lb.reason.filter(|r| r.contains("attempt 2"))
    });
    assert!(reason.contains("SignatureDoesNotMatch"), "{reason}");
    shared.update(|s| s.phase = Phase::Stopping);
    membership.leave().await;
    assert!(moto.targets().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_target_group_shows_the_aws_code() {
    let moto = Moto::start();
    let mut config = lb_config(&moto, None);
    let other = moto.target_group_arn.replace("/kiln/", "/other/").replace(
        moto.target_group_arn.rsplit('/').next().unwrap(),
        "0000000000000000",
    );
    config.target_group_arn = TargetGroupArn::parse(&other).unwrap();
    let lb = Elbv2Registrar::with_credentials(
        &config,
        &facts(),
        keys(&moto.access_key_id, &moto.secret_access_key),
    )
    .unwrap();
    let err = lb.register().await.unwrap_err().0;
    assert!(err.contains("TargetGroupNotFound"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_registers_and_leaves_through_elbv2() {
    let moto = Moto::start();
    let shared = Shared::new();
    shared.update(|s| s.phase = Phase::Ready);
    let membership = Membership::start(
        Box::new(registrar(&moto, &moto.secret_access_key)),
        shared.clone(),
        Arc::new(Notifier::disabled()),
        Duration::from_secs(10),
    );
    wait_until("registered", DEADLINE, || {
        (shared.snapshot().lb.as_ref()?.state == LbState::Registered).then_some(())
    });
    assert_eq!(moto.targets().len(), 1);
    shared.update(|s| s.phase = Phase::Stopping);
    membership.leave().await;
    let lb = shared.snapshot().lb.clone().unwrap();
    assert_eq!(lb.state, LbState::Deregistered, "{lb:?}");
    assert!(moto.targets().is_empty());
}

/// Instance-role credentials through IMDSv2 (an assumed role's temporary keys, as EC2 serves
/// them), fetched again once they near expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uses_instance_role_credentials_from_imds_and_refreshes_them() {
    let moto = Moto::start();
    // Short-lived keys (inside the refresh margin): every call fetches them again.
    let imds = Imds::start(&moto, "2000-01-01T00:00:00Z");
    let lb = Elbv2Registrar::new(&lb_config(&moto, Some(&imds.url())), &facts()).unwrap();
    assert!(lb.describe().contains("instance role"), "{}", lb.describe());
    lb.register().await.unwrap();
    assert_eq!(moto.targets().len(), 1);
    let fetched = imds.key_fetches();
    assert_eq!(fetched, 1);
    lb.target_health().await.unwrap();
    assert_eq!(imds.key_fetches(), 2, "expired keys were not fetched again");
    assert!(imds.tokens_ok(), "a metadata GET went without its IMDSv2 token");

    // Long-lived keys: fetched once, then cached.
    let imds = Imds::start(&moto, "2999-01-01T00:00:00Z");
    let lb = Elbv2Registrar::new(&lb_config(&moto, Some(&imds.url())), &facts()).unwrap();
    lb.deregister().await.unwrap();
    lb.target_health().await.unwrap();
    assert_eq!(imds.key_fetches(), 1);
    assert!(moto.targets().is_empty());
}

#[tokio::test]
async fn no_instance_role_is_a_clear_error() {
    let imds = Imds::start_without_role();
    let config = elbv2_plan(&format!(
        "kind = \"elbv2\"\ntarget_group_arn = \"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/kiln/0123456789abcdef\"\n\
         endpoint = \"http://127.0.0.1:1\"\nimds_endpoint = {:?}\n",
        imds.url()
    ));
    let lb =
        Elbv2Registrar::with_credentials(&config, &facts(), CredentialSource::instance_role(&imds.url()))
            .unwrap();
    let err = lb.register().await.unwrap_err().0;
    assert!(err.contains("no instance role attached"), "{err}");
    assert!(err.contains(&imds.url()), "{err}");
}

/// A minimal IMDSv2: `PUT /latest/api/token`, then the role's name and keys under
/// `meta-data/iam/security-credentials/`, each GET requiring the token.
struct Imds {
    addr: std::net::SocketAddr,
    key_fetches: Arc<AtomicU64>,
    bad_tokens: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Imds {
    fn start(moto: &Moto, expiration: &str) -> Imds {
        let keys = serde_json::json!({
            "Code": "Success",
            "Type": "AWS-HMAC",
            "AccessKeyId": moto.role.access_key_id,
            "SecretAccessKey": moto.role.secret_access_key,
            "Token": moto.role.token,
            "Expiration": expiration,
        })
        .to_string();
        Self::serve(Some(keys))
    }

    fn start_without_role() -> Imds {
        Self::serve(None)
    }

    fn serve(keys: Option<String>) -> Imds {
        use http_body_util::Full;
        use hyper::{Response, StatusCode};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let key_fetches = Arc::new(AtomicU64::new(0));
        let bad_tokens = Arc::new(AtomicU64::new(0));
        let (fetches, bad) = (key_fetches.clone(), bad_tokens.clone());
        let task = tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (keys, fetches, bad) = (keys.clone(), fetches.clone(), bad.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let (keys, fetches, bad) = (keys.clone(), fetches.clone(), bad.clone());
                        async move {
                            let reply = |status: StatusCode, body: String| {
                                let mut r = Response::new(Full::new(bytes::Bytes::from(body)));
                                *r.status_mut() = status;
                                Ok::<_, std::convert::Infallible>(r)
                            };
                            let path = req.uri().path().to_string();
                            if req.method() == hyper::Method::PUT && path == "/latest/api/token" {
                                return reply(StatusCode::OK, "tok-123".into());
                            }
                            if req
                                .headers()
                                .get("x-aws-ec2-metadata-token")
                                .map(|v| v.as_bytes())
                                != Some(b"tok-123")
                            {
                                bad.fetch_add(1, Ordering::SeqCst);
                                return reply(StatusCode::UNAUTHORIZED, String::new());
                            }
                            match (path.as_str(), &keys) {
                                ("/latest/meta-data/iam/security-credentials/", Some(_)) => {
                                    reply(StatusCode::OK, "kiln-instance".into())
                                }
                                ("/latest/meta-data/iam/security-credentials/kiln-instance", Some(k)) => {
                                    fetches.fetch_add(1, Ordering::SeqCst);
                                    reply(StatusCode::OK, k.clone())
                                }
                                _ => reply(StatusCode::NOT_FOUND, String::new()),
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Imds {
            addr,
            key_fetches,
            bad_tokens,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn key_fetches(&self) -> u64 {
        self.key_fetches.load(Ordering::SeqCst)
    }

    fn tokens_ok(&self) -> bool {
        self.bad_tokens.load(Ordering::SeqCst) == 0
    }
}

impl Drop for Imds {
    fn drop(&mut self) {
        self.task.abort();
    }
}
