//! Generated prost messages and tonic services. Module paths mirror the protobuf packages
//! (`diego.bbs.v1` is `pb::bbs::v1`), so the generated cross-package references resolve.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `diego.models.v1`: messages shared by every service.
pub mod models {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("diego.models.v1");
    }
}

/// `diego.bbs.v1`: the `Bbs` service.
pub mod bbs {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("diego.bbs.v1");
    }
}

/// `diego.locket.v1`: the `Locket` service.
pub mod locket {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("diego.locket.v1");
    }
}

/// `diego.auctioneer.v1`: the `Auctioneer` service.
pub mod auctioneer {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("diego.auctioneer.v1");
    }
}

/// `diego.rep.v1`: the `Rep` service.
pub mod rep {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("diego.rep.v1");
    }
}

/// serde for the `diego.models.v1` messages in their proto JSON shape (the `serde` feature).
#[cfg(feature = "serde")]
pub mod json;

/// The encoded `FileDescriptorSet` of every diego package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("diego_descriptor");
