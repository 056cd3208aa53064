//! php-fpm's pools, read from their status pages (`[service.phpfpm_status]`) when `kiln status`
//! or a scrape asks, as each unit's cgroup usage is: never in between, so that an instance nobody
//! asks pays nothing.
//!
//! Every page is read at once, each within its `timeout`, its answer bounded in size by the
//! FastCGI client: a stuck php-fpm (stopped, every process busy and no `pm.status_listen`, a
//! socket nobody accepts on) delays an answer by that timeout at most, and shows as a problem
//! beside every other figure, which is served as usual.

use crate::config::{ServiceConfig, StatusPage};
use crate::probe::fastcgi;
use crate::state::{PhpFpmPool, PhpFpmStatus};
use serde::Deserialize;
use std::sync::Arc;

/// The longest pool name kept: php-fpm takes any length, a label and a status line should not.
const POOL_NAME_MAX: usize = 64;

/// The status pages of every service that has one.
#[derive(Clone, Default)]
pub struct Pools(Arc<[Pool]>);

struct Pool {
    service: String,
    page: StatusPage,
}

impl Pools {
    /// The pages `services` name. A checked config (`kiln boot` runs only those) has no page
    /// that does not read; one that does not is left out.
    pub fn of(services: &[ServiceConfig]) -> Pools {
        let pools: Vec<Pool> = services
            .iter()
            .filter_map(|s| {
                let page = s.phpfpm_status.as_ref()?.page(s.replicas).ok()?;
                Some(Pool {
                    service: s.name.clone(),
                    page,
                })
            })
            .collect();
        Pools(pools.into())
    }

    /// Every page, read at once; in the order of the services.
    pub async fn read(&self) -> Vec<PhpFpmStatus> {
        futures_util::future::join_all(self.0.iter().map(read_one)).await
    }
}

async fn read_one(pool: &Pool) -> PhpFpmStatus {
    let page = &pool.page;
    let asked = fastcgi::get(&page.socket, &page.path, "json");
    let at = format!("{} on {}", page.path, page.socket);
    let result = match tokio::time::timeout(page.timeout, asked).await {
        Err(_) => Err(format!(
            "{at}: no answer within {}",
            humantime::format_duration(page.timeout)
        )),
        Ok(Err(e)) => Err(format!("{at}: {e}")),
        Ok(Ok(reply)) if !(200..300).contains(&reply.status) => Err(format!(
            "{at}: status {}: {}",
            reply.status,
            crate::terminal::printable(&short(reply.body.trim()))
        )),
        Ok(Ok(reply)) => parse(&reply.body).map_err(|e| format!("{at}: {e}")),
    };
    let (pool_figures, problem) = match result {
        Ok(figures) => (Some(figures), None),
        Err(problem) => (None, Some(problem)),
    };
    PhpFpmStatus {
        service: pool.service.clone(),
        unit: pool.service.clone(),
        pool: pool_figures,
        problem,
    }
}

/// php-fpm's status page in JSON, as `fpm_status.c` writes it.
#[derive(Deserialize)]
struct Page {
    pool: String,
    #[serde(rename = "process manager")]
    process_manager: String,
    #[serde(rename = "start time")]
    start_time: u64,
    #[serde(rename = "start since")]
    start_since: u64,
    #[serde(rename = "accepted conn")]
    accepted_conn: u64,
    #[serde(rename = "listen queue")]
    listen_queue: u64,
    #[serde(rename = "max listen queue")]
    max_listen_queue: u64,
    #[serde(rename = "listen queue len")]
    listen_queue_len: u64,
    #[serde(rename = "idle processes")]
    idle_processes: u64,
    #[serde(rename = "active processes")]
    active_processes: u64,
    #[serde(rename = "total processes")]
    total_processes: u64,
    #[serde(rename = "max active processes")]
    max_active_processes: u64,
    #[serde(rename = "max children reached")]
    max_children_reached: u64,
    #[serde(rename = "slow requests")]
    slow_requests: u64,
}

/// The figures of a status page's JSON body. The names php-fpm gives (the pool's, its process
/// manager's) are kept only when they are short words: they become labels and status text.
pub fn parse(body: &str) -> Result<PhpFpmPool, String> {
    let page: Page = serde_json::from_str(body).map_err(|e| {
        format!(
            "not php-fpm's status page in JSON ({e}): {}",
            crate::terminal::printable(&short(body.trim()))
        )
    })?;
    for (field, name) in [("pool", &page.pool), ("process manager", &page.process_manager)] {
        let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > POOL_NAME_MAX || !name.chars().all(word) {
            return Err(format!(
                "\"{field}\" is not a name of 1 to {POOL_NAME_MAX} letters, digits, '-', '_' or '.': {}",
                crate::terminal::printable(&short(name))
            ));
        }
    }
    Ok(PhpFpmPool {
        pool: page.pool,
        process_manager: page.process_manager,
        start_time: page.start_time,
        start_since: page.start_since,
        accepted_conn: page.accepted_conn,
        listen_queue: page.listen_queue,
        max_listen_queue: page.max_listen_queue,
        listen_queue_len: page.listen_queue_len,
        idle_processes: page.idle_processes,
        active_processes: page.active_processes,
        total_processes: page.total_processes,
        max_active_processes: page.max_active_processes,
        max_children_reached: page.max_children_reached,
        slow_requests: page.slow_requests,
    })
}

/// The first 60 characters: enough to recognise an answer, never a page of it.
fn short(text: &str) -> String {
    text.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What php-fpm 8.2 answered `GET /status?json` on this machine.
    const PAGE: &str = r#"{"pool":"app","process manager":"dynamic","start time":1796565276,"start since":22,"accepted conn":7,"listen queue":0,"max listen queue":0,"listen queue len":0,"idle processes":1,"active processes":1,"total processes":2,"max active processes":2,"max children reached":1,"slow requests":0}"#;

    #[test]
    fn php_fpm_s_page_reads_into_its_figures() {
        let pool = parse(PAGE).unwrap();
        assert_eq!(
            (pool.pool.as_str(), pool.process_manager.as_str()),
            ("app", "dynamic")
        );
        assert_eq!(
            (pool.start_time, pool.accepted_conn, pool.total_processes),
            (1796565276, 7, 2)
        );
        assert_eq!((pool.max_active_processes, pool.max_children_reached), (2, 1));
    }

    #[test]
    fn anything_else_is_a_short_problem() {
        let html = format!("<html>{}</html>", "x".repeat(10_000));
        let e = parse(&html).unwrap_err();
        assert!(
            e.starts_with("not php-fpm's status page in JSON (expected value"),
            "{e}"
        );
        assert!(e.chars().count() < 160, "{e}");
        let forged = PAGE.replace("\"app\"", "\"app\\u001b[31m\"");
        assert_eq!(
            parse(&forged).unwrap_err(),
            "\"pool\" is not a name of 1 to 64 letters, digits, '-', '_' or '.': app\\u{1b}[31m"
        );
        assert!(parse(&PAGE.replace("\"slow requests\":0", "\"slow requests\":-1")).is_err());
    }
}
