//! The gRPC adapter: the BBS's messages (events, actual LRPs, routing infos) turned into the
//! route table's [`Change`]s and [`Snapshot`] parts. The only file naming `pb::` model types.

use std::collections::HashMap;

use proto::pb::models::v1 as pb;
use serde::Deserialize;

use crate::table::{Change, Instance, RouteEntry, normalise_host};

/// The route provider the router serves: Diego's `cf-router` key of a desired LRP's `routes`.
pub const ROUTER_KEY: &str = "cf-router";

/// Most hostnames one desired LRP contributes (the BBS bounds the routes' size; this bounds the
/// table's work on a hostile document).
const MAX_HOSTNAMES: usize = 1024;

/// One entry of the `cf-router` document: `{"hostnames": [...], "port": 8080}`.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    hostnames: Vec<String>,
    #[serde(default)]
    port: u32,
}

/// The `cf-router` routes of a desired LRP's `routes` map: every hostname with its port. A
/// malformed document (or entry) gives no routes for it, never an error: the desired LRP was
/// accepted by the BBS and other route providers may read it differently.
pub fn routes_of(routes: &HashMap<String, Vec<u8>>) -> Vec<RouteEntry> {
    let Some(raw) = routes.get(ROUTER_KEY) else { return Vec::new() };
    let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(raw) else {
        tracing::debug!("a cf-router route document is not a JSON array; ignored");
        return Vec::new();
    };
    let mut out = Vec::new();
    for value in values {
        let Ok(entry) = serde_json::from_value::<Entry>(value) else { continue };
        if entry.port == 0 || entry.port > 65_535 {
            continue;
        }
        for hostname in entry.hostnames {
            let hostname = normalise_host(&hostname);
            if !hostname.is_empty() && out.len() < MAX_HOSTNAMES {
                out.push(RouteEntry { hostname, port: entry.port });
            }
        }
    }
    out
}

fn instance(
    key: Option<&pb::ActualLrpKey>,
    instance_key: Option<&pb::ActualLrpInstanceKey>,
    state: i32,
    routable: Option<bool>,
    net: Option<&pb::ActualLrpNetInfo>,
) -> Instance {
    let net = net.cloned().unwrap_or_default();
    let prefer_instance = net.preferred_address == pb::actual_lrp_net_info::PreferredAddress::Instance as i32;
    let own = if net.instance_address.is_empty() { net.instance_ipv6_address } else { net.instance_address };
    let instance_address = Some(own).filter(|a| prefer_instance && !a.is_empty());
    Instance {
        process_guid: key.map(|k| k.process_guid.clone()).unwrap_or_default(),
        instance_guid: instance_key.map(|k| k.instance_guid.clone()).unwrap_or_default(),
        index: key.map_or(0, |k| k.index),
        running: state == pb::ActualLrpState::Running as i32,
        routable: routable.unwrap_or(true),
        host: net.address,
        instance_address,
        ports: net.ports.iter().map(|p| (p.container_port, p.host_port)).collect(),
    }
}

/// An actual LRP as the table sees it.
pub fn instance_of(lrp: &pb::ActualLrp) -> Instance {
    instance(
        lrp.actual_lrp_key.as_ref(),
        lrp.actual_lrp_instance_key.as_ref(),
        lrp.state,
        lrp.routable,
        lrp.actual_lrp_net_info.as_ref(),
    )
}

/// A routing info as the table sees it.
pub fn desired_of(info: &pb::DesiredLrpRoutingInfo) -> (String, Vec<RouteEntry>) {
    let guid = info.desired_lrp_key.as_ref().map(|k| k.process_guid.clone()).unwrap_or_default();
    (guid, routes_of(&info.routes))
}

/// The change an instance event announces (`None`: nothing the table keeps changed).
pub fn change_of(event: pb::instance_event::Event) -> Option<Change> {
    use pb::instance_event::Event;
    let desired = |lrp: Option<pb::DesiredLrp>| {
        lrp.map(|lrp| Change::Desired { routes: routes_of(&lrp.routes), process_guid: lrp.process_guid })
    };
    match event {
        Event::DesiredLrpCreated(e) => desired(e.desired_lrp),
        Event::DesiredLrpChanged(e) => desired(e.after),
        Event::DesiredLrpRemoved(e) => {
            e.desired_lrp.map(|lrp| Change::DesiredRemoved { process_guid: lrp.process_guid })
        }
        Event::ActualLrpInstanceCreated(e) => e.actual_lrp.as_ref().map(|a| Change::Instance(instance_of(a))),
        Event::ActualLrpInstanceChanged(e) => {
            let after = e.after.unwrap_or_default();
            Some(Change::Instance(instance(
                e.actual_lrp_key.as_ref(),
                e.actual_lrp_instance_key.as_ref(),
                after.state,
                after.routable,
                after.actual_lrp_net_info.as_ref(),
            )))
        }
        Event::ActualLrpInstanceRemoved(e) => e.actual_lrp.as_ref().map(|a| {
            let i = instance_of(a);
            Change::InstanceRemoved { process_guid: i.process_guid, instance_guid: i.instance_guid }
        }),
        Event::ActualLrpCrashed(e) => Some(Change::InstanceRemoved {
            process_guid: e.actual_lrp_key.map(|k| k.process_guid).unwrap_or_default(),
            instance_guid: e.actual_lrp_instance_key.map(|k| k.instance_guid).unwrap_or_default(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(doc: &str) -> HashMap<String, Vec<u8>> {
        HashMap::from([(ROUTER_KEY.to_owned(), doc.as_bytes().to_vec())])
    }

    #[test]
    fn the_cf_router_document_gives_every_hostname_with_its_port() {
        let parsed = routes_of(&routes(r#"[{"hostnames":["Web.example.com","www"],"port":8080},{"port":9}]"#));
        assert_eq!(
            parsed,
            vec![
                RouteEntry { hostname: "web.example.com".into(), port: 8080 },
                RouteEntry { hostname: "www".into(), port: 8080 },
            ]
        );
        for bad in ["not json", "{}", r#"[{"hostnames":["x"],"port":0}]"#, r#"[{"hostnames":"x","port":1}]"#, "[1]"] {
            assert!(routes_of(&routes(bad)).is_empty(), "{bad}");
        }
        assert!(routes_of(&HashMap::new()).is_empty());
    }

    #[test]
    fn a_changed_event_gives_the_instance_after_the_change() {
        let event = pb::instance_event::Event::ActualLrpInstanceChanged(pb::ActualLrpInstanceChangedEvent {
            actual_lrp_key: Some(pb::ActualLrpKey { process_guid: "web".into(), index: 2, domain: "d".into() }),
            actual_lrp_instance_key: Some(pb::ActualLrpInstanceKey {
                instance_guid: "i-1".into(),
                cell_id: "cell-0".into(),
            }),
            after: Some(pb::ActualLrpInfo {
                state: pb::ActualLrpState::Running as i32,
                routable: Some(false),
                actual_lrp_net_info: Some(pb::ActualLrpNetInfo {
                    address: "127.0.0.1".into(),
                    ports: vec![pb::PortMapping { container_port: 8080, host_port: 61001, ..Default::default() }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let Some(Change::Instance(i)) = change_of(event) else { panic!("an instance change") };
        assert_eq!((i.process_guid.as_str(), i.instance_guid.as_str(), i.index), ("web", "i-1", 2));
        assert!(i.running && !i.routable);
        assert_eq!(i.ports, vec![(8080, 61001)]);
        assert_eq!(i.host, "127.0.0.1");
    }
}
