use super::*;
use proto::pb::bbs::v1 as bbs_pb;
use tonic::Code;
use tonic::transport::server::TcpIncoming;

fn peer(uri: &str) -> Peer {
    Peer::Verified(Identity::parse_uri(uri).unwrap())
}

#[test]
fn refusals_name_the_identity_the_method_and_who_may() {
    let status = check(&peer("diego://cell/cell-1"), "/diego.bbs.v1.Bbs/DesireLRP").unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "diego://cell/cell-1 may not call /diego.bbs.v1.Bbs/DesireLRP: only operator may");
    let status = check(&peer("diego://reader/bob"), "/diego.bbs.v1.Bbs/RejectTask").unwrap_err();
    assert_eq!(
        status.message(),
        "diego://reader/bob may not call /diego.bbs.v1.Bbs/RejectTask: only auctioneer, cell (only on its own cell's records) may"
    );
    let status = check(&peer("diego://operator/alice"), "/diego.bbs.v1.Bbs/Nope").unwrap_err();
    assert!(status.message().ends_with("no rule allows an unknown method"), "{}", status.message());
    assert_eq!(check(&peer("diego://cell/c1"), "/diego.bbs.v1.Bbs/StartActualLRP").unwrap(), Rule::OwnCell);
    assert_eq!(check(&peer("diego://bbs"), "/diego.locket.v1.Locket/Lock").unwrap(), Rule::OwnLease);
}

#[test]
fn plaintext_allows_everything_and_health_is_open_to_everyone() {
    for method in ["/diego.bbs.v1.Bbs/DesireLRP", "/diego.rep.v1.Rep/Perform", "/x/y", "garbage"] {
        assert_eq!(check(&Peer::Plaintext, method).unwrap(), Rule::Allow);
    }
    for role in Role::ALL {
        for method in ["/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"] {
            assert_eq!(rule(role, method), Rule::Allow, "{role} {method}");
        }
        for method in ["", "/", "Ping", "/diego.bbs.v1.Bbs", "/diego.bbs.v1.Bbs/", "/diego.bbs.v2.Bbs/Ping"] {
            assert_eq!(rule(role, method), Rule::Deny, "{role} {method:?}");
        }
    }
}

#[test]
fn a_cell_acts_only_on_its_own_records() {
    let cell = peer("diego://cell/cell-1");
    assert!(require_own_cell(&cell, "cell-1").is_ok());
    let status = require_own_cell(&cell, "cell-2").unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "diego://cell/cell-1 may not act on cell cell-2's records: a cell acts only on its own cell's records"
    );
    assert!(require_own_cell(&cell, "").unwrap_err().message().contains("records of no cell"));
    for other in [Peer::Plaintext, peer("diego://auctioneer"), peer("diego://operator/alice")] {
        assert!(require_own_cell(&other, "cell-2").is_ok());
    }
}

#[test]
fn leases_are_their_holders_own() {
    use LeaseKind::{Lock, Presence};
    let cases = [
        ("diego://cell/cell-1", "cell-1", Presence, true),
        ("diego://cell/cell-1", "cell-1", Lock, false),
        ("diego://cell/cell-1", "cell-2", Presence, false),
        ("diego://cell/cell-1", "bbs", Lock, false),
        ("diego://cell/bbs", "bbs", Lock, false),
        ("diego://cell/auctioneer", "auctioneer", Lock, false),
        ("diego://bbs", "bbs", Lock, true),
        ("diego://bbs/bbs-0", "bbs", Lock, true),
        ("diego://bbs", "auctioneer", Lock, false),
        ("diego://auctioneer", "auctioneer", Lock, true),
        ("diego://auctioneer", "bbs", Lock, false),
        ("diego://auctioneer", "auctioneer", Presence, false),
        ("diego://operator/alice", "alice", Lock, false),
        ("diego://reader/bob", "bob", Presence, false),
    ];
    for (uri, key, kind, ok) in cases {
        // As its own owner, so only the key and the kind decide.
        let result = require_own_lease(&peer(uri), key, kind, &format!("{uri}#1"));
        assert_eq!(result.is_ok(), ok, "{uri} {key} {kind:?}: {result:?}");
        if let Err(status) = result {
            assert_eq!(status.code(), Code::PermissionDenied);
            assert!(status.message().starts_with(&format!("{uri} may not hold the lease {key:?}")), "{status:?}");
        }
    }
    assert!(require_own_lease(&Peer::Plaintext, "bbs", Lock, "anyone").is_ok());
}

