//! The one gRPC server builder: health answers for the whole server, and reflection advertises
//! exactly the services named (plus health and reflection), not the whole descriptor set.

use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn health_and_reflection_of_exactly_the_named_services() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (_health, router) = svc::server::grpc_server(&["diego.rep.v1.Rep"], svc::server::DEFAULT_MAX_REQUEST_BYTES);
    let server = tokio::spawn(svc::server::serve(router, listener, &svc::tls::Security::Plaintext, shutdown.clone()));
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}")).unwrap().connect_lazy();

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("health answers");
    assert_eq!(health.into_inner().status, ServingStatus::Serving as i32);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().and_then(|r| r.message_response)
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["diego.rep.v1.Rep", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]);

    shutdown.cancel();
    server.await.unwrap().expect("the server stops cleanly");
}
