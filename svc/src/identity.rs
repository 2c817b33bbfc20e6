//! Who is calling: the identity a certificate names, as a URI SAN `diego://<role>[/<name>]`.
//!
//! | role | URI | who |
//! |---|---|---|
//! | [`Role::Bbs`] | `diego://bbs` or `diego://bbs/<name>` | a BBS instance |
//! | [`Role::Auctioneer`] | `diego://auctioneer` or `diego://auctioneer/<name>` | an auctioneer |
//! | [`Role::Cell`] | `diego://cell/<cell-id>` | the rep of one cell |
//! | [`Role::Operator`] | `diego://operator/<name>` | a person or tool that submits work |
//! | [`Role::Reader`] | `diego://reader/<name>` | a read-only operator |
//!
//! A cell and the two operator roles must carry a name: the cell's name is the cell id it may act
//! for, and an operator's name is what logs and refusals show. Names are 1 to 128 characters of
//! `[A-Za-z0-9._-]`, the alphabet of cell ids.
//!
//! Clients check the other direction with [`Expected`]: a server's certificate names an identity
//! too, and a client accepts only the role (or the exact cell) it meant to call.

use std::fmt;

/// The scheme of an identity URI.
pub const SCHEME: &str = "diego://";

/// Longest identity name.
pub const MAX_NAME_LEN: usize = 128;

/// What an identity may do is decided by its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A BBS instance.
    Bbs,
    /// An auctioneer.
    Auctioneer,
    /// The rep of the cell the identity names.
    Cell,
    /// An operator: desires, updates, removes, reads and subscribes.
    Operator,
    /// A read-only operator: reads and subscribes.
    Reader,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 5] = [Role::Bbs, Role::Auctioneer, Role::Cell, Role::Operator, Role::Reader];

    /// The role's word in an identity URI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bbs => "bbs",
            Role::Auctioneer => "auctioneer",
            Role::Cell => "cell",
            Role::Operator => "operator",
            Role::Reader => "reader",
        }
    }

    /// Whether an identity of this role must carry a name.
    pub fn needs_name(self) -> bool {
        matches!(self, Role::Cell | Role::Operator | Role::Reader)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| IdentityError::UnknownRole(s.to_owned()))
    }
}

/// A caller's identity: a role and, for cells and operators, a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    role: Role,
    name: String,
}

/// Why a string is not an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a `diego://` URI.
    #[error("not a diego identity (expected diego://<role>[/<name>]): {0:?}")]
    NotDiego(String),
    /// The role is not one of ours.
    #[error("unknown role {0:?} (expected one of bbs, auctioneer, cell, operator, reader)")]
    UnknownRole(String),
    /// A cell or operator without a name.
    #[error("a {0} identity needs a name: diego://{0}/<name>")]
    MissingName(Role),
    /// The name is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid identity name {0:?}: 1 to 128 characters of A-Z a-z 0-9 . _ -")]
    BadName(String),
}

impl Identity {
    /// The identity of `role` named `name` (`""` for an unnamed BBS or auctioneer).
    pub fn new(role: Role, name: impl Into<String>) -> Result<Self, IdentityError> {
        let name = name.into();
        if name.is_empty() {
            if role.needs_name() {
                return Err(IdentityError::MissingName(role));
            }
        } else if name.len() > MAX_NAME_LEN
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(IdentityError::BadName(name));
        }
        Ok(Self { role, name })
    }

    /// Parses `diego://<role>[/<name>]`.
    pub fn parse_uri(uri: &str) -> Result<Self, IdentityError> {
        let rest = uri.strip_prefix(SCHEME).ok_or_else(|| IdentityError::NotDiego(uri.to_owned()))?;
        let (role, name) = rest.split_once('/').unwrap_or((rest, ""));
        Identity::new(role.parse()?, name)
    }

    /// The identity as a URI SAN.
    pub fn to_uri(&self) -> String {
        self.to_string()
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The name (`""` for an unnamed BBS or auctioneer).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cell id this identity acts for, if it is a cell.
    pub fn cell_id(&self) -> Option<&str> {
        (self.role == Role::Cell).then_some(self.name.as_str())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "{SCHEME}{}", self.role)
        } else {
            write!(f, "{SCHEME}{}/{}", self.role, self.name)
        }
    }
}

/// Whom a client accepts as the server of a mutual TLS channel, by the identity its certificate
/// names: the CA and the dialed host are checked by the handshake, this checks the role, so a
/// cell's certificate cannot pass for the BBS (see [`crate::connect::ChannelOptions`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expected {
    /// A server of one of these roles.
    Roles(Vec<Role>),
    /// Exactly this identity (the rep of one cell: `diego://cell/<cell-id>`).
    Identity(Identity),
}

impl Expected {
    /// A server of `role`.
    pub fn role(role: Role) -> Self {
        Expected::Roles(vec![role])
    }

