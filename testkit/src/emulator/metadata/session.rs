//! Session tokens of the metadata services that ask for one with a PUT (Akamai, Alibaba; EC2
//! keeps its own for its TTL faults): issued for a lifetime, then checked on every GET.

use super::{State, random_token};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A new token living `ttl`.
pub(super) fn issue(state: &State, ttl: Duration) -> String {
    state.tokens_issued.fetch_add(1, Ordering::SeqCst);
    let token = random_token();
    state
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now() + ttl);
    token
}

/// Whether `token` was issued and is still alive.
pub(super) fn valid(state: &State, token: Option<&str>) -> bool {
    let Some(token) = token else { return false };
    let tokens = state.tokens.lock().unwrap();
    tokens.get(token).is_some_and(|expiry| Instant::now() < *expiry)
}

/// The TTL a PUT asks for in `header`, when it is a number of seconds within `range`.
pub(super) fn ttl(req: &super::Req, header: &str, range: std::ops::RangeInclusive<u64>) -> Option<Duration> {
    req.header(header)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ttl| range.contains(ttl))
        .map(Duration::from_secs)
}
