//! `grpc.health.v1.Health`: NOT_SERVING until every load hook ran, SERVING until shutdown
//! starts; proxied services are SERVING while a backend is registered.

use tonic_health::ServingStatus;

use crate::compression::{Compression, compressed};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

pub(crate) struct Health {
    reporter: HealthReporter,
    /// gRPC names of the hosted services (`""`, the whole server, is always reported).
    names: Vec<&'static str>,
}

impl Health {
    /// The reporter and the service that answers health checks from it.
    pub(crate) fn reporter(compression: &Compression) -> (HealthReporter, HealthServer<HealthService>) {
        let reporter = HealthReporter::new();
        let service = compressed(
            HealthServer::new(HealthService::from_health_reporter(reporter.clone())),
            compression,
            HealthServer::accept_compressed,
            HealthServer::send_compressed,
        );
        (reporter, service)
    }

    /// Reports these services, NOT_SERVING for now.
    pub(crate) async fn not_serving(reporter: HealthReporter, names: Vec<&'static str>) -> Self {
        let health = Self { reporter, names };
        health.set_all(ServingStatus::NotServing).await;
        health
    }

    pub(crate) async fn set_all(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in &self.names {
            self.reporter.set_service_status(*name, status).await;
        }
    }
}
