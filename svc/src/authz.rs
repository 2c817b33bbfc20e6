//! Authorization: what each [`Role`] may call, in one pure function ([`rule`]), enforced for
//! every request by [`AuthzLayer`] and, for the records a cell may touch, by the handlers
//! ([`require_own_cell`], [`require_own_lease`]).
//!
//! `A` allow, `C` only on the caller's own cell's records (the handler checks the record), `L`
//! only the caller's own Locket lease, as its own identity (the handler checks the key and the
//! owner), `-` refused with PERMISSION_DENIED. A peer without a verified identity is
//! UNAUTHENTICATED; in `--insecure-plaintext` mode ([`Peer::Plaintext`]) everything is allowed.
//!
//! | method | bbs | auctioneer | cell | operator | reader |
//! |---|---|---|---|---|---|
//! | `Bbs/Ping` | A | A | A | A | A |
//! | `Bbs/Domains` | - | - | - | A | A |
//! | `Bbs/UpsertDomain` | - | - | - | A | - |
//! | `Bbs/Cells` | - | A | - | A | A |
//! | `Bbs/ActualLRPs`, `StreamActualLRPs` | - | - | C | A | A |
//! | `Bbs/ClaimActualLRP` | - | - | C | - | - |
//! | `Bbs/StartActualLRP`, `StartActualLRPs` | - | - | C | - | - |
//! | `Bbs/CrashActualLRP` | - | - | C | - | - |
//! | `Bbs/FailActualLRP` | - | A | - | - | - |
//! | `Bbs/RemoveActualLRP` | - | - | C | - | - |
//! | `Bbs/RetireActualLRP` | - | - | - | A | - |
//! | `Bbs/Evacuate{Claimed,Running,Stopped,Crashed}ActualLRP` | - | - | C | - | - |
//! | `Bbs/RemoveEvacuatingActualLRP` | - | - | C | - | - |
//! | `Bbs/DesiredLRPs`, `DesiredLRPSchedulingInfos`, `StreamDesiredLRPSchedulingInfos`, `DesiredLRPRoutingInfos` | - | - | - | A | A |
//! | `Bbs/DesiredLRPSchedulingInfoByProcessGuid` | - | - | - | A | A |
//! | `Bbs/DesiredLRPByProcessGuid` | - | - | A | A | A |
//! | `Bbs/DesireLRP`, `DesireLRPs`, `UpdateDesiredLRP`, `RemoveDesiredLRP` | - | - | - | A | - |
//! | `Bbs/Tasks` | - | - | C | A | A |
//! | `Bbs/TaskByGuid` | - | - | A | A | A |
//! | `Bbs/DesireTask`, `CancelTask`, `ResolvingTask`, `DeleteTask` | - | - | - | A | - |
//! | `Bbs/StartTask`, `CompleteTask` | - | - | C | - | - |
//! | `Bbs/RejectTask` | - | A | C | - | - |
//! | `Bbs/SubscribeToInstanceEvents`, `SubscribeToTaskEvents` | - | - | - | A | A |
//! | `Locket/Lock`, `Locket/Release` | L | L | L | - | - |
//! | `Locket/Fetch`, `Locket/FetchAll` | A | A | A | A | A |
//! | `Auctioneer/RequestLRPAuctions`, `RequestTaskAuctions` | A | - | - | - | - |
//! | `Rep/State` | - | A | - | A | A |
//! | `Rep/Perform` | - | A | - | - | - |
//! | `Rep/StopLRPInstance`, `CancelTask`, `UpdateLRPInstance` | A | - | - | - | - |
//! | `Rep/Evacuate` | - | - | - | A | - |
//! | `Rep/Ping` | A | A | A | A | A |
//! | `Exec/Run` (`diego ssh`) | - | - | - | A | - |
//! | `grpc.health.v1.Health/*`, `grpc.reflection.v1.ServerReflection/*` | A | A | A | A | A |
//! | anything else | - | - | - | - | - |
//!
//! A cell's `C` reads (`ActualLRPs`, `Tasks`) must filter by its own cell id; its `C` writes
//! must name its own cell id (in the instance key, or `cell_id`) or, where the request names
//! none (`RejectTask`), concern a record stored on its cell. Its `L` lease is the PRESENCE keyed
//! by its cell id; the BBS's is the LOCK `bbs` and the auctioneer's the LOCK `auctioneer`.
//!
//! Locket owners are identities: an `L` call (Lock, which also renews, and Release) must name as
//! the lease's owner the caller's own identity URI, or that URI, `#` and an instance
//! (`diego://auctioneer/a#<uuid>`, what [`crate::lease::owner_for`] makes), so no caller can
//! release or renew a lease another identity holds by naming its owner (which Fetch shows).
//! Replicas of one role still share its key: any auctioneer may take the `auctioneer` lock when
//! it is free, and the instance keeps replicas of one identity apart for the election. But
//! replicas that share one identity (all `diego://auctioneer`) can name each other's owners, so
//! replicas should carry certificates of distinct names (`diego://auctioneer/a`, `/b`).

