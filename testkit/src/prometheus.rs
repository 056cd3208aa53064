//! A real Prometheus (Debian's `prometheus` package) for the metrics tests, and `promtool`.
//!
//! [`Prometheus::start`] writes a config that scrapes one target every `interval` into a temp dir
//! of its own, runs `prometheus` on a free loopback port as a [`Process`] (stopped on drop, its
//! dir removed), and waits until it is ready. [`Prometheus::query`] asks its HTTP API
//! (`/api/v1/query`) for an instant vector.

use crate::peers::Process;
use crate::wait::{http_get, wait_until};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long Prometheus may take to open its TSDB and answer `/-/ready`.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A running Prometheus. Dropping it stops it and removes its data.
pub struct Prometheus {
    pub process: Process,
    /// Its web UI and API.
    pub addr: SocketAddr,
    /// Config and TSDB; removed on drop (after the process, which is declared first).
    pub dir: tempfile::TempDir,
}

/// One series of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Prometheus {
    /// Scrapes `http://TARGET/metrics` every `interval` (timeout: the same) as job `kiln`.
    pub fn start(target: SocketAddr, interval: Duration) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("kiln-prometheus-")
            .tempdir()
            .expect("a temp dir for Prometheus");
        let interval_ms = interval.as_millis();
        let config = format!(
            "global:\n  scrape_interval: {interval_ms}ms\n  scrape_timeout: {interval_ms}ms\n\
             scrape_configs:\n  - job_name: kiln\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let addr = crate::net::free_addr();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let process = Process::spawn(cmd);
        let prometheus = Prometheus { process, addr, dir };
        wait_until("Prometheus to be ready", READY_DEADLINE, || {
            let (status, _) = http_get(&format!("http://{addr}/-/ready")).ok()?;
            (status == 200).then_some(())
        });
        prometheus
    }

    /// The instant vector `promql` gives now; an error names the query and what went wrong.
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let url = format!(
            "http://{}/api/v1/query?query={}",
            self.addr,
            percent_encode(promql)
        );
        let (status, body) = http_get(&url)?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{promql}: not JSON ({e}): {body}"))?;
        if status != 200 || answer["status"] != "success" {
            return Err(format!("{promql}: HTTP {status}: {body}"));
        }
        let result = answer["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("{promql}: not a vector: {body}"))?;
        result.iter().map(|series| sample(promql, series)).collect()
    }

    /// Waits until `promql` answers exactly one series whose value `accept`s, and returns it.
    pub fn wait_for_value(&self, promql: &str, deadline: Duration, accept: impl Fn(f64) -> bool) -> f64 {
        let mut last = String::new();
        let found = crate::wait::poll_until(deadline, || match self.query(promql) {
            Ok(samples) => match samples.as_slice() {
                [one] if accept(one.value) => Some(one.value),
                other => {
                    last = format!("{other:?}");
                    None
                }
            },
            Err(e) => {
                last = e;
                None
            }
        });
        found.unwrap_or_else(|| panic!("{promql}: no accepted value within {deadline:?}; last: {last}"))
    }

    /// The scrape target's health as Prometheus sees it: (`up`/`down`/`unknown`, last error).
    pub fn target_health(&self) -> Result<(String, String), String> {
        let (_, body) = http_get(&format!("http://{}/api/v1/targets", self.addr))?;
        let answer: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let target = &answer["data"]["activeTargets"][0];
        let field = |name: &str| target[name].as_str().unwrap_or_default().to_string();
        Ok((field("health"), field("lastError")))
    }
}

fn sample(promql: &str, series: &serde_json::Value) -> Result<Sample, String> {
    let labels = series["metric"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let value = series["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("{promql}: no value in {series}"))?;
    Ok(Sample { labels, value })
}

/// Everything but unreserved characters as `%XX` (a PromQL query in a URL's query string).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` over `exposition`: Ok, or what promtool said.
pub fn promtool_check_metrics(exposition: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool: {e} (Debian's prometheus package brings it)"))?;
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .map_err(|e| format!("promtool's stdin: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("promtool: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics: {}: {said}", out.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_encoded_whole() {
        assert_eq!(
            percent_encode("sum(kiln_unit_ready{unit=\"php-fpm\"})"),
            "sum%28kiln_unit_ready%7Bunit%3D%22php-fpm%22%7D%29"
        );
    }
}
