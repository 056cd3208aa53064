//! From what the load balancer and each kiln said to one state per member and one verdict for
//! the fleet. Pure: no I/O, so every case is a unit test.

use super::ask::KilnView;
use super::words::{Image, LbView};
use crate::state::Phase;
use serde::Serialize;
use std::collections::BTreeMap;

/// One member's state, from both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// kiln ready and the load balancer sends it traffic.
    Ready,
    /// Booting, or ready and waiting for the load balancer's first check.
    Joining,
    /// Draining or stopping: on its way out.
    Leaving,
    /// kiln says a service is not ready (`degraded`).
    NotReady,
    /// kiln refused the boot or failed for good (seal drift, pin mismatch, bad metadata).
    Failed,
    /// The load balancer lists it; its kiln does not answer.
    Unreachable,
    /// kiln is ready but the load balancer does not list it.
    NotListed,
    /// kiln is ready but the load balancer sends it nothing (down, drained or in maintenance).
    OutOfRotation,
}

impl MemberState {
    /// Drift: the instance needs a person or a replacement, whatever else goes on.
    pub fn is_drift(self) -> bool {
        matches!(
            self,
            MemberState::Failed
                | MemberState::Unreachable
                | MemberState::NotListed
                | MemberState::OutOfRotation
        )
    }
}

/// The fleet's verdict. `kiln fleet` exits with [`Verdict::exit_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every member ready, in service, on one image.
    Uniform,
    /// Two images: a roll in progress.
    Rolling,
    /// One image, some members joining, leaving or not ready.
    Degraded,
    /// A member failed, does not answer, or kiln and the load balancer disagree; or more than
    /// two images.
    Drift,
    /// The load balancer lists no member.
    Empty,
    /// The load balancer could not be asked (no answer, or an error such as no such backend).
    Unreachable,
}

impl Verdict {
    /// 0 uniform and ready; 2 rolling or degraded (wait and ask again); 1 anything a person
    /// must look at.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Uniform => 0,
            Verdict::Rolling | Verdict::Degraded => 2,
            Verdict::Drift | Verdict::Empty | Verdict::Unreachable => 1,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Uniform => "UNIFORM",
            Verdict::Rolling => "ROLLING",
            Verdict::Degraded => "DEGRADED",
            Verdict::Drift => "DRIFT",
            Verdict::Empty => "EMPTY",
            Verdict::Unreachable => "UNREACHABLE",
        }
    }
}

/// One member as both sides see it. `health` is where its kiln was asked; None when the load
/// balancer names it by instance id only and no `--instance` answered for it.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// The load balancer's name for it (server, service ID, target id); None when not listed.
    pub name: Option<String>,
    /// Where the load balancer sends its traffic.
    pub address: Option<String>,
    pub health: Option<String>,
    pub lb: LbView,
    /// The load balancer's own word (`UP`, `DRAIN`, `passing`, `healthy`...).
    pub lb_word: Option<String>,
    /// kiln's verbose `/readyz`, or why there is none.
    pub kiln: Result<KilnView, String>,
    /// The instance id the load balancer names it by (ELBv2 `instance` targets): the kiln that
    /// answers at its address must report it.
    pub instance_id: Option<String>,
}

/// A member's state and, when it is not fine, the sentence saying why.
pub fn classify(s: &Sighting) -> (MemberState, Option<String>) {
    let lb_word = s.lb_word.as_deref().unwrap_or("-");
    let k = match (&s.kiln, &s.health) {
        (Ok(k), _) => k,
        (Err(why), Some(health)) if s.lb == LbView::NotListed => {
            let problem = format!("kiln does not answer at {health}: {why}");
            return (MemberState::Unreachable, Some(problem));
        }
        (Err(why), Some(health)) => {
            let problem =
                format!("the load balancer lists it ({lb_word}) but kiln does not answer at {health}: {why}");
            return (MemberState::Unreachable, Some(problem));
        }
        (Err(why), None) => {
            let problem = format!("the load balancer lists it ({lb_word}); {why}");
            return (MemberState::Unreachable, Some(problem));
        }
    };
    if let (Some(listed), Some(answered)) = (&s.instance_id, &k.instance_id)
        && listed != answered
    {
        let at = s.health.as_deref().unwrap_or("its address");
        let problem = format!(
            "the load balancer lists instance {listed} ({lb_word}) but the kiln at {at} says it is {answered}"
        );
        return (MemberState::Unreachable, Some(problem));
    }
    let reason = || k.reason.clone().unwrap_or_else(|| "no reason given".into());
    if let Some(pin) = k.pin_mismatch() {
        return (MemberState::Failed, Some(pin));
    }
    match k.phase {
        Some(Phase::Failed) => (MemberState::Failed, Some(format!("failed: {}", reason()))),
        Some(Phase::Stopping | Phase::Stopped) => (MemberState::Leaving, None),
        Some(Phase::Booting | Phase::Starting) => (MemberState::Joining, None),
        Some(Phase::Degraded) => (MemberState::NotReady, Some(format!("degraded: {}", reason()))),
        None => (
            MemberState::NotReady,
            Some(format!(
                "kiln reports phase {:?}, unknown to this kiln fleet",
                k.phase_word
            )),
        ),
        Some(Phase::Ready) => match s.lb {
            LbView::InService => (MemberState::Ready, None),
            LbView::Joining => (MemberState::Joining, None),
            LbView::NotListed => (
                MemberState::NotListed,
                Some("kiln is ready but the load balancer does not list it".into()),
            ),
            LbView::Down | LbView::Draining | LbView::Maintenance => (
                MemberState::OutOfRotation,
                Some(format!(
                    "kiln is ready but the load balancer sends it nothing ({lb_word})"
                )),
            ),
        },
    }
}

