//! Where an ELBv2 `instance` target is: the target group names it by instance id only (that is
//! what an Auto Scaling group registers), so its private address comes from EC2
//! `DescribeInstances`, through the one AWS client (`crate::aws`, service [`EC2`]).
//!
//! The ids are asked in batches of [`BATCH`] (`InstanceId.N`), the batches [`CONCURRENT`] at a
//! time, each paged by `NextToken` up to [`MAX_PAGES`] pages, all within one deadline. EC2 refuses
//! a whole batch when one of its ids is unknown (`InvalidInstanceID.NotFound`, naming the ids): the
//! ids it names are set aside and the rest asked again, at most [`MAX_ROUNDS`] times a batch.
//! Every member the look-up cannot place keeps a sentence saying why (`--instance` still works).

use crate::aws::{Api, CallError, EC2, Items};
use crate::terminal::peer_text;
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Instance ids in one `DescribeInstances` request.
const BATCH: usize = 100;
/// Batches asked at the same time.
const CONCURRENT: usize = 4;
/// Pages of one batch (a batch of ids rarely has a second).
const MAX_PAGES: usize = 10;
/// Calls of one batch while EC2 names unknown ids.
const MAX_ROUNDS: usize = 5;
/// Instance targets looked up at most (the target quota of a load balancer).
pub const MAX_IDS: usize = 1000;