#[test]
fn a_lease_is_held_only_as_its_holders_own_identity() {
    use LeaseKind::{Lock, Presence};
    let cases = [
        // Its own identity, bare or with an instance.
        ("diego://auctioneer/a", "auctioneer", Lock, "diego://auctioneer/a", true),
        ("diego://auctioneer/a", "auctioneer", Lock, "diego://auctioneer/a#6f1c2a34", true),
        ("diego://auctioneer", "auctioneer", Lock, "diego://auctioneer#1", true),
        ("diego://cell/cell-1", "cell-1", Presence, "diego://cell/cell-1#u", true),
        ("diego://bbs/bbs-0", "bbs", Lock, "diego://bbs/bbs-0#u", true),
        // Another identity's owner, of the same role or not.
        ("diego://auctioneer/b", "auctioneer", Lock, "diego://auctioneer/a#6f1c2a34", false),
        ("diego://auctioneer/b", "auctioneer", Lock, "diego://auctioneer/a", false),
        ("diego://auctioneer", "auctioneer", Lock, "diego://auctioneer/a#1", false),
        ("diego://auctioneer/a", "auctioneer", Lock, "diego://auctioneer#1", false),
        ("diego://auctioneer/a", "auctioneer", Lock, "diego://bbs#1", false),
        ("diego://cell/cell-1", "cell-1", Presence, "diego://cell/cell-2#u", false),
        // Prefix tricks: a longer name, a name with the caller's as its prefix, no instance.
        ("diego://auctioneer/a", "auctioneer", Lock, "diego://auctioneer/a-evil", false),
        ("diego://auctioneer/ab", "auctioneer", Lock, "diego://auctioneer/a#x", false),
        ("diego://auctioneer/ab", "auctioneer", Lock, "diego://auctioneer/a#b", false),
        ("diego://auctioneer/a", "auctioneer", Lock, "diego://auctioneer/ab#x", false),
        ("diego://auctioneer/a", "auctioneer", Lock, "diego://auctioneer/a#", false),
        ("diego://cell/cell-1", "cell-1", Presence, "diego://cell/cell-10#u", false),
        // A bare uuid is nobody's identity.
        ("diego://auctioneer/a", "auctioneer", Lock, "6f1c2a34-0e0b-4d8e-9d0f-0123456789ab", false),
    ];
    for (uri, key, kind, owner, ok) in cases {
        let result = require_own_lease(&peer(uri), key, kind, owner);
        assert_eq!(result.is_ok(), ok, "{uri} {key} as {owner:?}: {result:?}");
        if let Err(status) = result {
            assert_eq!(status.code(), Code::PermissionDenied);
            assert_eq!(
                status.message(),
                format!(
                    "{uri} may not hold the lease {key:?} as {owner:?}: a lease's owner is its holder's identity, \
                     {uri} or {uri}#<instance>"
                ),
            );
        }
    }
    for owner in ["diego://auctioneer/a#1", "6f1c2a34-0e0b-4d8e-9d0f-0123456789ab", "x"] {
        assert!(require_own_lease(&Peer::Plaintext, "auctioneer", Lock, owner).is_ok(), "{owner}");
    }
}

/// A server with health only, behind a test layer that sets the peer from the `x-test-peer`
/// header (`plaintext`, an identity URI, or absent: no peer) and the [`AuthzLayer`].
async fn server() -> String {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = incoming.local_addr().unwrap();
    let inject = tonic::service::InterceptorLayer::new(|mut request: tonic::Request<()>| {
        let peer = match request.metadata().get("x-test-peer").and_then(|v| v.to_str().ok()) {
            Some("plaintext") => Some(Peer::Plaintext),
            Some(uri) => Some(Peer::Verified(Identity::parse_uri(uri).unwrap())),
            None => None,
        };
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        Ok(request)
    });
    let (_, health) = tonic_health::server::health_reporter();
    let router = tonic::transport::Server::builder().layer(inject).layer(AuthzLayer).add_service(health);
    tokio::spawn(router.serve_with_incoming(incoming));
    format!("http://{address}")
}

fn with_peer<T>(message: T, peer: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(peer) = peer {
        request.metadata_mut().insert("x-test-peer", peer.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn the_layer_refuses_before_the_service_and_passes_the_rest_on() {
    let address = server().await;
    let channel = tonic::transport::Endpoint::from_shared(address).unwrap().connect().await.unwrap();
    let mut bbs = bbs_pb::bbs_client::BbsClient::new(channel.clone());
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);

    let desire = |peer| with_peer(bbs_pb::DesireLrpRequest::default(), peer);
    // No service behind the layer serves the Bbs: UNIMPLEMENTED means the layer let it through.
    let status = bbs.desire_lrp(desire(Some("diego://cell/cell-1"))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(status.message(), "diego://cell/cell-1 may not call /diego.bbs.v1.Bbs/DesireLRP: only operator may");
    let status = bbs.desire_lrp(desire(Some("diego://reader/bob"))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = bbs.desire_lrp(desire(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().starts_with("no client certificate"), "{status:?}");
    for peer in ["diego://operator/alice", "plaintext"] {
        let status = bbs.desire_lrp(desire(Some(peer))).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{peer}: {status:?}");
    }
    // OwnCell goes on to the handler.
    let start = with_peer(bbs_pb::StartActualLrpRequest::default(), Some("diego://cell/cell-1"));
    assert_eq!(bbs.start_actual_lrp(start).await.unwrap_err().code(), Code::Unimplemented);

    for peer in ["diego://cell/cell-1", "diego://reader/bob", "diego://bbs", "plaintext"] {
        let check = with_peer(tonic_health::pb::HealthCheckRequest::default(), Some(peer));
        health.check(check).await.unwrap_or_else(|e| panic!("{peer}: {e:?}"));
    }
    let check = with_peer(tonic_health::pb::HealthCheckRequest::default(), None);
    assert_eq!(health.check(check).await.unwrap_err().code(), Code::Unauthenticated);
}