/// The verdict, the images with their member counts (most first), and what needs attention.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub verdict: Verdict,
    /// E.g. `3 on v1 (2cd48efa9c76), 1 on v2 (9f0c1b2a7d3e)` or `4 ready on v2 (9f0c1b2a7d3e)`.
    pub summary: String,
    pub images: Vec<ImageCount>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageCount {
    #[serde(flatten)]
    pub image: Image,
    pub members: usize,
}

/// `members`: each member's sighting, its state and its problem sentence (from [`classify`]).
pub fn assess(members: &[(Sighting, MemberState, Option<String>)]) -> Assessment {
    let mut counts: BTreeMap<Image, usize> = BTreeMap::new();
    for (s, state, _) in members {
        if let (Ok(k), false) = (&s.kiln, *state == MemberState::Failed) {
            *counts.entry(k.image()).or_default() += 1;
        }
    }
    let mut images: Vec<ImageCount> = counts
        .into_iter()
        .map(|(image, members)| ImageCount { image, members })
        .collect();
    images.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.image.cmp(&b.image)));
    let on_images = images
        .iter()
        .map(|i| format!("{} on {}", i.members, i.image))
        .collect::<Vec<_>>()
        .join(", ");
    let mut problems: Vec<String> = members
        .iter()
        .filter_map(|(s, _, problem)| Some(format!("{}: {}", who(s), problem.as_ref()?)))
        .collect();
    let drifting = members.iter().filter(|(_, state, _)| state.is_drift()).count();
    let settled = members
        .iter()
        .filter(|(_, state, _)| *state == MemberState::Ready)
        .count();
    let (verdict, summary) = if members.is_empty() {
        (Verdict::Empty, "the load balancer lists no member".to_string())
    } else if drifting > 0 {
        let verb = if drifting == 1 { "needs" } else { "need" };
        let mut summary = format!("{drifting} of {} {verb} attention", members.len());
        if !on_images.is_empty() {
            summary = format!("{summary}; {on_images}");
        }
        (Verdict::Drift, summary)
    } else if images.len() > 2 {
        problems.push(format!("{} images in one fleet: {on_images}", images.len()));
        (Verdict::Drift, on_images)
    } else if images.len() == 2 {
        (Verdict::Rolling, on_images)
    } else if settled < members.len() {
        let summary = format!("{settled} of {} ready; {on_images}", members.len());
        (Verdict::Degraded, summary)
    } else {
        (
            Verdict::Uniform,
            format!("{settled} ready on {}", images[0].image),
        )
    };
    Assessment {
        verdict,
        summary,
        images,
        problems,
    }
}