/// Where each instance is: its private IPv4 address, or why there is none.
pub type Addresses = BTreeMap<String, Result<String, String>>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeInstancesResponse {
    reservation_set: Option<Items<Reservation>>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reservation {
    instances_set: Option<Items<Instance>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instance {
    instance_id: String,
    private_ip_address: Option<String>,
    instance_state: Option<InstanceState>,
}

#[derive(Deserialize)]
struct InstanceState {
    name: String,
}

/// EC2 in the target group's region, by the target group's client (its credentials and pool).
pub fn api(elbv2: &Api) -> Result<Api, String> {
    elbv2
        .client()
        .api(&EC2, &elbv2.endpoint().region, None)
        .map_err(|e| format!("ec2: {e}"))
}

/// The private address of every id in `ids`, or why not, by `deadline`.
pub async fn addresses(ec2: &Api, ids: &[String], deadline: Instant) -> Addresses {
    let mut found = Addresses::new();
    let mut asked = Vec::new();
    for id in ids {
        if found.contains_key(id) || asked.contains(id) {
            continue;
        }
        if !is_instance_id(id) {
            found.insert(id.clone(), Err("not an EC2 instance id".into()));
        } else if asked.len() == MAX_IDS {
            found.insert(
                id.clone(),
                Err(format!("not looked up: more than {MAX_IDS} instance targets")),
            );
        } else {
            asked.push(id.clone());
        }
    }
    let batches = asked
        .chunks(BATCH)
        .map(|batch| describe_batch(ec2, batch, deadline));
    let mut answers = futures_util::stream::iter(batches).buffer_unordered(CONCURRENT);
    while let Some(batch) = answers.next().await {
        found.extend(batch);
    }
    found
}

/// One batch: asked again without the ids EC2 says it does not know, at most [`MAX_ROUNDS`] times.
async fn describe_batch(ec2: &Api, batch: &[String], deadline: Instant) -> Addresses {
    let mut found = Addresses::new();
    let mut left: Vec<String> = batch.to_vec();
    for round in 1..=MAX_ROUNDS {
        match describe(ec2, &left, deadline).await {
            Ok(instances) => {
                for instance in instances {
                    if left.contains(&instance.instance_id) {
                        found.insert(instance.instance_id.clone(), address(&instance));
                    }
                }
                for id in left {
                    found
                        .entry(id)
                        .or_insert_with(|| Err("EC2 does not list this instance".into()));
                }
                return found;
            }
            Err(e) => {
                let unknown = unknown_ids(&e, &left);
                if unknown.is_empty() || round == MAX_ROUNDS {
                    let why = format!("its address is not known ({e})");
                    found.extend(left.into_iter().map(|id| (id, Err(why.clone()))));
                    return found;
                }
                left.retain(|id| !unknown.contains(id));
                for id in unknown {
                    found.insert(
                        id,
                        Err("EC2 does not know this instance (InvalidInstanceID.NotFound)".into()),
                    );
                }
                if left.is_empty() {
                    return found;
                }
            }
        }
    }
    found
}

/// Every instance `DescribeInstances` lists for `ids`, page after page.
async fn describe(ec2: &Api, ids: &[String], deadline: Instant) -> Result<Vec<Instance>, CallError> {
    let mut instances = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let names: Vec<String> = (1..=ids.len()).map(|n| format!("InstanceId.{n}")).collect();
        let mut params: Vec<(&str, String)> = names
            .iter()
            .map(String::as_str)
            .zip(ids.iter().cloned())
            .collect();
        if let Some(token) = &token {
            params.push(("NextToken", token.clone()));
        }
        let page: DescribeInstancesResponse = ec2.query("DescribeInstances", &params, deadline).await?;
        let reservations = page.reservation_set.map(|r| r.item).unwrap_or_default();
        instances.extend(
            reservations
                .into_iter()
                .flat_map(|r| r.instances_set.map(|i| i.item).unwrap_or_default()),
        );
        token = page.next_token.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    Ok(instances)
}

/// The instance's private IPv4 address; a terminated instance has none.
fn address(instance: &Instance) -> Result<String, String> {
    let ip = instance
        .private_ip_address
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
    match (ip, &instance.instance_state) {
        (Some(ip), _) => Ok(ip.to_string()),
        (None, Some(state)) => Err(format!(
            "EC2 gives no private address (instance {})",
            peer_text(&state.name)
        )),
        (None, None) => Err("EC2 gives no private address".into()),
    }
}

/// The ids of `asked` that EC2's `InvalidInstanceID.NotFound` names (`The instance ID 'i-1' does
/// not exist`, `The instance IDs 'i-1, i-2' do not exist`).
fn unknown_ids(e: &CallError, asked: &[String]) -> Vec<String> {
    let CallError::Aws { error, .. } = e else {
        return Vec::new();
    };
    if error.code != "InvalidInstanceID.NotFound" {
        return Vec::new();
    }
    error
        .message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| asked.iter().any(|id| id == word))
        .map(str::to_string)
        .collect()
}

/// `i-` and 1 to 32 hex digits (EC2's ids have 8 or 17): anything else is not sent to EC2.
fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-")
        .is_some_and(|hex| (1..=32).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;

    #[test]
    fn an_answer_gives_each_instance_its_private_address() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <privateIpAddress>10.0.0.12</privateIpAddress>
          <networkInterfaceSet><item><privateIpAddress>10.0.0.12</privateIpAddress></item></networkInterfaceSet>
        </item>
        <item>
          <instanceId>i-0598c7d356eba48d7</instanceId>
          <instanceState><code>48</code><name>terminated</name></instanceState>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
  <nextToken>abc</nextToken>
</DescribeInstancesResponse>"#;
        let page: DescribeInstancesResponse = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(page.next_token.as_deref(), Some("abc"));
        let instances: Vec<Instance> = page
            .reservation_set
            .unwrap()
            .item
            .into_iter()
            .flat_map(|r| r.instances_set.unwrap().item)
            .collect();
        let placed: Vec<(String, Result<String, String>)> = instances
            .iter()
            .map(|i| (i.instance_id.clone(), address(i)))
            .collect();
        assert_eq!(
            placed,
            [
                ("i-1234567890abcdef0".into(), Ok("10.0.0.12".into())),
                (
                    "i-0598c7d356eba48d7".into(),
                    Err("EC2 gives no private address (instance terminated)".into())
                ),
            ]
        );
        let empty = r#"<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>"#;
        let page: DescribeInstancesResponse = quick_xml::de::from_str(empty).unwrap();
        assert!(page.reservation_set.unwrap().item.is_empty());
        assert_eq!(page.next_token, None);
    }

    #[test]
    fn unknown_ids_are_the_asked_ones_ec2_names() {
        let not_found = |message: &str| CallError::Aws {
            service: "ec2",
            action: "DescribeInstances".into(),
            endpoint: "http://x".into(),
            status: 400,
            error: AwsError {
                code: "InvalidInstanceID.NotFound".into(),
                message: message.into(),
            },
            attempts: 1,
        };
        let asked: Vec<String> = ["i-0aaa", "i-0bbb", "i-0ccc"].map(String::from).to_vec();
        assert_eq!(
            unknown_ids(
                &not_found("The instance IDs 'i-0aaa, i-0ccc' do not exist"),
                &asked
            ),
            ["i-0aaa", "i-0ccc"]
        );
        assert_eq!(
            unknown_ids(&not_found("The instance ID 'i-0bbb' does not exist"), &asked),
            ["i-0bbb"]
        );
        assert!(unknown_ids(&not_found("The instance ID 'i-0zzz' does not exist"), &asked).is_empty());
    }

    #[test]
    fn only_instance_ids_are_asked() {
        for good in ["i-0dead", "i-1234567890abcdef0", "i-12345678"] {
            assert!(is_instance_id(good), "{good}");
        }
        for bad in ["iid-kiln-example-0001", "i-", "10.0.0.5", "i-0xyz", "i-0abc&x=1"] {
            assert!(!is_instance_id(bad), "{bad}");
        }
    }
}
