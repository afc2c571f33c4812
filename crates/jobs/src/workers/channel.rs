//! gRPC channels to workers, one per endpoint and serving thread, and the health probe.

use rampart_balance::{checks::Probe, endpoint::Endpoint};
use rampart_proto::v1::worker_client::WorkerClient;
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint as ChannelSettings};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// The service name workers register their health under.
const WORKER_SERVICE: &str = "rampart.v1.Worker";

thread_local! {
    /// This thread's channels, by endpoint id.
    static CHANNELS: std::cell::RefCell<Vec<(u64, Channel)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How the gateway speaks to a pool's workers.
#[derive(Debug, Clone)]
pub struct Link {
    /// The largest gRPC message sent or read (see [`rampart_proto::limits`]).
    pub message_limit: usize,
    /// TLS with the gateway's client certificate, when workers ask for it (`[worker_tls]`).
    pub tls: Option<ClientTlsConfig>,
}

/// A channel to `endpoint` of the calling thread's own, connected lazily: a channel's connection
/// is driven by the runtime that opened it, so sharing one across serving threads would wake
/// another thread for every call.
fn channel(endpoint: &Endpoint, tls: Option<&ClientTlsConfig>) -> Result<Channel, tonic::transport::Error> {
    CHANNELS.with_borrow_mut(|channels| {
        if let Some((_, channel)) = channels.iter().find(|(id, _)| *id == endpoint.id()) {
            return Ok(channel.clone());
        }
        let settings = match tls {
            // Endpoints are written (and discovered) as http://; over TLS the same address is https.
            Some(tls) => {
                let url = endpoint.url();
                let secure = format!("https://{}", url.strip_prefix("http://").unwrap_or(url));
                ChannelSettings::from_shared(secure)?.tls_config(tls.clone())?
            }
            None => ChannelSettings::from_shared(endpoint.url().to_owned())?,
        };
        let channel = settings
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

/// A `rampart.v1.Worker` client for `endpoint` over `link`.
pub(crate) fn worker_client(
    endpoint: &Endpoint,
    link: &Link,
) -> Result<WorkerClient<Channel>, tonic::transport::Error> {
    Ok(WorkerClient::new(channel(endpoint, link.tls.as_ref())?)
        .max_encoding_message_size(link.message_limit)
        .max_decoding_message_size(link.message_limit))
}

/// Asks a worker's `grpc.health.v1` service whether `rampart.v1.Worker` is serving.
#[derive(Debug, Clone, Default)]
pub struct WorkerProbe {
    tls: Option<ClientTlsConfig>,
}

impl WorkerProbe {
    /// A probe speaking to workers as `link` says.
    pub fn new(link: &Link) -> Self {
        Self { tls: link.tls.clone() }
    }
}

impl Probe for WorkerProbe {
    async fn probe(&self, endpoint: &Endpoint) -> Result<(), String> {
        let channel = channel(endpoint, self.tls.as_ref()).map_err(|error| error.to_string())?;
        let mut client = HealthClient::new(channel);
        let request = HealthCheckRequest { service: WORKER_SERVICE.to_owned() };
        match client.check(request).await {
            Ok(response) if response.get_ref().status() == ServingStatus::Serving => Ok(()),
            Ok(response) => Err(format!("reports {:?}", response.get_ref().status())),
            Err(status) => Err(status.message().to_owned()),
        }
    }
}
