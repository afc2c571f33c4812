//! gRPC channels to workers, one per endpoint and serving thread, and the health probe.

use rampart_balance::{checks::Probe, endpoint::Endpoint};
use rampart_proto::v1::worker_client::WorkerClient;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint as ChannelSettings};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// The service name workers register their health under.
const WORKER_SERVICE: &str = "rampart.v1.Worker";

thread_local! {
    /// This thread's channels, by endpoint id.
    static CHANNELS: std::cell::RefCell<Vec<(u64, Channel)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A channel to `endpoint` of the calling thread's own, connected lazily: a channel's connection
/// is driven by the runtime that opened it, so sharing one across serving threads would wake
/// another thread for every call.
fn channel(endpoint: &Endpoint) -> Result<Channel, tonic::transport::Error> {
    CHANNELS.with_borrow_mut(|channels| {
        if let Some((_, channel)) = channels.iter().find(|(id, _)| *id == endpoint.id()) {
            return Ok(channel.clone());
        }
        let channel = ChannelSettings::from_shared(endpoint.url().to_owned())?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.push((endpoint.id(), channel.clone()));
        Ok(channel)
    })
}

/// A `rampart.v1.Worker` client for `endpoint`, sending and reading messages up to
/// `message_limit` bytes.
pub(crate) fn worker_client(
    endpoint: &Endpoint,
    message_limit: usize,
) -> Result<WorkerClient<Channel>, tonic::transport::Error> {
    Ok(WorkerClient::new(channel(endpoint)?)
        .max_encoding_message_size(message_limit)
        .max_decoding_message_size(message_limit))
}

/// Asks a worker's `grpc.health.v1` service whether `rampart.v1.Worker` is serving.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerProbe;

impl Probe for WorkerProbe {
    async fn probe(&self, endpoint: &Endpoint) -> Result<(), String> {
        let mut client = HealthClient::new(channel(endpoint).map_err(|error| error.to_string())?);
        let request = HealthCheckRequest { service: WORKER_SERVICE.to_owned() };
        match client.check(request).await {
            Ok(response) if response.get_ref().status() == ServingStatus::Serving => Ok(()),
            Ok(response) => Err(format!("reports {:?}", response.get_ref().status())),
            Err(status) => Err(status.message().to_owned()),
        }
    }
}