/// `10.0.0.5:8080 (i-0abc)`: the address and the best name known for a member.
pub fn who(s: &Sighting) -> String {
    let id = s
        .kiln
        .as_ref()
        .ok()
        .and_then(|k| k.instance_id.clone())
        .or_else(|| s.name.clone());
    match (s.address.clone().or_else(|| s.health.clone()), id) {
        (Some(place), Some(id)) => format!("{place} ({id})"),
        (Some(place), None) => place,
        (None, Some(id)) => id,
        (None, None) => "a member without a name".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kiln(phase: &str, release: &str, hash: &str) -> KilnView {
        KilnView {
            phase: serde_json::from_value(serde_json::json!(phase)).ok(),
            phase_word: phase.into(),
            release: Some(release.into()),
            root_hash: Some(hash.into()),
            instance_id: Some(format!("i-{release}")),
            ..KilnView::default()
        }
    }

    fn seen(lb: LbView, kiln: Result<KilnView, String>) -> Sighting {
        Sighting {
            name: (lb != LbView::NotListed).then(|| "srv".into()),
            address: Some("10.0.0.5:8080".into()),
            health: Some("10.0.0.5:9100".into()),
            lb,
            lb_word: Some("UP".into()),
            kiln,
            instance_id: None,
        }
    }

    fn verdict(members: Vec<Sighting>) -> Assessment {
        let rows: Vec<_> = members
            .into_iter()
            .map(|s| {
                let (state, problem) = classify(&s);
                (s, state, problem)
            })
            .collect();
        assess(&rows)
    }

    const V1: &str = "1111111111111111aaaa";
    const V2: &str = "2222222222222222bbbb";

    #[test]
    fn all_ready_on_one_image_is_uniform() {
        let a = verdict(vec![
            seen(LbView::InService, Ok(kiln("ready", "v1", V1))),
            seen(LbView::InService, Ok(kiln("ready", "v1", V1))),
        ]);
        assert_eq!(a.verdict, Verdict::Uniform);
        assert_eq!(a.summary, "2 ready on v1 (111111111111)");
        assert!(a.problems.is_empty());
        assert_eq!(a.verdict.exit_code(), 0);
    }

    #[test]
    fn two_images_are_a_roll_with_counts_even_while_one_leaves() {
        let a = verdict(vec![
            seen(LbView::InService, Ok(kiln("ready", "v1", V1))),
            seen(LbView::Draining, Ok(kiln("stopping", "v1", V1))),
            seen(LbView::InService, Ok(kiln("ready", "v2", V2))),
        ]);
        assert_eq!(a.verdict, Verdict::Rolling);
        assert_eq!(a.summary, "2 on v1 (111111111111), 1 on v2 (222222222222)");
        assert_eq!(a.images[1].members, 1);
        assert_eq!(a.verdict.exit_code(), 2);
    }

    #[test]
    fn a_member_that_does_not_answer_is_drift_and_named() {
        let a = verdict(vec![
            seen(LbView::InService, Ok(kiln("ready", "v1", V1))),
            seen(LbView::Down, Err("connection refused".into())),
        ]);
        assert_eq!(a.verdict, Verdict::Drift);
        assert_eq!(a.verdict.exit_code(), 1);
        assert_eq!(
            a.problems,
            [
                "10.0.0.5:8080 (srv): the load balancer lists it (UP) but kiln does not answer at 10.0.0.5:9100: connection refused"
            ]
        );
    }

    #[test]
    fn a_failed_seal_is_drift_and_not_counted_as_an_image() {
        let mut tampered = kiln("failed", "v1", V1);
        tampered.reason = Some("seal drift: content changed /srv/app/index.php".into());
        let a = verdict(vec![
            seen(LbView::InService, Ok(kiln("ready", "v1", V1))),
            seen(LbView::NotListed, Ok(tampered)),
        ]);
        assert_eq!(a.verdict, Verdict::Drift);
        assert_eq!(a.images.len(), 1);
        assert_eq!(
            a.problems,
            ["10.0.0.5:8080 (i-v1): failed: seal drift: content changed /srv/app/index.php"]
        );
    }

    #[test]
    fn kiln_ready_but_out_of_the_load_balancer_is_drift() {
        for lb in [LbView::NotListed, LbView::Down, LbView::Maintenance] {
            let a = verdict(vec![seen(lb, Ok(kiln("ready", "v1", V1)))]);
            assert_eq!(a.verdict, Verdict::Drift, "{lb:?}");
        }
    }

    #[test]
    fn joining_and_degraded_members_on_one_image_are_degraded() {
        let a = verdict(vec![
            seen(LbView::InService, Ok(kiln("ready", "v1", V1))),
            seen(LbView::NotListed, Ok(kiln("starting", "v1", V1))),
            seen(LbView::Down, Ok(kiln("degraded", "v1", V1))),
        ]);
        assert_eq!(a.verdict, Verdict::Degraded);
        assert_eq!(a.summary, "1 of 3 ready; 3 on v1 (111111111111)");
        assert_eq!(a.problems.len(), 1, "{:?}", a.problems);
    }

    #[test]
    fn three_images_are_drift_and_no_member_is_empty() {
        let a = verdict(vec![
            seen(LbView::InService, Ok(kiln("ready", "v1", V1))),
            seen(LbView::InService, Ok(kiln("ready", "v2", V2))),
            seen(LbView::InService, Ok(kiln("ready", "v3", "33"))),
        ]);
        assert_eq!(a.verdict, Verdict::Drift);
        assert!(
            a.problems[0].starts_with("3 images in one fleet"),
            "{:?}",
            a.problems
        );
        assert_eq!(verdict(vec![]).verdict, Verdict::Empty);
    }

    #[test]
    fn a_kiln_that_is_another_instance_than_the_listed_one_is_drift() {
        let mut other = seen(LbView::InService, Ok(kiln("ready", "v1", V1)));
        other.instance_id = Some("i-0aaa".into());
        let mut same = seen(LbView::InService, Ok(kiln("ready", "v1", V1)));
        same.instance_id = Some("i-v1".into());
        let a = verdict(vec![same, other]);
        assert_eq!(a.verdict, Verdict::Drift);
        assert_eq!(
            a.problems,
            [
                "10.0.0.5:8080 (i-v1): the load balancer lists instance i-0aaa (UP) but the kiln at 10.0.0.5:9100 says it is i-v1"
            ]
        );
    }

    #[test]
    fn an_unknown_phase_from_a_newer_kiln_is_not_ready() {
        let a = verdict(vec![seen(LbView::InService, Ok(kiln("hibernating", "v1", V1)))]);
        assert_eq!(a.verdict, Verdict::Degraded);
        assert!(a.problems[0].contains("\"hibernating\""), "{:?}", a.problems);
    }
}
