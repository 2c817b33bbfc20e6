//! [`Error`]: why a convergence pass could not run. Failures of single writes or rep calls inside
//! a pass are not errors of the pass: they are logged, counted in the report and retried by the
//! next pass, which is level-triggered.

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store provider returned no store: this BBS does not lead, so it must not converge.
    #[error("not leading: no store to converge with")]
    NotLeading,
    /// A read the pass cannot do without failed, or a write was fenced (this BBS lost its
    /// lease mid-pass; the rest of the pass was abandoned).
    #[error("convergence {step} failed: {source}")]
    Store {
        /// What the pass was doing.
        step: &'static str,
        /// The store error.
        #[source]
        source: db::Error,
    },
}

impl Error {
    /// Whether the store refused to write because this BBS no longer holds its lease.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Store { source: db::Error::Fenced { .. }, .. })
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