use std::fmt;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::codegen::Service;
use tonic::codegen::http;

use crate::identity::{Identity, Peer, Role};

/// What a role may do with one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Allowed.
    Allow,
    /// Allowed only on records of the caller's own cell; the handler checks the record
    /// ([`require_own_cell`]).
    OwnCell,
    /// Allowed only on the caller's own Locket lease; the handler checks the key and the owner
    /// ([`require_own_lease`]).
    OwnLease,
    /// Refused.
    Deny,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Allow => "allowed",
            Rule::OwnCell => "only on its own cell's records",
            Rule::OwnLease => "only its own lease",
            Rule::Deny => "denied",
        })
    }
}

/// The Locket key the BBS leader holds.
pub const BBS_LEASE_KEY: &str = "bbs";
/// The Locket key the active auctioneer holds.
pub const AUCTIONEER_LEASE_KEY: &str = "auctioneer";

const A: Rule = Rule::Allow;
const C: Rule = Rule::OwnCell;
const L: Rule = Rule::OwnLease;
const D: Rule = Rule::Deny;

/// The rules of `method` (a full gRPC path, `/diego.bbs.v1.Bbs/DesireLRP`) for each role, in the
/// order of [`Role::ALL`]: bbs, auctioneer, cell, operator, reader. `None` for an unknown
/// method.
fn rules(method: &str) -> Option<[Rule; 5]> {
    let (service, name) = method.strip_prefix('/')?.split_once('/')?;
    match service {
        "diego.bbs.v1.Bbs" => bbs_rules(name),
        "diego.locket.v1.Locket" => locket_rules(name),
        "diego.auctioneer.v1.Auctioneer" => auctioneer_rules(name),
        "diego.rep.v1.Rep" => rep_rules(name),
        "diego.rep.v1.Recovery" => recovery_rules(name),
        "diego.rep.v1.Logs" => logs_rules(name),
        "diego.rep.v1.Exec" => exec_rules(name),
        "grpc.health.v1.Health" | "grpc.reflection.v1.ServerReflection" => Some([A, A, A, A, A]),
        _ => None,
    }
}

/// `diego.bbs.v1.Bbs`, as [`rules`].
fn bbs_rules(name: &str) -> Option<[Rule; 5]> {
    Some(match name {
        // bbs, auctioneer, cell, operator, reader
        "Ping" => [A, A, A, A, A],
        "Domains" => [D, D, D, A, A],
        "UpsertDomain" => [D, D, D, A, D],
        "Cells" => [D, A, D, A, A],
        "ActualLRPs" | "StreamActualLRPs" => [D, D, C, A, A],
        "ClaimActualLRP" | "StartActualLRP" | "StartActualLRPs" | "CrashActualLRP" | "RemoveActualLRP" => {
            [D, D, C, D, D]
        }
        "FailActualLRP" => [D, A, D, D, D],
        "RetireActualLRP" => [D, D, D, A, D],
        "EvacuateClaimedActualLRP"
        | "EvacuateRunningActualLRP"
        | "EvacuateStoppedActualLRP"
        | "EvacuateCrashedActualLRP"
        | "RemoveEvacuatingActualLRP" => [D, D, C, D, D],
        "DesiredLRPs"
        | "DesiredLRPSchedulingInfos"
        | "StreamDesiredLRPSchedulingInfos"
        | "DesiredLRPSchedulingInfoByProcessGuid"
        | "DesiredLRPRoutingInfos" => [D, D, D, A, A],
        "DesiredLRPByProcessGuid" => [D, D, A, A, A],
        "DesireLRP" | "DesireLRPs" | "UpdateDesiredLRP" | "RemoveDesiredLRP" => [D, D, D, A, D],
        "Tasks" => [D, D, C, A, A],
        "TaskByGuid" => [D, D, A, A, A],
        "DesireTask" | "CancelTask" | "ResolvingTask" | "DeleteTask" => [D, D, D, A, D],
        "StartTask" | "CompleteTask" => [D, D, C, D, D],
        "RejectTask" => [D, A, C, D, D],
        "SubscribeToInstanceEvents" | "SubscribeToTaskEvents" => [D, D, D, A, A],
        _ => return None,
    })
}

