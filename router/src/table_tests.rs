use super::*;

fn route(host: &str, port: u32) -> RouteEntry {
    RouteEntry { hostname: host.into(), port }
}

fn running(guid: &str, index: i32, host_port: u32) -> Instance {
    Instance {
        process_guid: "web".into(),
        instance_guid: guid.into(),
        index,
        running: true,
        routable: true,
        host: "10.0.0.1".into(),
        instance_address: None,
        ports: vec![(8080, host_port)],
    }
}

fn desired(routes: Vec<RouteEntry>) -> Change {
    Change::Desired { process_guid: "web".into(), routes }
}

fn addresses(table: &RouteTable, host: &str) -> Option<Vec<String>> {
    table.routes().get(host).map(|e| e.iter().map(|e| e.address.clone()).collect())
}

#[test]
fn a_route_lists_the_running_routable_instances_in_index_order() {
    let mut table = RouteTable::new();
    assert!(table.apply(desired(vec![route("web.example.com", 8080)])));
    assert!(table.apply(Change::Instance(running("b", 1, 61002))));
    assert!(table.apply(Change::Instance(running("a", 0, 61001))));
    assert_eq!(addresses(&table, "web.example.com"), Some(vec!["10.0.0.1:61001".into(), "10.0.0.1:61002".into()]));
    assert_eq!(addresses(&table, "other.example.com"), None);
    // The same change again changes nothing.
    assert!(!table.apply(Change::Instance(running("a", 0, 61001))));
}

#[test]
fn an_unroutable_or_stopped_instance_leaves_the_route() {
    let mut table = RouteTable::new();
    table.apply(desired(vec![route("web", 8080)]));
    table.apply(Change::Instance(running("a", 0, 61001)));
    table.apply(Change::Instance(running("b", 1, 61002)));
    assert!(table.apply(Change::Instance(Instance { routable: false, ..running("a", 0, 61001) })));
    assert_eq!(addresses(&table, "web"), Some(vec!["10.0.0.1:61002".into()]));
    assert!(table.apply(Change::Instance(Instance { routable: true, ..running("a", 0, 61001) })));
    assert_eq!(addresses(&table, "web").map(|a| a.len()), Some(2));
    // Crashed / claimed again: no longer RUNNING.
    assert!(table.apply(Change::Instance(Instance { running: false, ..running("b", 1, 61002) })));
    assert!(table.apply(Change::InstanceRemoved { process_guid: "web".into(), instance_guid: "a".into() }));
    // The hostname stays with no endpoint: the proxy answers 502, not 404.
    assert_eq!(addresses(&table, "web"), Some(vec![]));
    assert!(!table.apply(Change::InstanceRemoved { process_guid: "web".into(), instance_guid: "a".into() }));
}

#[test]
fn instances_before_their_desired_lrp_are_routed_once_it_arrives_and_removal_drops_the_host() {
    let mut table = RouteTable::new();
    table.apply(Change::Instance(running("a", 0, 61001)));
    assert!(table.routes().is_empty());
    table.apply(desired(vec![route("web", 8080), route("www", 8080), route("admin", 9090)]));
    let routes = table.routes();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes.get("admin").map(<[_]>::len), Some(0), "port 9090 is not mapped");
    assert_eq!(routes.endpoints(), 2);
    assert!(table.apply(Change::DesiredRemoved { process_guid: "web".into() }));
    assert!(table.routes().is_empty());
    // A changed LRP without routes leaves the table too.
    table.apply(desired(vec![route("web", 8080)]));
    assert!(table.apply(desired(vec![])));
    assert!(table.routes().is_empty());
}

#[test]
fn a_snapshot_replaces_everything_and_reports_whether_it_changed() {
    let mut table = RouteTable::new();
    table.apply(desired(vec![route("web", 8080)]));
    table.apply(Change::Instance(running("stale", 0, 61001)));
    let snapshot = Snapshot {
        desired: vec![("web".into(), vec![route("web", 8080)])],
        instances: vec![running("fresh", 0, 61005), Instance { running: false, ..running("claimed", 1, 0) }],
    };
    assert!(table.replace(snapshot.clone()));
    assert_eq!(addresses(&table, "web"), Some(vec!["10.0.0.1:61005".into()]));
    assert!(!table.replace(snapshot));
    assert!(table.replace(Snapshot::default()));
    assert!(table.routes().is_empty());
}

#[test]
fn an_instance_address_is_used_on_the_container_port_when_preferred() {
    let mut table = RouteTable::new();
    table.apply(desired(vec![route("web", 8080)]));
    table.apply(Change::Instance(Instance { instance_address: Some("fd00::5".into()), ..running("a", 0, 61001) }));
    assert_eq!(addresses(&table, "web"), Some(vec!["[fd00::5]:8080".into()]));
}

#[test]
fn hosts_are_normalised() {
    assert_eq!(normalise_host("Web.Example.COM"), "web.example.com");
    assert_eq!(normalise_host("web.example.com:8081"), "web.example.com");
    assert_eq!(normalise_host("web.example.com."), "web.example.com");
    assert_eq!(normalise_host("[::1]:80"), "::1");
    assert_eq!(normalise_host(""), "");
}
