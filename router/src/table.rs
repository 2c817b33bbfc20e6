//! The route table, pure: what the BBS said about desired routes and running instances, and the
//! routes that follow from it (hostname → the addresses of the ready instances). No IO here: the
//! emitter ([`crate::emitter`]) feeds it [`Change`]s from the event stream and [`Snapshot`]s from
//! the full sync, and publishes [`RouteTable::routes`] to the proxy after each.
//!
//! An instance is routed when it is RUNNING, routable (its readiness checks pass; unset counts as
//! routable) and has a host port for the route's container port. EVACUATING instances are routed
//! (Diego's route emitter keeps them until their replacement runs and they are removed); so are
//! SUSPECT ones, whose cell lost its presence but may still run them: a refused connection is
//! retried on another instance anyway.

use std::collections::{BTreeMap, HashMap};

/// One `cf-router` route of a desired LRP: `hostname` to the container port `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The hostname, lower case, without a trailing dot.
    pub hostname: String,
    /// The container port.
    pub port: u32,
}

/// An actual LRP instance as the router needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    /// The LRP.
    pub process_guid: String,
    /// The instance guid (empty for an UNCLAIMED one, which is never stored).
    pub instance_guid: String,
    /// The index.
    pub index: i32,
    /// RUNNING.
    pub running: bool,
    /// Routable: its readiness checks pass.
    pub routable: bool,
    /// The host address of its cell.
    pub host: String,
    /// Its own address (reached on the container port) when the cell prefers it.
    pub instance_address: Option<String>,
    /// Container port → host port.
    pub ports: Vec<(u32, u32)>,
}

/// One change the event stream announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A desired LRP was created or changed: its routes now.
    Desired {
        /// The LRP.
        process_guid: String,
        /// Its routes.
        routes: Vec<RouteEntry>,
    },
    /// A desired LRP was removed.
    DesiredRemoved {
        /// The LRP.
        process_guid: String,
    },
    /// An instance was created or changed: what it is now (a non-RUNNING one leaves the table).
    Instance(Instance),
    /// An instance was removed or crashed.
    InstanceRemoved {
        /// The LRP.
        process_guid: String,
        /// The instance.
        instance_guid: String,
    },
}

/// Everything at once, from the full sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every desired LRP with its routes (LRPs without routes may be left out).
    pub desired: Vec<(String, Vec<RouteEntry>)>,
    /// Every instance (non-RUNNING ones are ignored).
    pub instances: Vec<Instance>,
}

/// Where a request for a route may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub address: String,
    /// The LRP.
    pub process_guid: String,
    /// The instance index.
    pub index: i32,
    /// The instance guid.
    pub instance_guid: String,
}

/// The routes the proxy serves: hostname → endpoints, in index order. A hostname some desired
/// LRP names is present even with no endpoint (the proxy answers 502 rather than 404).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    hosts: BTreeMap<String, Vec<Endpoint>>,
}

impl Routes {
    /// The endpoints of `hostname` (already normalised), or `None` when no LRP routes it.
    pub fn get(&self, hostname: &str) -> Option<&[Endpoint]> {
        self.hosts.get(hostname).map(Vec::as_slice)
    }

    /// Every hostname with its endpoints.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Endpoint])> {
        self.hosts.iter().map(|(h, e)| (h.as_str(), e.as_slice()))
    }

    /// How many hostnames.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// No hostname at all.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// How many endpoints over every hostname.
    pub fn endpoints(&self) -> usize {
        self.hosts.values().map(Vec::len).sum()
    }
}

/// The table: desired routes by LRP and RUNNING instances by LRP and instance guid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    desired: HashMap<String, Vec<RouteEntry>>,
    instances: HashMap<String, BTreeMap<String, Instance>>,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change; returns whether the routes may have changed.
    pub fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Desired { process_guid, routes } => {
                if routes.is_empty() {
                    return self.desired.remove(&process_guid).is_some();
                }
                self.desired.insert(process_guid, routes.clone()).as_ref() != Some(&routes)
            }
            Change::DesiredRemoved { process_guid } => self.desired.remove(&process_guid).is_some(),
            Change::Instance(instance) if instance.running && !instance.instance_guid.is_empty() => {
                let by_guid = self.instances.entry(instance.process_guid.clone()).or_default();
                by_guid.insert(instance.instance_guid.clone(), instance.clone()).as_ref() != Some(&instance)
            }
            Change::Instance(instance) => self.remove_instance(&instance.process_guid, &instance.instance_guid),
            Change::InstanceRemoved { process_guid, instance_guid } => {
                self.remove_instance(&process_guid, &instance_guid)
            }
        }
    }

    fn remove_instance(&mut self, process_guid: &str, instance_guid: &str) -> bool {
        let Some(by_guid) = self.instances.get_mut(process_guid) else { return false };
        let removed = by_guid.remove(instance_guid).is_some();
        if by_guid.is_empty() {
            self.instances.remove(process_guid);
        }
        removed
    }

    /// Replaces everything with `snapshot`; returns whether anything changed.
    pub fn replace(&mut self, snapshot: Snapshot) -> bool {
        let mut next = RouteTable::new();
        for (process_guid, routes) in snapshot.desired {
            next.apply(Change::Desired { process_guid, routes });
        }
        for instance in snapshot.instances {
            next.apply(Change::Instance(instance));
        }
        let changed = next != *self;
        *self = next;
        changed
    }

    /// The routes that follow from the table.
    pub fn routes(&self) -> Routes {
        let mut hosts: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        for (process_guid, entries) in &self.desired {
            for entry in entries {
                let endpoints = hosts.entry(entry.hostname.clone()).or_default();
                let Some(instances) = self.instances.get(process_guid) else { continue };
                for instance in instances.values().filter(|i| i.running && i.routable) {
                    if let Some(address) = address_of(instance, entry.port) {
                        endpoints.push(Endpoint {
                            address,
                            process_guid: process_guid.clone(),
                            index: instance.index,
                            instance_guid: instance.instance_guid.clone(),
                        });
                    }
                }
            }
        }
        for endpoints in hosts.values_mut() {
            endpoints.sort_by(|a, b| (a.index, &a.instance_guid).cmp(&(b.index, &b.instance_guid)));
            endpoints.dedup_by(|a, b| a.address == b.address);
        }
        Routes { hosts }
    }
}

/// The address of `instance`'s container port `port`: its own address when it prefers it, else
/// its host and the mapped host port (none when the port is not mapped).
fn address_of(instance: &Instance, port: u32) -> Option<String> {
    if let Some(address) = instance.instance_address.as_deref().filter(|a| !a.is_empty()) {
        return Some(join(address, port));
    }
    let (_, host_port) = instance.ports.iter().find(|(container, host)| *container == port && *host != 0)?;
    (!instance.host.is_empty()).then(|| join(&instance.host, *host_port))
}

/// `host:port`, with an IPv6 host in brackets.
fn join(host: &str, port: u32) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// A hostname as the table keys it: lower case, without a port or a trailing dot.
pub fn normalise_host(host: &str) -> String {
    let host = host.trim();
    let host = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => {
            host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h)
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