/// `diego.locket.v1.Locket`, as [`rules`].
fn locket_rules(name: &str) -> Option<[Rule; 5]> {
    Some(match name {
        // bbs, auctioneer, cell, operator, reader
        "Lock" | "Release" => [L, L, L, D, D],
        "Fetch" | "FetchAll" => [A, A, A, A, A],
        _ => return None,
    })
}

/// `diego.auctioneer.v1.Auctioneer`, as [`rules`].
fn auctioneer_rules(name: &str) -> Option<[Rule; 5]> {
    Some(match name {
        // bbs, auctioneer, cell, operator, reader
        "RequestLRPAuctions" | "RequestTaskAuctions" => [A, D, D, D, D],
        _ => return None,
    })
}

/// `diego.rep.v1.Rep`, as [`rules`].
/// `diego.rep.v1.Recovery` (issue 19), as [`rules`]: the BBS (and an operator) asks a cell
/// what it runs.
fn recovery_rules(name: &str) -> Option<[Rule; 5]> {
    Some(match name {
        // bbs, auctioneer, cell, operator, reader
        "Report" => [A, D, D, A, D],
        _ => return None,
    })
}

/// `diego.rep.v1.Exec` (issue 18, `diego ssh`), as [`rules`]: a shell inside an instance is
/// for operators only.
fn exec_rules(name: &str) -> Option<[Rule; 5]> {
    Some(match name {
        // bbs, auctioneer, cell, operator, reader
        "Run" => [D, D, D, A, D],
        _ => return None,
    })
}

/// `diego.rep.v1.Logs` (issue 18), as [`rules`]: operators and readers read application logs.
fn logs_rules(name: &str) -> Option<[Rule; 5]> {
    Some(match name {
        // bbs, auctioneer, cell, operator, reader
        "Stream" => [D, D, D, A, A],
        _ => return None,
    })
}

fn rep_rules(name: &str) -> Option<[Rule; 5]> {
    Some(match name {
        // bbs, auctioneer, cell, operator, reader
        "State" => [D, A, D, A, A],
        "Perform" => [D, A, D, D, D],
        "StopLRPInstance" | "CancelTask" | "UpdateLRPInstance" => [A, D, D, D, D],
        "Evacuate" => [D, D, D, A, D],
        "Ping" => [A, A, A, A, A],
        _ => return None,
    })
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Bbs => 0,
        Role::Auctioneer => 1,
        Role::Cell => 2,
        Role::Operator => 3,
        Role::Reader => 4,
    }
}

/// The role table: what `role` may do with `method`, a full gRPC path
/// (`/diego.bbs.v1.Bbs/DesireLRP`). Unknown methods are [`Rule::Deny`].
pub fn rule(role: Role, method: &str) -> Rule {
    rules(method).map_or(Rule::Deny, |rules| rules[role_index(role)])
}

/// Whether `peer` may call `method`: the rule that applies (the handler enforces
/// [`Rule::OwnCell`] and [`Rule::OwnLease`]) or PERMISSION_DENIED naming the identity, the method
/// and who may call it. A [`Peer::Plaintext`] peer may call everything.
pub fn check(peer: &Peer, method: &str) -> Result<Rule, Status> {
    let identity = match peer {
        Peer::Plaintext => return Ok(Rule::Allow),
        Peer::Verified(identity) => identity,
    };
    match rule(identity.role(), method) {
        Rule::Deny => {
            metrics::counter!("authz_refusals_total", "role" => identity.role().as_str()).increment(1);
            Err(Status::permission_denied(format!("{identity} may not call {method}: {}", who_may(method))))
        }
        other => Ok(other),
    }
}

/// Who may call `method`, for refusals.
fn who_may(method: &str) -> String {
    let Some(rules) = rules(method) else {
        return "no rule allows an unknown method".into();
    };
    let allowed: Vec<String> = Role::ALL
        .into_iter()
        .zip(rules)
        .filter(|(_, rule)| *rule != Rule::Deny)
        .map(|(role, rule)| match rule {
            Rule::Allow => role.to_string(),
            other => format!("{role} ({other})"),
        })
        .collect();
    format!("only {} may", allowed.join(", "))
}

