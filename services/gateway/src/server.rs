//! The tonic server: the three public services, `grpc.health.v1.Health` and server reflection
//! (v1 and v1alpha) on one listener.
//!
//! Health reports `SERVING` for "" and each public service while the server runs, and
//! `NOT_SERVING` as soon as shutdown starts, before in-flight calls drain. Reflection describes
//! only public packages: the internal `sspr.internal.*` contracts are not advertised at the edge.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use prost::Message;
use sspr_bus::Bus;
use sspr_proto::admin::v1::admin_server::AdminServer;
use sspr_proto::registration::v1::registration_server::RegistrationServer;
use sspr_proto::reset::v1::password_reset_server::PasswordResetServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::Config;
use crate::api::Edge;
use crate::api::admin::AdminApi;
use crate::api::registration::RegistrationApi;
use crate::api::reset::ResetApi;

/// Largest request body accepted. Every legitimate request is far smaller (the largest field is
/// a 1 KiB password, or a list of group ids for an admin).
const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Upper bound of one call; internal requests time out well before this.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Names of the public services, as health and reflection know them.
const PUBLIC_SERVICES: [&str; 3] = [
    <PasswordResetServer<ResetApi> as NamedService>::NAME,
    <RegistrationServer<RegistrationApi> as NamedService>::NAME,
    <AdminServer<AdminApi> as NamedService>::NAME,
];

pub(crate) async fn bind(
    bus: Bus,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>>)> {
    let listener = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_addr))?;
    let local = listener
        .local_addr()
        .context("reading the gRPC listener's address")?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    for name in PUBLIC_SERVICES {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }

    let descriptors = public_descriptors()?;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(descriptors.clone())
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service (v1)")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(descriptors)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service (v1alpha)")?;

    let mut edge = Edge::new(bus, config.trusted_proxy_hops);
    if let Some(challenge) = config.challenge.clone() {
        edge = edge.with_challenge(
            crate::challenge::ChallengeVerifier::new(challenge)
                .context("building the challenge verifier's HTTP client")?,
        );
    }
    let mut server = Server::builder();
    if let Some(tls) = &config.tls {
        server = server
            .tls_config(tls.server_config()?)
            .context("SSPR_GRPC_TLS_CERT/SSPR_GRPC_TLS_KEY: not a usable certificate and key")?;
    }
    let router = server
        .timeout(CALL_TIMEOUT)
        // Outermost, so it measures what the client gets, refusals and size limits included.
        .layer(crate::grpc_metrics::GrpcMetricsLayer)
        .layer(tower::util::MapResponseLayer::new(
            crate::oversized::map_response,
        ))
        .layer(crate::shed::ShedLayer::new(config.max_in_flight))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            PasswordResetServer::new(ResetApi::new(edge.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            RegistrationServer::new(RegistrationApi::new(edge.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AdminServer::new(AdminApi::new(edge, config.admin_tokens))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );

    let stopping = async move {
        shutdown.cancelled().await;
        tracing::info!("gRPC API stopping: health is NOT_SERVING, draining calls");
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in PUBLIC_SERVICES {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    };
    let serve = async move {
        router
            .serve_with_incoming_shutdown(incoming, stopping)
            .await
            .context("the gRPC server failed")
    };
    Ok((local, serve))
}

/// The sspr descriptor set without the internal packages.
fn public_descriptors() -> anyhow::Result<prost_types::FileDescriptorSet> {
    let mut set = prost_types::FileDescriptorSet::decode(sspr_proto::FILE_DESCRIPTOR_SET)
        .context("decoding the sspr descriptor set")?;
    set.file
        .retain(|f| !f.package().starts_with("sspr.internal."));
    Ok(set)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reflection_describes_public_packages_only() {
        let set = public_descriptors().unwrap();
        let packages: Vec<&str> = set.file.iter().map(|f| f.package()).collect();
        assert!(packages.contains(&"sspr.reset.v1"));
        assert!(packages.contains(&"sspr.registration.v1"));
        assert!(packages.contains(&"sspr.admin.v1"));
        assert!(packages.contains(&"sspr.common.v1"));
        assert!(!packages.iter().any(|p| p.starts_with("sspr.internal.")));
    }

    #[test]
    fn public_service_names() {
        assert_eq!(
            PUBLIC_SERVICES,
            [
                "sspr.reset.v1.PasswordReset",
                "sspr.registration.v1.Registration",
                "sspr.admin.v1.Admin"
            ]
        );
    }
}