    /// Whether a server naming `identity` is the one expected.
    pub fn admits(&self, identity: &Identity) -> bool {
        match self {
            Expected::Roles(roles) => roles.contains(&identity.role()),
            Expected::Identity(expected) => expected == identity,
        }
    }
}

/// "a bbs", "a bbs or an auctioneer", "diego://cell/cell-1".
impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Identity(identity) => identity.fmt(f),
            Expected::Roles(roles) if roles.is_empty() => f.write_str("no server at all"),
            Expected::Roles(roles) => {
                for (i, role) in roles.iter().enumerate() {
                    let article = if role.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
                    let separator = if i == 0 { "" } else { " or " };
                    write!(f, "{separator}{article} {role}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a server knows of the peer of a request, put into every request's extensions by the
/// server builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// The peer presented a certificate from the cluster CA naming this identity.
    Verified(Identity),
    /// The server runs with `--insecure-plaintext`: nobody is authenticated and every call is
    /// allowed.
    Plaintext,
}

impl Peer {
    /// The peer of `request`. The server builder puts one into every request that arrives over
    /// a socket (remote callers cannot set extensions); it is absent only when trusted code
    /// calls a handler in-process (unit tests), which counts as [`Peer::Plaintext`].
    pub fn of<T>(request: &tonic::Request<T>) -> Peer {
        request.extensions().get::<Peer>().cloned().unwrap_or(Peer::Plaintext)
    }

    /// The verified identity, if any.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Peer::Verified(identity) => Some(identity),
            Peer::Plaintext => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Verified(identity) => identity.fmt(f),
            Peer::Plaintext => f.write_str("an unauthenticated plaintext peer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for uri in [
            "diego://bbs",
            "diego://bbs/bbs-0",
            "diego://auctioneer",
            "diego://cell/cell-1",
            "diego://operator/alice",
            "diego://reader/bob.b_1",
        ] {
            let identity = Identity::parse_uri(uri).unwrap();
            assert_eq!(identity.to_uri(), uri);
        }
        let cell = Identity::parse_uri("diego://cell/cell-1").unwrap();
        assert_eq!((cell.role(), cell.name(), cell.cell_id()), (Role::Cell, "cell-1", Some("cell-1")));
        assert_eq!(Identity::parse_uri("diego://operator/alice").unwrap().cell_id(), None);
    }

    #[test]
    fn bad_uris_say_why() {
        let cases = [
            ("https://bbs", IdentityError::NotDiego("https://bbs".into())),
            ("diego://root/x", IdentityError::UnknownRole("root".into())),
            ("diego://cell", IdentityError::MissingName(Role::Cell)),
            ("diego://cell/", IdentityError::MissingName(Role::Cell)),
            ("diego://operator", IdentityError::MissingName(Role::Operator)),
            ("diego://reader", IdentityError::MissingName(Role::Reader)),
            ("diego://cell/a/b", IdentityError::BadName("a/b".into())),
            ("diego://cell/a b", IdentityError::BadName("a b".into())),
        ];
        for (uri, want) in cases {
            assert_eq!(Identity::parse_uri(uri), Err(want), "{uri}");
        }
        assert!(matches!(Identity::new(Role::Cell, "x".repeat(129)), Err(IdentityError::BadName(_))));
        assert!(Identity::new(Role::Cell, "x".repeat(128)).is_ok());
    }

    #[test]
    fn a_server_is_expected_by_role_or_by_identity() {
        let (bbs, named_bbs) =
            (Identity::parse_uri("diego://bbs").unwrap(), Identity::parse_uri("diego://bbs/b0").unwrap());
        let (cell, other_cell) =
            (Identity::parse_uri("diego://cell/cell-1").unwrap(), Identity::parse_uri("diego://cell/cell-2").unwrap());
        let a_bbs = Expected::role(Role::Bbs);
        assert!(a_bbs.admits(&bbs) && a_bbs.admits(&named_bbs));
        assert!(!a_bbs.admits(&cell));
        let exactly = Expected::Identity(cell.clone());
        assert!(exactly.admits(&cell));
        assert!(!exactly.admits(&other_cell));
        let either = Expected::Roles(vec![Role::Bbs, Role::Auctioneer]);
        assert!(either.admits(&bbs) && !either.admits(&cell));
        assert!(!Expected::Roles(Vec::new()).admits(&bbs));

        assert_eq!(a_bbs.to_string(), "a bbs");
        assert_eq!(either.to_string(), "a bbs or an auctioneer");
        assert_eq!(exactly.to_string(), "diego://cell/cell-1");
    }

    #[test]
    fn a_request_without_a_peer_is_plaintext() {
        let mut request = tonic::Request::new(());
        assert_eq!(Peer::of(&request), Peer::Plaintext);
        let cell = Peer::Verified(Identity::parse_uri("diego://cell/c1").unwrap());
        request.extensions_mut().insert(cell.clone());
        assert_eq!(Peer::of(&request), cell);
    }
}
