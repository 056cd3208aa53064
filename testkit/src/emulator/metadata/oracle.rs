//! Oracle Cloud (OCI) instance metadata service v2: `/opc/v2/instance/` (one JSON document,
//! `metadata.user_data` base64, `freeformTags`) and `/opc/v2/vnics/` (a JSON list). Every v2
//! request must carry `Authorization: Bearer Oracle`: without it, 401 as OCI answers.

use super::{Answer, Req, State};
use base64::Engine;
use serde_json::{Value, json};

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    if req.header("authorization") != Some("Bearer Oracle") {
        return super::json(
            401,
            &json!({"code": "NotAuthenticated", "message": "The required information to complete authentication was not provided."}),
        );
    }
    let i = &state.options.instance;
    match req.path.as_str() {
        "/opc/v2/instance" | "/opc/v2/instance/" => super::json(200, &instance(state)),
        "/opc/v2/instance/id" => super::text(200, i.id.clone()),
        "/opc/v2/instance/canonicalRegionName" => super::text(200, i.region.clone()),
        "/opc/v2/vnics" | "/opc/v2/vnics/" => super::json(
            200,
            &json!([{
                "vnicId": "ocid1.vnic.oc1.eu-frankfurt-1.abtheljr",
                "privateIp": i.local_ipv4,
                "vlanTag": 0,
                "macAddr": "02:00:17:00:48:0C",
                "virtualRouterIp": "10.0.0.1",
                "subnetCidrBlock": "10.0.0.0/24",
            }]),
        ),
        _ => super::json(404, &json!({"code": "NotFound", "message": "Not Found"})),
    }
}

fn instance(state: &State) -> Value {
    let i = &state.options.instance;
    let mut metadata = json!({ "ssh_authorized_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln kiln" });
    if let Some(data) = &i.user_data {
        metadata["user_data"] = base64::engine::general_purpose::STANDARD.encode(data).into();
    }
    json!({
        "availabilityDomain": i.zone,
        "faultDomain": "FAULT-DOMAIN-2",
        "compartmentId": "ocid1.compartment.oc1..aaaaaaaakiln",
        "displayName": i.hostname,
        "hostname": i.hostname,
        "id": i.id,
        "image": "ocid1.image.oc1.eu-frankfurt-1.aaaaaaaakiln",
        "metadata": metadata,
        "region": "fra",
        "canonicalRegionName": i.region,
        "ociAdName": "fra-ad-1",
        "regionInfo": { "realmKey": "oc1", "realmDomainComponent": "oraclecloud.com", "regionKey": "FRA", "regionIdentifier": i.region },
        "shape": "VM.Standard.E4.Flex",
        "state": "Running",
        "timeCreated": 1733443200000u64,
        "agentConfig": { "monitoringDisabled": false, "managementDisabled": false },
        "freeformTags": i.tags,
        "definedTags": { "Oracle-Tags": { "CreatedBy": "kiln" } },
    })
}
