//! Retry until a deadline: the one loop every network caller of kiln shares, and the one backoff
//! rule. What is worth another attempt is the caller's to say, by the classifier it passes
//! ([`transient_status`] is the common part); when to stop is decided here, the same way for all.

use reqwest::StatusCode;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Capped exponential backoff with jitter: the n-th pause is drawn uniformly between half and
/// all of `first × 2^(n-1)`, at most `max`. Jitter keeps instances that boot together from
/// retrying in step against one API; the floor of half keeps a dead endpoint from a tight loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Between two requests to a metadata service or a cloud API: 100 ms doubling to 2 s.
    pub const REQUEST: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The longest pause before retry `n` (1 for the first): `first` doubled `n - 1` times, at
    /// most `max`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// The pause before retry `n`: uniformly between half and all of [`Backoff::ceiling`].
    pub fn pause(&self, n: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(n);
        let floor = ceiling / 2;
        let spread = u64::try_from((ceiling - floor).as_nanos()).unwrap_or(u64::MAX);
        floor + Duration::from_nanos(rng.u64(0..=spread))
    }

    /// The pauses of one series of retries, in order: for the loops that are not [`until`]
    /// (joining a load balancer retries forever, until kiln stops).
    pub fn pauses(self) -> Pauses {
        Pauses {
            backoff: self,
            taken: 0,
            rng: fastrand::Rng::new(),
        }
    }
}

/// One series of [`Backoff`] pauses.
#[derive(Debug)]
pub struct Pauses {
    backoff: Backoff,
    taken: u32,
    rng: fastrand::Rng,
}

impl Pauses {
    /// The next pause: the first, then each drawn from a ceiling twice the last, up to the cap.
    pub fn next_pause(&mut self) -> Duration {
        self.taken = self.taken.saturating_add(1);
        self.backoff.pause(self.taken, &mut self.rng)
    }
}

/// 429 (too many requests) and every 5xx: the statuses that go away by themselves, whoever
/// answers. Protocols add theirs around it (Azure IMDS's 404 and 410, AWS's throttling codes).
pub fn transient_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// What the caller's classifier makes of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done: a success, or an answer another attempt would not change.
    Final,
    /// It may go away by itself (no connection, no answer, 429, 5xx): again after a pause. The
    /// reason is logged, and is the error's if the deadline comes first.
    Retry(String),
    /// The attempt fixed its own cause (an expired IMDSv2 token was dropped): again at once.
    Again(String),
}

/// A retry about to happen, for the caller to log or report.
#[derive(Debug)]
pub struct Retrying<'a> {
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    pub reason: &'a str,
    pub pause: Duration,
}

/// How the attempts ended.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The attempt the classifier called final.
    Final(T),
    /// The deadline passed first.
    GaveUp(GaveUp<T>),
}

#[derive(Debug)]
pub struct GaveUp<T> {
    /// The last attempt and why it was to be retried; None when the deadline had passed before
    /// the first.
    pub last: Option<(T, String)>,
    pub attempts: u32,
    pub elapsed: Duration,
}

impl<T> GaveUp<T> {
    /// The last attempt's reason, or that there was none.
    pub fn reason(&self) -> &str {
        self.last
            .as_ref()
            .map_or("the deadline passed before the first attempt", |(_, reason)| {
                reason
            })
    }
}

/// `1 attempt`, `3 attempts`.
pub fn attempts(n: u32) -> String {
    format!("{n} attempt{}", if n == 1 { "" } else { "s" })
}

