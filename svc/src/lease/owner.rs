//! Who a lease's owner is. Under mutual TLS a lease's owner names its holder's identity: it is
//! `<identity-uri>` or `<identity-uri>#<instance>` (`diego://auctioneer/a#<uuid>`), and the
//! Locket lets a caller lock, renew or release a lease only as an owner of its own identity
//! ([`crate::authz::require_own_lease`]), so no caller can release or renew another's lease by
//! naming its owner. The instance keeps replicas that share one identity distinct, so leader
//! election between them still works; but replicas sharing one identity can act as each other,
//! so each replica should have a certificate of its own name. In `--insecure-plaintext` mode an
//! owner is any string (a process uses a random uuid).

use crate::identity::Identity;
use crate::tls::Security;

/// What separates the identity URI from the instance in an owner.
pub const INSTANCE_SEPARATOR: char = '#';

/// Whether `owner` is one of `identity`'s own lease owners: its URI, or its URI, `#` and a
/// non-empty instance. Identity URIs hold no `#`, so no other identity's owner passes
/// (`diego://auctioneer/a#x` is not `diego://auctioneer/ab`'s, nor `diego://auctioneer/a-x`
/// `diego://auctioneer/a`'s).
pub fn is_own_owner(identity: &Identity, owner: &str) -> bool {
    let uri = identity.to_uri();
    match owner.strip_prefix(uri.as_str()) {
        Some("") => true,
        Some(rest) => rest.strip_prefix(INSTANCE_SEPARATOR).is_some_and(|instance| !instance.is_empty()),
        None => false,
    }
}

/// A new owner for one process of `identity`: `<identity-uri>#<random uuid>`, or, without an
/// identity (plaintext), a random uuid.
pub fn new_owner(identity: Option<&Identity>) -> String {
    let instance = uuid::Uuid::new_v4();
    match identity {
        Some(identity) => format!("{identity}{INSTANCE_SEPARATOR}{instance}"),
        None => instance.to_string(),
    }
}

/// The owner a process holds its leases as, made once at its start: [`new_owner`] of the identity
/// its certificate names under [`Security::Mutual`], a plain uuid under [`Security::Plaintext`].
/// A rotated certificate must keep the identity (the owner does not change).
pub fn owner_for(security: &Security) -> String {
    match security {
        Security::Plaintext => new_owner(None),
        Security::Mutual(tls) => new_owner(Some(&tls.identity())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(uri: &str) -> Identity {
        Identity::parse_uri(uri).unwrap()
    }

    #[test]
    fn an_owner_is_the_identity_or_the_identity_and_an_instance() {
        let cases = [
            ("diego://auctioneer/a", "diego://auctioneer/a", true),
            ("diego://auctioneer/a", "diego://auctioneer/a#1", true),
            ("diego://auctioneer/a", "diego://auctioneer/a#x#y", true),
            ("diego://auctioneer/a", "diego://auctioneer/a#", false),
            ("diego://auctioneer/a", "diego://auctioneer/a-evil", false),
            ("diego://auctioneer/a", "diego://auctioneer/ab#x", false),
            ("diego://auctioneer/a", "diego://auctioneer#x", false),
            ("diego://auctioneer/a", "diego://auctioneer", false),
            ("diego://auctioneer/ab", "diego://auctioneer/a#x", false),
            ("diego://auctioneer/ab", "diego://auctioneer/a#b", false),
            ("diego://auctioneer", "diego://auctioneer#x", true),
            ("diego://auctioneer", "diego://auctioneer/a#x", false),
            ("diego://auctioneer", "diego://auctioneer/", false),
            ("diego://cell/cell-1", "diego://cell/cell-1#u", true),
            ("diego://cell/cell-1", "diego://cell/cell-10#u", false),
            ("diego://bbs", "bbs-0", false),
            ("diego://bbs", "", false),
            ("diego://bbs", "6f1c2a34-0e0b-4d8e-9d0f-0123456789ab", false),
        ];
        for (uri, owner, own) in cases {
            assert_eq!(is_own_owner(&identity(uri), owner), own, "{uri} owning {owner:?}");
        }
    }

    #[test]
    fn a_new_owner_is_its_identitys_own_and_unique() {
        let a = identity("diego://auctioneer/a");
        let (first, second) = (new_owner(Some(&a)), new_owner(Some(&a)));
        assert_ne!(first, second, "two processes of one identity have distinct owners");
        for owner in [&first, &second] {
            assert!(owner.starts_with("diego://auctioneer/a#"), "{owner}");
            assert!(is_own_owner(&a, owner));
            assert!(!is_own_owner(&identity("diego://auctioneer/b"), owner));
        }
        let longest =
            Identity::new(crate::identity::Role::Auctioneer, "x".repeat(crate::identity::MAX_NAME_LEN)).unwrap();
        assert!(new_owner(Some(&longest)).len() <= proto::limits::MAX_ID_BYTES, "the longest identity's owner fits");
        let plain = new_owner(None);
        assert!(uuid::Uuid::parse_str(&plain).is_ok(), "{plain}");
        assert!(uuid::Uuid::parse_str(&owner_for(&Security::Plaintext)).is_ok());
    }
}
