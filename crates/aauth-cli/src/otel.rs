//! `[otel]`: OpenTelemetry traces, in a build with `--features otel` (decision 0014).
//!
//! The span exported is each request's, the one `aauth_metadata::ops::RequestLogLayer`
//! opens: its role, request id, method and path (never a query, header, token or
//! signature), its log lines as span events, named `METHOD /route` as a server span. It
//! goes over OTLP/HTTP with protobuf to a collector, batched on a thread of its own (every
//! 5 s, 512 at most) and sent with the hyper and rustls client the service already has
//! (the web's roots and `[egress] ca_files` trusted); on shutdown, once the requests in
//! flight are finished, what is left is sent before the process exits.
//!
//! Where to: `otel.endpoint`, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
//! `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended, else
//! `http://localhost:4318/v1/traces`. Traces are exported when `[otel]` is present or
//! either variable is set. `OTEL_EXPORTER_OTLP_HEADERS` adds headers (a collector's API
//! key: never in the configuration file); `OTEL_RESOURCE_ATTRIBUTES` adds attributes.
//!
//! A build without the feature refuses `[otel]`, saying how to rebuild, and leaves the
//! `OTEL_` variables alone.

use crate::config::Config;
use crate::error::CliError;

/// Whether this build serves `c`'s `[otel]`, and where its traces would go (`aauth config
/// check` and `aauth serve`, before anything starts).
pub(crate) fn check(c: &Config) -> Result<(), CliError> {
    #[cfg(feature = "otel")]
    return export::check(c);
    #[cfg(not(feature = "otel"))]
    match c.otel {
        Some(_) => Err(CliError::Usage {
            flag: "otel",
            reason: "this aauth was built without OpenTelemetry: rebuild it with \
                     `cargo install --path crates/aauth-cli --features otel`, or remove [otel]"
                .to_owned(),
        }),
        None => Ok(()),
    }
}

/// What must be sent before the process exits: the spans not yet exported.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Pending {
    /// Exports what is left and stops the exporter, within `within`.
    pub(crate) async fn flush(self, within: std::time::Duration) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            // Blocking: the exporter's thread sends through this runtime meanwhile.
            let done =
                tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(within)).await;
            match done {
                Ok(Ok(())) => tracing::debug!("traces flushed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "traces not all flushed"),
                Err(e) => tracing::warn!(error = %e, "traces not flushed"),
            }
        }
        #[cfg(not(feature = "otel"))]
        let _ = within;
    }
}

#[cfg(feature = "otel")]
pub(crate) use export::layer;

#[cfg(feature = "otel")]
mod export;
