//! Hetzner Cloud server metadata: `/hetzner/v1/metadata` (YAML), its keys one by one under
//! `/hetzner/v1/metadata/KEY`, `private-networks` (a YAML list) and `/hetzner/v1/userdata`
//! (raw; empty when the server has none). No header is required.

use super::{Answer, Req, State};

pub(super) fn handle(state: &State, req: &Req) -> Answer {
    if req.method != hyper::Method::GET {
        return super::text(405, "Method Not Allowed");
    }
    let i = &state.options.instance;
    let yaml = |body: String| super::answer(200, "text/yaml", body);
    match req.path.as_str() {
        "/hetzner/v1/metadata" => yaml(format!(
            "availability-zone: {zone}\nhostname: {host}\ninstance-id: {id}\npublic-ipv4: 203.0.113.7\n\
             region: {region}\npublic-keys:\n- ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln kiln\n\
             vendor_data: |\n  #cloud-config\n  runcmd: []\nnetwork-config:\n  config:\n  - mac_address: 96:00:00:00:00:01\n    \
             name: eth0\n    subnets:\n    - type: dhcp\n    type: physical\n  version: 1\n",
            zone = i.zone,
            host = i.hostname,
            id = i.id,
            region = i.region,
        )),
        "/hetzner/v1/metadata/instance-id" => super::text(200, i.id.clone()),
        "/hetzner/v1/metadata/hostname" => super::text(200, i.hostname.clone()),
        "/hetzner/v1/metadata/region" => super::text(200, i.region.clone()),
        "/hetzner/v1/metadata/availability-zone" => super::text(200, i.zone.clone()),
        "/hetzner/v1/metadata/private-networks" => yaml(format!(
            "- ip: {ip}\n  alias_ips: []\n  interface_num: 1\n  mac_address: 86:00:00:2a:7d:e0\n  \
             network_id: 1234\n  network_name: kiln\n  network: 10.0.0.0/16\n  subnet: 10.0.0.0/24\n  gateway: 10.0.0.1\n",
            ip = i.local_ipv4
        )),
        "/hetzner/v1/userdata" => super::answer(200, "text/plain", i.user_data.clone().unwrap_or_default()),
        _ => super::text(404, "Not Found"),
    }
}
