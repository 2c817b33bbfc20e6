//! The soak's operator client: `diego://operator/soak` to both BBSs. A call goes to the first
//! BBS (following a standby's redirect to the leader, `svc::bbs_client`), and to the second when
//! the first does not answer; churn calls have their latency recorded in the current window.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_client::LocketClient;
use proto::pb::models::v1 as pb;
use svc::bbs_client::{BbsChannels, CallError};
use svc::connect::ChannelOptions;
use svc::tls::Security;
use tokio::time::Instant;
use tonic::transport::Channel;

/// `api.call(name, record, ...)` of one `BbsClient` method with `request` (cloned per attempt).
macro_rules! bbs_call {
    ($api:expr, $name:literal, $record:expr, $method:ident, $request:expr) => {{
        let request = $request;
        $api.call($name, $record, move |mut c| {
            let r = request.clone();
            async move { c.$method(r).await }
        })
        .await
    }};
}
pub(crate) use bbs_call;

/// Page size of the listings.
const PAGE: u32 = 5_000;

/// The gRPC code of a failed call (`Unavailable` when no channel could be made).
pub fn code(e: &CallError) -> tonic::Code {
    match e {
        CallError::Status { status, .. } => status.code(),
        CallError::Connect(_) => tonic::Code::Unavailable,
    }
}

/// The operator's client to the two BBSs.
pub struct Api {
    bbs: Vec<BbsChannels>,
    locket: Vec<svc::connect::Connector>,
    addresses: Vec<String>,
    latency: Mutex<Histogram<u64>>,
}

impl Api {
    /// Channels to `addresses` as the operator of `security`, each call bounded by `timeout`.
    pub fn new(addresses: &[String], security: Security, timeout: Duration) -> anyhow::Result<Api> {
        let options = ChannelOptions::new(timeout, security).expect(svc::identity::Role::Bbs);
        let bbs = addresses
            .iter()
            .map(|a| BbsChannels::with_options(a.clone(), options.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let locket = addresses.iter().map(|_| svc::connect::Connector::with_options(options.clone())).collect();
        let latency = Histogram::new_with_bounds(1, 600_000_000, 3)?;
        Ok(Api { bbs, locket, addresses: addresses.to_vec(), latency: Mutex::new(latency) })
    }

    /// Runs `f` on the first BBS, then on the next ones while a BBS does not answer; records
    /// the latency of a successful call when `record`.
    pub async fn call<T, F, Fut>(&self, name: &'static str, record: bool, f: F) -> Result<T, CallError>
    where
        F: Fn(BbsClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let mut last = None;
        for bbs in &self.bbs {
            match bbs.call(name, |channel| f(BbsClient::new(channel))).await {
                Ok(v) => {
                    if record {
                        let us = started.elapsed().as_micros().clamp(1, 600_000_000) as u64;
                        let _ = self.latency.lock().unwrap_or_else(|p| p.into_inner()).record(us);
                    }
                    return Ok(v);
                }
                Err(e) if code(&e) == tonic::Code::Unavailable || code(&e) == tonic::Code::DeadlineExceeded => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| CallError::Status {
            address: String::new(),
            status: tonic::Status::unavailable("no BBS configured"),
        }))
    }

    /// The churn latency histogram since the last take (microseconds), and a fresh one.
    pub fn take_latency(&self) -> Histogram<u64> {
        let mut current = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = Histogram::new_from(&*current);
        std::mem::replace(&mut *current, fresh)
    }

    /// Every desired LRP of `domain`.
    pub async fn desired(&self, domain: &str) -> Result<Vec<pb::DesiredLrp>, CallError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let request = api::DesiredLrPsRequest {
                domain: domain.into(),
                page_size: PAGE,
                page_token: token.clone(),
                ..Default::default()
            };
            let page = bbs_call!(self, "DesiredLRPs", false, desired_lr_ps, request.clone())?;
            out.extend(page.desired_lrps);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// Every actual LRP of `domain`.
    pub async fn actual(&self, domain: &str) -> Result<Vec<pb::ActualLrp>, CallError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let request = api::ActualLrPsRequest {
                domain: domain.into(),
                page_size: PAGE,
                page_token: token.clone(),
                ..Default::default()
            };
            let page = bbs_call!(self, "ActualLRPs", false, actual_lr_ps, request.clone())?;
            out.extend(page.actual_lrps);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// Every task of `domain`.
    pub async fn tasks(&self, domain: &str) -> Result<Vec<pb::Task>, CallError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let request = api::TasksRequest {
                domain: domain.into(),
                page_size: PAGE,
                page_token: token.clone(),
                ..Default::default()
            };
            let page = bbs_call!(self, "Tasks", false, tasks, request.clone())?;
            out.extend(page.tasks);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// The address the `bbs` lease names (the leader's), as any BBS's Locket says.
    pub async fn leader(&self) -> Option<String> {
        for (connector, address) in self.locket.iter().zip(&self.addresses) {
            let Ok(channel) = connector.channel(address) else { continue };
            let request = locket::FetchRequest { key: "bbs".into() };
            if let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(2), LocketClient::new(channel).fetch(request)).await
                && let Some(resource) = r.into_inner().resource
                && !resource.value.is_empty()
            {
                return Some(resource.value);
            }
        }
        None
    }

    /// Whether the leader takes a write now (`UpsertDomain` of `domain`).
    pub async fn writable(&self, domain: &str) -> bool {
        let request = api::UpsertDomainRequest { domain: domain.into(), ttl: 0 };
        bbs_call!(self, "UpsertDomain", false, upsert_domain, request.clone()).is_ok()
    }
}