/// Runs `attempt` until `classify` calls one final or `deadline` passes. No attempt starts at or
/// after the deadline, and no pause runs past it: kiln gives up *at* the deadline, with the last
/// attempt. `on_retry` hears of each retry before its pause (not of a pause that only waits out
/// the deadline, nor of an [`Verdict::Again`], which the classifier knows of already).
pub async fn until<T, A, Fut, C, R>(
    deadline: Instant,
    backoff: Backoff,
    mut attempt: A,
    mut classify: C,
    mut on_retry: R,
) -> Outcome<T>
where
    A: FnMut() -> Fut,
    Fut: Future<Output = T>,
    C: FnMut(&T) -> Verdict,
    R: FnMut(&Retrying<'_>),
{
    let started = Instant::now();
    let mut pauses = backoff.pauses();
    let mut attempts = 0u32;
    let mut last = None;
    while Instant::now() < deadline {
        attempts = attempts.saturating_add(1);
        let value = attempt().await;
        let (reason, pause) = match classify(&value) {
            Verdict::Final => return Outcome::Final(value),
            Verdict::Again(reason) => (reason, Duration::ZERO),
            Verdict::Retry(reason) => (reason, pauses.next_pause()),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !pause.is_zero() && pause < left {
            on_retry(&Retrying {
                attempt: attempts,
                reason: &reason,
                pause,
            });
        }
        tokio::time::sleep(pause.min(left)).await;
        last = Some((value, reason));
    }
    Outcome::GaveUp(GaveUp {
        last,
        attempts,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ceiling_doubles_and_caps() {
        let b = Backoff::REQUEST;
        let ceilings: Vec<Duration> = (1..=8).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 2000, 2000, 2000].map(|ms| ms * MS)
        );
        assert_eq!(b.ceiling(u32::MAX), 2000 * MS, "no overflow far out");
    }

    #[test]
    fn each_pause_is_between_half_and_all_of_its_ceiling() {
        let b = Backoff::REQUEST;
        let mut rng = fastrand::Rng::with_seed(7);
        for n in 1..=10 {
            let pauses: Vec<Duration> = (0..200).map(|_| b.pause(n, &mut rng)).collect();
            let (ceiling, floor) = (b.ceiling(n), b.ceiling(n) / 2);
            assert!(
                pauses.iter().all(|p| (floor..=ceiling).contains(p)),
                "n={n}: {pauses:?}"
            );
            // Jitter: the pauses of one retry are not all the same.
            assert!(pauses.iter().any(|p| *p != pauses[0]), "n={n}");
        }
    }

    #[test]
    fn transient_statuses_are_429_and_5xx() {
        for (status, transient) in [(500, true), (503, true), (599, true), (429, true), (400, false)] {
            assert_eq!(
                transient_status(StatusCode::from_u16(status).unwrap()),
                transient,
                "{status}"
            );
        }
        for status in [200, 301, 401, 403, 404, 410] {
            assert!(
                !transient_status(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }

    /// Runs `until` with attempts that answer `answers` in turn (the last one forever),
    /// classified by `classify`; returns the outcome and when each attempt started.
    async fn run(
        deadline: Duration,
        answers: &[u16],
        classify: impl FnMut(&u16) -> Verdict,
    ) -> (Outcome<u16>, Vec<Duration>) {
        let started = Instant::now();
        let starts = RefCell::new(Vec::new());
        let next = RefCell::new(answers.iter().copied());
        let last = *answers.last().unwrap();
        let outcome = until(
            started + deadline,
            Backoff::REQUEST,
            || {
                starts.borrow_mut().push(started.elapsed());
                let answer = next.borrow_mut().next().unwrap_or(last);
                async move { answer }
            },
            classify,
            |_| {},
        )
        .await;
        (outcome, starts.into_inner())
    }

    fn by_status(answer: &u16) -> Verdict {
        match transient_status(StatusCode::from_u16(*answer).unwrap()) {
            true => Verdict::Retry(format!("answered {answer}")),
            false => Verdict::Final,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline_and_never_attempts_past_it() {
        let (outcome, starts) = run(Duration::from_secs(5), &[503], by_status).await;
        let Outcome::GaveUp(gave_up) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            gave_up.elapsed,
            Duration::from_secs(5),
            "at the deadline, not before"
        );
        assert_eq!(gave_up.attempts as usize, starts.len());
        assert!(starts.iter().all(|s| *s < Duration::from_secs(5)), "{starts:?}");
        assert_eq!(gave_up.reason(), "answered 503");
        assert_eq!(gave_up.last.map(|(answer, _)| answer), Some(503));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pauses_grow_and_cap() {
        let (_, starts) = run(Duration::from_secs(30), &[503], by_status).await;
        let pauses: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(pauses.len() > 12, "{pauses:?}");
        for (n, pause) in (1u32..).zip(&pauses) {
            let ceiling = Backoff::REQUEST.ceiling(n);
            assert!(ceiling / 2 <= *pause && *pause <= ceiling, "pause {n}: {pause:?}");
        }
        assert!(
            pauses[10..].iter().all(|p| *p >= Duration::from_secs(1)),
            "capped at 2s: {pauses:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_answer_stops_at_once() {
        let (outcome, starts) = run(Duration::from_secs(5), &[403, 200], by_status).await;
        assert!(matches!(outcome, Outcome::Final(403)), "{outcome:?}");
        assert_eq!(starts, [Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_callers_classifier_decides_what_is_retried() {
        // Azure IMDS: 404 and 410 pass like a 5xx; then the answer.
        let azure = |answer: &u16| match answer {
            404 | 410 => Verdict::Retry(format!("answered {answer}")),
            _ => by_status(answer),
        };
        let (outcome, starts) = run(Duration::from_secs(5), &[404, 410, 503, 200], azure).await;
        assert!(matches!(outcome, Outcome::Final(200)), "{outcome:?}");
        assert_eq!(starts.len(), 4);
        // The same answers under the common rule: the 404 is final.
        let (outcome, _) = run(Duration::from_secs(5), &[404, 410, 503, 200], by_status).await;
        assert!(matches!(outcome, Outcome::Final(404)), "{outcome:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn again_retries_at_once_and_does_not_grow_the_backoff() {
        // IMDSv2: 401 means the token expired; the attempt dropped it, the next asks anew.
        let imds = |answer: &u16| match answer {
            401 => Verdict::Again("token expired".into()),
            _ => by_status(answer),
        };
        let (outcome, starts) = run(Duration::from_secs(5), &[401, 401, 503, 200], imds).await;
        assert!(matches!(outcome, Outcome::Final(200)), "{outcome:?}");
        assert_eq!(starts[0], starts[2], "no pause after a 401");
        let first_pause = starts[3] - starts[2];
        assert!((50 * MS..=100 * MS).contains(&first_pause), "{first_pause:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_passed_makes_no_attempt() {
        let (outcome, starts) = run(Duration::ZERO, &[200], by_status).await;
        let Outcome::GaveUp(gave_up) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(starts.is_empty());
        assert_eq!(gave_up.attempts, 0);
        assert_eq!(gave_up.reason(), "the deadline passed before the first attempt");
    }

    #[tokio::test(start_paused = true)]
    async fn on_retry_hears_only_of_retries_that_happen() {
        let heard = RefCell::new(Vec::new());
        let deadline = Instant::now() + Duration::from_millis(250);
        let outcome = until(
            deadline,
            Backoff::REQUEST,
            || async { 503u16 },
            by_status,
            |r| heard.borrow_mut().push((r.attempt, r.reason.to_string())),
        )
        .await;
        let Outcome::GaveUp(gave_up) = outcome else {
            panic!("{outcome:?}")
        };
        // Every attempt but the last is followed by a retry; the last pause waits out the deadline.
        let heard = heard.into_inner();
        assert_eq!(heard.len() as u32, gave_up.attempts - 1, "{heard:?}");
        assert!(heard.iter().all(|(_, reason)| reason == "answered 503"));
    }

    #[tokio::test(start_paused = true)]
    async fn again_is_not_reported_as_a_retry() {
        let heard = RefCell::new(0);
        let answers = RefCell::new([401u16, 200].into_iter());
        let outcome = until(
            Instant::now() + Duration::from_secs(5),
            Backoff::REQUEST,
            || {
                let answer = answers.borrow_mut().next().unwrap_or(200);
                async move { answer }
            },
            |answer| match answer {
                401 => Verdict::Again("token expired".into()),
                _ => Verdict::Final,
            },
            |_| *heard.borrow_mut() += 1,
        )
        .await;
        assert!(matches!(outcome, Outcome::Final(200)), "{outcome:?}");
        assert_eq!(heard.into_inner(), 0);
    }

    #[test]
    fn attempts_are_counted_in_words() {
        assert_eq!(attempts(1), "1 attempt");
        assert_eq!(attempts(3), "3 attempts");
    }
}
