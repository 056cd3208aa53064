//! How secret lookups behave when the store misbehaves, against a scripted AWS JSON 1.1 endpoint:
//! throttling and 5xx are retried inside the deadline (each attempt signed again), throttling
//! past the deadline refuses with the code; and `kiln check` on references in `[env] defaults`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use testkit::server::Background;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Answers the n-th request with `script[n]` (the last one forever); records each request's
/// `X-Amz-Target`, whether it was signed, and its body.
struct ScriptedAws {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<(String, bool, String)>>>,
    _server: Background,
}

impl ScriptedAws {
    fn start(script: Vec<(u16, &'static str)>) -> ScriptedAws {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, script) = (seen.clone(), Arc::new(script));
        let (server, addr) = Background::spawn(
            "scripted-aws",
            || std::net::TcpListener::bind("127.0.0.1:0"),
            move |listener| async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (log, script) = (log.clone(), script.clone());
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                                let (log, script) = (log.clone(), script.clone());
                                async move {
                                    let target = req
                                        .headers()
                                        .get("x-amz-target")
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("")
                                        .to_string();
                                    let signed = req
                                        .headers()
                                        .get("authorization")
                                        .and_then(|v| v.to_str().ok())
                                        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 "));
                                    let body = req.into_body().collect().await.unwrap().to_bytes();
                                    let n = {
                                        let mut log = log.lock().unwrap();
                                        log.push((
                                            target,
                                            signed,
                                            String::from_utf8_lossy(&body).into_owned(),
                                        ));
                                        log.len() - 1
                                    };
                                    let (status, answer) = script[n.min(script.len() - 1)];
                                    let response = Response::builder()
                                        .status(status)
                                        .header("content-type", "application/x-amz-json-1.1")
                                        .body(Full::new(Bytes::from_static(answer.as_bytes())))
                                        .unwrap();
                                    Ok::<_, std::convert::Infallible>(response)
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            },
        )
        .unwrap();
        ScriptedAws {
            addr,
            seen,
            _server: server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

const THROTTLED: (u16, &str) = (
    400,
    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
);
const UNAVAILABLE: (u16, &str) = (503, "Service Unavailable");
const FOUND: (u16, &str) = (
    200,
    r#"{"Parameters":[{"Name":"/app/db","Type":"SecureString","Value":"retried-value","Version":1,"ARN":"arn:aws:ssm:us-east-1:123456789012:parameter/app/db"}],"InvalidParameters":[]}"#,
);

fn kiln(dir: &Path, args: &[&str], config: &str, endpoint: &str) -> (Output, String) {
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("meta-data"), "instance-id: i-0retry\n").unwrap();
    std::fs::write(seed.join("user-data"), "DATABASE_URL=ssm:/app/db\n").unwrap();
    let path = dir.join("kiln.toml");
    std::fs::write(
        &path,
        format!(
            "[control]\nsocket = \"/run/kiln-test-unused.sock\"\n[metadata]\nprovider = \"nocloud\"\nseed = {:?}\n{config}",
            seed.to_str().unwrap()
        ),
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = Command::new(KILN)
        .args(args)
        .args(["--config", path.to_str().unwrap()])
        .args(if args == ["env"] {
            vec!["--write-to", out_dir.to_str().unwrap()]
        } else {
            vec![]
        })
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-example-key")
        .env("AWS_ENDPOINT_URL_SSM", endpoint)
        .output()
        .unwrap();
    (
        out,
        std::fs::read_to_string(out_dir.join("env")).unwrap_or_default(),
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn throttling_and_5xx_are_retried_inside_the_deadline() {
    let aws = ScriptedAws::start(vec![THROTTLED, UNAVAILABLE, FOUND]);
    let dir = tempfile::tempdir().unwrap();
    let (out, env) = kiln(
        dir.path(),
        &["env"],
        "deadline = \"10s\"\n[secrets]\nregion = \"us-east-1\"\n",
        &aws.url(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.contains("DATABASE_URL=\"retried-value\"\n"), "{env}");
    assert!(text(&out).contains("(3 requests)"), "{}", text(&out));
    let seen = aws.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (target, signed, body) in &seen {
        assert_eq!(target, "AmazonSSM.GetParameters");
        assert!(signed, "an unsigned request");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"Names": ["/app/db"], "WithDecryption": true})
        );
    }
}

#[test]
fn throttled_past_the_deadline_refuses_with_the_code() {
    let aws = ScriptedAws::start(vec![THROTTLED]);
    let dir = tempfile::tempdir().unwrap();
    let (out, env) = kiln(
        dir.path(),
        &["env"],
        "deadline = \"1s\"\n[secrets]\nregion = \"us-east-1\"\n",
        &aws.url(),
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(env.is_empty());
    assert!(said.contains("secret DATABASE_URL (ssm:/app/db)"), "{said}");
    assert!(said.contains("ThrottlingException"), "{said}");
    assert!(said.contains("gave up at the deadline"), "{said}");
    assert!(aws.seen.lock().unwrap().len() > 2, "not retried");
}

#[test]
fn kiln_check_lists_and_checks_the_references_in_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "[secrets]\nschemes = [\"ssm\", \"secretsmanager\"]\n[env]\ndefaults = { DATABASE_URL = \"ssm:/app/db:2\", KEY = \"secretsmanager:app/rds:password\", G = \"gcp:projects/p/secrets/s\" }\n";
    let (out, _) = kiln(dir.path(), &["check"], ok, "http://127.0.0.1:1");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("secrets: references on for ssm, secretsmanager"),
        "{said}"
    );
    assert!(said.contains("DATABASE_URL  secret (ssm:/app/db:2)"), "{said}");
    assert!(
        said.contains("KEY  secret (secretsmanager:app/rds:password)"),
        "{said}"
    );
    assert!(!said.contains("G  secret"), "gcp is not enabled: {said}");

    let bad = "[secrets]\n[env]\ndefaults = { DATABASE_URL = \"ssm:/app/\" }\n";
    let (out, _) = kiln(dir.path(), &["check"], bad, "http://127.0.0.1:1");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(said.contains("[env] defaults: DATABASE_URL"), "{said}");
    assert!(said.contains("not a valid ssm reference"), "{said}");
}

/// Page `n` of a GetParametersByPath answer that never ends: ten parameters of `value_len`
/// bytes under `/app/env/`, and the NextToken of page `n + 1`.
fn endless_page(n: usize, value_len: usize) -> (u16, &'static str) {
    let value = "v".repeat(value_len);
    let parameters: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"Name": format!("/app/env/p{n}-{i}"), "Type": "String", "Value": value, "Version": 1}))
        .collect();
    let body = serde_json::json!({"Parameters": parameters, "NextToken": format!("token-{}", n + 1)});
    (200, Box::leak(body.to_string().into_boxed_str()))
}

