//! The secrets benchmark (`bench/secrets.sh` → `kiln-testkit secrets-bench`): kiln boots with 20
//! secret references (10 SSM SecureStrings, 10 Secrets Manager secrets) against moto on loopback,
//! signatures checked, several times; each boot's `secrets` phase (from kiln's boot timeline)
//! and its request count (from `kiln status`) are printed, with medians. Then the same boot with
//! the 20 values given in plain user-data, for the READY=1 difference. Asserts nothing.

use crate::control::{self, BootStep};
use crate::moto::{Moto, REGION};
use crate::peers::Kiln;
use crate::wait::wait_until;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: kiln-testkit secrets-bench --kiln PATH [--boots N (10)]";
const REFERENCES: usize = 20;

/// One boot: the secrets phase (None without `[secrets]`), its requests, READY=1's offset.
struct Boot {
    secrets_us: Option<u64>,
    requests: u64,
    ready_us: u64,
}

pub fn main(args: &[String]) -> ExitCode {
    let mut kiln = None;
    let mut boots = 10usize;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--kiln", Some(v)) => kiln = Some(v.clone()),
            ("--boots", Some(v)) => match v.parse() {
                Ok(n) if n > 0 => boots = n,
                _ => {
                    eprintln!("--boots {v:?}: a number above 0\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(kiln) = kiln else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    run(&kiln, boots);
    ExitCode::SUCCESS
}

fn run(kiln: &str, boots: usize) {
    let moto = Moto::start();
    moto.boto3(&format!(
        r#"
ssm, sm = client("ssm"), client("secretsmanager")
for i in range({half}):
    ssm.put_parameter(Name=f"/bench/p{{i:02}}", Value=f"ssm-value-{{i:02}}", Type="SecureString")
    sm.create_secret(Name=f"bench/s{{i:02}}", SecretString=f"sm-value-{{i:02}}")
"#,
        half = REFERENCES / 2
    ));
    let references: String = (0..REFERENCES / 2)
        .map(|i| format!("SSM_{i:02}=ssm:/bench/p{i:02}\nSM_{i:02}=secretsmanager:bench/s{i:02}\n"))
        .collect();
    let plain: String = (0..REFERENCES / 2)
        .map(|i| format!("SSM_{i:02}=ssm-value-{i:02}\nSM_{i:02}=sm-value-{i:02}\n"))
        .collect();
    println!(
        "{REFERENCES} references (10 SSM SecureString, 10 Secrets Manager) against moto at {}, {boots} boots each\n",
        moto.endpoint()
    );
    let with: Vec<Boot> = (0..boots).map(|_| boot(kiln, &moto, &references, true)).collect();
    let without: Vec<Boot> = (0..boots).map(|_| boot(kiln, &moto, &plain, false)).collect();
    let phase: Vec<u64> = with.iter().filter_map(|b| b.secrets_us).collect();
    let requests: Vec<u64> = with.iter().map(|b| b.requests).collect();
    let ready_with: Vec<u64> = with.iter().map(|b| b.ready_us).collect();
    let ready_without: Vec<u64> = without.iter().map(|b| b.ready_us).collect();
    println!(
        "secrets phase:      median {}, min {}, max {}",
        ms(median(&phase)),
        ms(min(&phase)),
        ms(max(&phase))
    );
    println!(
        "API requests:       median {}, min {}, max {}",
        median(&requests),
        min(&requests),
        max(&requests)
    );
    println!("READY=1 with refs:  median {}", ms(median(&ready_with)));
    println!("READY=1 plain:      median {}", ms(median(&ready_without)));
    println!(
        "added to the boot:  {} (median READY=1 difference)",
        ms(median(&ready_with).saturating_sub(median(&ready_without)))
    );
}

fn boot(kiln: &str, moto: &Moto, user_data: &str, secrets: bool) -> Boot {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), user_data, secrets);
    let endpoint = moto.endpoint();
    let mut process = Kiln::boot_with(
        kiln,
        &["boot", "--config", config.to_str().unwrap()],
        &[
            ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    );
    let socket = dir.path().join("control.sock");
    let status = wait_until("kiln ready", Duration::from_secs(60), || {
        let s = control::status(&socket)?;
        assert_ne!(s["phase"], "failed", "the boot was refused: {}", s["reason"]);
        (s["phase"] == "ready").then_some(s)
    });
    process.signal(Signal::SIGTERM);
    process.wait_exit(Duration::from_secs(30));
    let at =
        |step: BootStep, field: &str| control::timeline_entry(&status, step).and_then(|p| p[field].as_u64());
    Boot {
        secrets_us: at(BootStep::Secrets, "duration_us"),
        requests: status["secrets"]["requests"].as_u64().unwrap_or(0),
        ready_us: at(BootStep::Ready, "start_us").unwrap_or(0),
    }
}

fn config(dir: &Path, user_data: &str, secrets: bool) -> std::path::PathBuf {
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("meta-data"), "instance-id: i-0bench\n").unwrap();
    std::fs::write(seed.join("user-data"), user_data).unwrap();
    let health = crate::net::free_addr();
    let mut text = format!(
        "[health]\nlisten = \"{health}\"\n[control]\nsocket = {:?}\nstate_dir = {:?}\n\
         [metadata]\nprovider = \"nocloud\"\nseed = {:?}\n\
         [[service]]\nname = \"app\"\ncommand = [\"sleep\", \"100000\"]\nready_after = \"1ms\"\n",
        dir.join("control.sock"),
        dir.join("state"),
        seed
    );
    if secrets {
        text.push_str(&format!("[secrets]\nregion = {REGION:?}\n"));
    }
    let path = dir.join("kiln.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn min(v: &[u64]) -> u64 {
    v.iter().copied().min().unwrap_or(0)
}

fn max(v: &[u64]) -> u64 {
    v.iter().copied().max().unwrap_or(0)
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}
