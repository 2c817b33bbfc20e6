//! An in-process BBS served over real gRPC on 127.0.0.1:0, for tests that speak the wire
//! contract: start it over a test database, connect a client, wait for leadership, and stop it
//! asserting it exited cleanly. Also a raw client that sends arbitrary bytes as a request body.

use std::sync::Arc;
use std::time::Duration;

use bbs::config::BbsConfig;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::RecordingAuctioneer;

/// One in-process BBS.
pub struct Server {
    /// `host:port` of its gRPC listener.
    pub address: String,
    /// Records the start requests it sends.
    pub auctioneer: Arc<RecordingAuctioneer>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), bbs::RunError>>,
}

impl Server {
    /// Starts a BBS over `url` with short lease timings; `tweak` adjusts the config.
    pub async fn start(url: &str, tweak: impl FnOnce(&mut BbsConfig)) -> Server {
        Self::start_with(url, tweak, |_| {}).await
    }

    /// [`Server::start`], with `overrides` adjusting the seams (the recording auctioneer is set).
    pub async fn start_with(
        url: &str,
        tweak: impl FnOnce(&mut BbsConfig),
        overrides: impl FnOnce(&mut bbs::Overrides),
    ) -> Server {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = grpc.local_addr().unwrap().to_string();
        let mut config = BbsConfig {
            encryption_keys_file: db::testing::test_key_file(),
            database_url: url.to_owned(),
            lock_ttl: Duration::from_secs(2),
            lock_retry_interval: Duration::from_millis(200),
            tls: svc::config::tls::TlsConfig::insecure_plaintext(),
            ..BbsConfig::default()
        };
        tweak(&mut config);
        let auctioneer = Arc::new(RecordingAuctioneer::default());
        let mut seams = bbs::Overrides { auctioneer: Some(auctioneer.clone()), ..Default::default() };
        overrides(&mut seams);
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(bbs::run(config.validate().unwrap(), bbs::Listeners { grpc, admin }, seams, shutdown.clone()));
        Server { address, auctioneer, shutdown, task }
    }

    /// A connected client (retries until the listener answers).
    pub async fn client(&self) -> BbsClient<Channel> {
        let endpoint = format!("http://{}", self.address);
        for _ in 0..100 {
            if let Ok(client) = BbsClient::connect(endpoint.clone()).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bbs at {} never accepted connections", self.address);
    }

    /// A client once this server leads (it accepts a write).
    pub async fn leader_client(&self) -> BbsClient<Channel> {
        let mut client = self.client().await;
        for _ in 0..200 {
            let upsert = api::UpsertDomainRequest { domain: "probe".into(), ttl: 0 };
            match client.upsert_domain(upsert).await {
                Ok(_) => return client,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("unexpected error while waiting for leadership: {status}"),
            }
        }
        panic!("bbs at {} never became the leader", self.address);
    }

    /// Whether the server is still running (it has not stepped down or crashed).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Waits (up to `limit`) for the server to exit on its own, and returns how it ended.
    pub async fn exited(self, limit: Duration) -> Result<(), bbs::RunError> {
        let result = tokio::time::timeout(limit, self.task).await.expect("bbs did not exit");
        self.shutdown.cancel();
        result.expect("bbs task panicked")
    }

    /// Stops the server and asserts it shut down cleanly within `limit`.
    pub async fn stop_within(self, limit: Duration) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(limit, self.task)
            .await
            .unwrap_or_else(|_| panic!("bbs did not stop within {limit:?}"));
        result.expect("bbs task panicked").expect("bbs run failed");
    }

    /// Stops the server and asserts it shut down cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(15), self.task).await.expect("bbs did not shut down");
        result.expect("bbs task panicked").expect("bbs run failed");
    }
}

/// Sends `body` as the request message of `path` (`/diego.bbs.v1.Bbs/DesireLRP`), bytes as they
/// are, and returns the status (`Ok` when the server answered OK).
pub async fn raw_call(address: &str, path: &'static str, body: Vec<u8>) -> Result<(), tonic::Status> {
    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(tonic::Request::new(body), tonic::codegen::http::uri::PathAndQuery::from_static(path), RawCodec)
        .await
        .map(drop)
}

/// Encodes a request as the bytes given; decodes any response as nothing.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        use prost::bytes::Buf;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