fn denied(identity: &Identity, what: String) -> Status {
    metrics::counter!("authz_refusals_total", "role" => identity.role().as_str()).increment(1);
    Status::permission_denied(format!("{identity} may not {what}"))
}

/// The [`Rule::OwnCell`] check of a handler: a cell peer may act only on records of its own cell
/// (`cell_id` is the cell the request or the stored record names); any other peer passes (the
/// role table already decided).
pub fn require_own_cell(peer: &Peer, cell_id: &str) -> Result<(), Status> {
    match peer.identity() {
        Some(identity) if identity.role() == Role::Cell && identity.name() != cell_id => {
            let whose =
                if cell_id.is_empty() { "records of no cell".to_owned() } else { format!("cell {cell_id}'s records") };
            Err(denied(identity, format!("act on {whose}: a cell acts only on its own cell's records")))
        }
        _ => Ok(()),
    }
}

/// The kind of a Locket lease, for [`require_own_lease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// A lock (a leader's).
    Lock,
    /// A presence (a cell's).
    Presence,
}

/// The [`Rule::OwnLease`] check of the Locket's Lock and Release of the lease `key` of `kind` as
/// `owner`: a cell may hold only the PRESENCE keyed by its cell id, the BBS only the LOCK
/// [`BBS_LEASE_KEY`] and the auctioneer only the LOCK [`AUCTIONEER_LEASE_KEY`], and each only as
/// its own identity: `owner` must be the caller's identity URI or that URI, `#` and an instance
/// ([`crate::lease::is_own_owner`]). Operators and readers hold no lease; a plaintext peer may
/// hold any, as any owner.
pub fn require_own_lease(peer: &Peer, key: &str, kind: LeaseKind, owner: &str) -> Result<(), Status> {
    let Some(identity) = peer.identity() else { return Ok(()) };
    let own = match identity.role() {
        Role::Cell => Some((identity.name(), LeaseKind::Presence)),
        Role::Bbs => Some((BBS_LEASE_KEY, LeaseKind::Lock)),
        Role::Auctioneer => Some((AUCTIONEER_LEASE_KEY, LeaseKind::Lock)),
        Role::Operator | Role::Reader => None,
    };
    match own {
        Some((own_key, own_kind)) if own_key == key && own_kind == kind => {
            if crate::lease::is_own_owner(identity, owner) {
                Ok(())
            } else {
                Err(denied(
                    identity,
                    format!(
                        "hold the lease {key:?} as {owner:?}: a lease's owner is its holder's identity, \
                         {identity} or {identity}#<instance>"
                    ),
                ))
            }
        }
        Some((own_key, own_kind)) => {
            let kind = if own_kind == LeaseKind::Lock { "LOCK" } else { "PRESENCE" };
            Err(denied(identity, format!("hold the lease {key:?}: its only lease is the {kind} {own_key:?}")))
        }
        None => Err(denied(identity, format!("hold the lease {key:?}: a {} holds no lease", identity.role()))),
    }
}

/// The tower layer that authorizes every request by [`check`]: add it to a
/// `tonic::transport::Server` builder after (inside) whatever puts the [`Peer`] into the request
/// extensions. A request without a [`Peer`] is refused with UNAUTHENTICATED, a refused one with
/// PERMISSION_DENIED, both without calling the service; [`Rule::OwnCell`] and
/// [`Rule::OwnLease`] requests go on to the handler, which checks the record.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthzLayer;

impl<S> tower_layer::Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz { inner }
    }
}

/// The service [`AuthzLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct Authz<S> {
    inner: S,
}

/// The future of [`Authz`]: the inner service's, or a refusal.
pub type AuthzFuture<F, R, E> = futures::future::Either<F, futures::future::Ready<Result<R, E>>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authz<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = AuthzFuture<S::Future, Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let verdict = match request.extensions().get::<Peer>() {
            None => Err(Status::unauthenticated(format!("no client certificate: {} refused", request.uri().path()))),
            Some(peer) => check(peer, request.uri().path()),
        };
        match verdict {
            Ok(_) => futures::future::Either::Left(self.inner.call(request)),
            Err(status) => {
                tracing::info!(method = request.uri().path(), code = ?status.code(), message = status.message(), "request refused");
                futures::future::Either::Right(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests;
