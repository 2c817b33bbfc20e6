//! The `diego.locket.v1.Locket` service: locks and presences on the shared database, served by
//! every BBS, leader or standby. Expiry is judged in database time.

use std::time::Duration;

use db::Store;
use db::sql::leases::{Lease, LeaseType};
use proto::error::ErrorCode;
use proto::pb::locket::v1 as api;
use proto::pb::locket::v1::locket_server::Locket;
use tonic::{Request, Response, Status};

/// The `Locket` service.
pub struct LocketService {
    store: Store,
}

impl LocketService {
    /// A service over `store` (unfenced: leases are the fence).
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn lease_type(code: i32) -> Result<LeaseType, Status> {
    match api::TypeCode::try_from(code) {
        Ok(api::TypeCode::Lock) => Ok(LeaseType::Lock),
        Ok(api::TypeCode::Presence) => Ok(LeaseType::Presence),
        _ => Err(ErrorCode::InvalidRequest.to_status("invalid request: resource.type_code must be LOCK or PRESENCE")),
    }
}

fn to_resource(lease: Lease) -> api::Resource {
    api::Resource {
        key: lease.key,
        owner: lease.owner,
        value: lease.value,
        type_code: match lease.lease_type {
            LeaseType::Lock => api::TypeCode::Lock,
            LeaseType::Presence => api::TypeCode::Presence,
        } as i32,
    }
}

fn status(err: db::Error) -> Status {
    err.code().to_status(err.to_string())
}

fn required_resource(resource: Option<api::Resource>) -> Result<api::Resource, Status> {
    let resource =
        resource.ok_or_else(|| ErrorCode::InvalidRequest.to_status("invalid request: resource is required"))?;
    if resource.key.is_empty() || resource.key.len() > 255 {
        return Err(ErrorCode::InvalidRequest.to_status("invalid request: resource.key must be 1 to 255 bytes"));
    }
    if resource.owner.is_empty() || resource.owner.len() > 255 {
        return Err(ErrorCode::InvalidRequest.to_status("invalid request: resource.owner must be 1 to 255 bytes"));
    }
    Ok(resource)
}

#[tonic::async_trait]
impl Locket for LocketService {
    async fn lock(&self, request: Request<api::LockRequest>) -> Result<Response<api::LockResponse>, Status> {
        let request = request.into_inner();
        let resource = required_resource(request.resource)?;
        let ttl = u64::try_from(request.ttl_in_seconds)
            .ok()
            .filter(|ttl| (1..=86_400).contains(ttl))
            .ok_or_else(|| ErrorCode::InvalidRequest.to_status("invalid request: ttl_in_seconds must be 1 to 86400"))?;
        let lease_type = lease_type(resource.type_code)?;
        let lease = self
            .store
            .acquire_lease(&resource.key, &resource.owner, &resource.value, lease_type, Duration::from_secs(ttl))
            .await
            .map_err(status)?;
        Ok(Response::new(api::LockResponse { term: lease.term }))
    }

    async fn release(&self, request: Request<api::ReleaseRequest>) -> Result<Response<api::ReleaseResponse>, Status> {
        let resource = required_resource(request.into_inner().resource)?;
        self.store.release_lease(&resource.key, &resource.owner).await.map_err(status)?;
        Ok(Response::new(api::ReleaseResponse {}))
    }

    async fn fetch(&self, request: Request<api::FetchRequest>) -> Result<Response<api::FetchResponse>, Status> {
        let key = request.into_inner().key;
        if key.is_empty() {
            return Err(ErrorCode::InvalidRequest.to_status("invalid request: key must not be empty"));
        }
        let lease = self.store.fetch_lease(&key).await.map_err(status)?;
        Ok(Response::new(api::FetchResponse { resource: Some(to_resource(lease)) }))
    }

    async fn fetch_all(
        &self,
        request: Request<api::FetchAllRequest>,
    ) -> Result<Response<api::FetchAllResponse>, Status> {
        let lease_type = lease_type(request.into_inner().type_code)?;
        let leases = self.store.fetch_leases(lease_type).await.map_err(status)?;
        Ok(Response::new(api::FetchAllResponse { resources: leases.into_iter().map(to_resource).collect() }))
    }
}