/// The GetParametersByPath requests the store saw.
fn by_path(aws: &ScriptedAws) -> usize {
    let seen = aws.seen.lock().unwrap();
    seen.iter()
        .filter(|(target, _, _)| target == "AmazonSSM.GetParametersByPath")
        .count()
}

const PATHS: &str = "deadline = \"10s\"\n[secrets]\nregion = \"us-east-1\"\nssm_paths = [\"/app/env/\"]\n";

/// A store that always has another page: kiln stops at a page bound, and at the first repeated
/// NextToken, with a refusal naming the path and the bound; it does not page to the deadline.
#[test]
fn a_path_that_never_ends_is_refused_at_a_page_bound() {
    let aws = ScriptedAws::start((0..1500).map(|n| endless_page(n, 8)).collect());
    let dir = tempfile::tempdir().unwrap();
    let (out, env) = kiln(dir.path(), &["env"], PATHS, &aws.url());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(env.is_empty(), "{env}");
    assert!(
        said.contains(
            "secrets (ssm path /app/env/): ssm GetParametersByPath: more than 1000 pages \
             (10000 parameters) and still a NextToken: refused"
        ),
        "{said}"
    );
    assert!(by_path(&aws) <= 1000, "{} pages asked", by_path(&aws));

    // The same NextToken again: the store pages in a loop.
    let aws = ScriptedAws::start(vec![endless_page(7, 8)]);
    let (out, _) = kiln(dir.path(), &["env"], PATHS, &aws.url());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "secrets (ssm path /app/env/): ssm GetParametersByPath: the store gave the same \
             NextToken twice: refused"
        ),
        "{said}"
    );
    assert_eq!(by_path(&aws), 2, "the first page, then the page of its token");
}

/// Pages of large parameters: kiln stops once the path holds more than a service's exec can
/// carry, a few pages in, and its memory stays small.
#[test]
fn a_path_larger_than_an_environment_is_refused_with_bounded_memory() {
    let aws = ScriptedAws::start((0..30).map(|n| endless_page(n, 90_000)).collect());
    let dir = tempfile::tempdir().unwrap();
    let (out, env) = kiln(dir.path(), &["env"], PATHS, &aws.url());
    let said = text(&out);
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let kib = usage.max_rss();
    eprintln!("kiln env: {} pages asked, peak RSS {kib} KiB", by_path(&aws));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(env.is_empty());
    assert!(
        said.contains(
            "secrets (ssm path /app/env/): ssm GetParametersByPath: the parameters under it are over "
        ),
        "{said}"
    );
    assert!(
        said.contains("bytes, more than a service's exec can carry"),
        "{said}"
    );
    assert!(!said.contains("vvvvvvvv"), "a value is shown: {said}");
    // 900 KB a page against at most 6 MiB of environment.
    assert!(by_path(&aws) <= 8, "{} pages asked", by_path(&aws));
    assert!(kib < 200 * 1024, "kiln env peaked at {kib} KiB");
}
