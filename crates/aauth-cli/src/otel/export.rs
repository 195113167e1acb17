//! The exporter behind `[otel]`: the OTLP/HTTP span exporter, sent through the service's
//! own hyper and rustls client, and the `tracing` layer that feeds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{SpanId, SpanKind, TracerProvider as _};
use opentelemetry::{Key, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use super::Pending;
use crate::cli::Role;
use crate::config::{Config, Otel};
use crate::error::CliError;

/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the traces URL, whole.
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL, for every signal.
const ANY_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The OTLP/HTTP default.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// `[otel]` reads, and the endpoint it or the environment names is a URL.
pub(super) fn check(c: &Config) -> Result<(), CliError> {
    if let Some(name) = c.otel.as_ref().and_then(|o| o.service_name.as_deref())
        && name.trim().is_empty()
    {
        return Err(CliError::Usage {
            flag: "otel.service_name",
            reason: "empty".to_owned(),
        });
    }
    endpoint(c.otel.as_ref(), &|name| std::env::var(name).ok()).map(drop)
}

/// The traces URL `o` and the environment `env` name, if traces are exported at all.
fn endpoint(
    o: Option<&Otel>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<http::Uri>, CliError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(url) = o.and_then(|o| o.endpoint.as_deref()) {
        return url_of("otel.endpoint", url).map(Some);
    }
    if let Some(url) = var(TRACES_ENDPOINT) {
        return url_of(TRACES_ENDPOINT, &url).map(Some);
    }
    if let Some(base) = var(ANY_ENDPOINT) {
        let url = format!("{}/v1/traces", base.trim_end_matches('/'));
        return url_of(ANY_ENDPOINT, &url).map(Some);
    }
    o.map(|_| url_of("otel.endpoint", DEFAULT_ENDPOINT))
        .transpose()
}

/// `url` as an OTLP/HTTP endpoint; an error naming `key`.
fn url_of(key: &'static str, url: &str) -> Result<http::Uri, CliError> {
    let bad = |reason: &str| CliError::Usage {
        flag: key,
        // Shown without a password the URL may carry.
        reason: format!("{:?}: {reason}", aauth_metadata::store::redact_url(url)),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("the scheme must be http or https"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "no user information (a collector's credentials go in OTEL_EXPORTER_OTLP_HEADERS)",
        ));
    }
    Ok(uri)
}

/// How long one export may take, connecting included (the OTLP default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the collector may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest collector answer read (a partial-success message is small).
const MAX_ANSWER: usize = 64 * 1024;

/// The `tracing` layer that exports request spans as `c` configures, and what to
/// flush at exit; no layer when traces are not configured. The collector is reached
/// through `runtime`.
pub(crate) fn layer<S>(
    c: &Config,
    role: Role,
    runtime: &tokio::runtime::Handle,
) -> Result<(Option<impl Layer<S>>, Pending), CliError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let Some(endpoint) = endpoint(c.otel.as_ref(), &|name| std::env::var(name).ok())? else {
        return Ok((None, Pending::default()));
    };
    let roots = crate::net::Reach::from_egress(&c.egress.ca_files, &[])?.roots();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.to_string())
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(Collector::new(roots, runtime.clone())?)
        .build()
        .map_err(|e| CliError::Usage {
            flag: "otel",
            reason: e.to_string(),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(ServerSpans(exporter))
        .with_resource(resource(c, role))
        .build();
    let tracer = provider.tracer("aauth");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        // Request spans and what is logged in them; never a library's debug spans.
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    Ok((
        Some(layer),
        Pending {
            provider: Some(provider),
        },
    ))
}

/// The service's resource: `service.name` from `[otel]`, else the `OTEL_` variables,
/// else `aauth-<role>`; `service.version`.
fn resource(c: &Config, role: Role) -> Resource {
    let configured = c.otel.as_ref().and_then(|o| o.service_name.clone());
    // The SDK's own default when no variable names the service.
    let unnamed = || {
        Resource::builder()
            .build()
            .get(&Key::new("service.name"))
            .is_none_or(|v| v.as_str().starts_with("unknown_service"))
    };
    let name = configured.or_else(|| unnamed().then(|| format!("aauth-{}", role.name())));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    match name {
        Some(name) => builder.with_service_name(name),
        None => builder,
    }
    .build()
}

/// The OTLP exporter with each request span made a server span named
/// `METHOD /route` (the request span's own name is `request`, the same for all).
#[derive(Debug)]
struct ServerSpans<E>(E);

impl<E: SpanExporter> SpanExporter for ServerSpans<E> {
    fn export(&self, mut batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        batch.iter_mut().for_each(name_request);
        self.0.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// A root `request` span with a method and a path: `GET /pending`, a server span.
fn name_request(span: &mut SpanData) {
    if span.name != "request" || span.parent_span_id != SpanId::INVALID {
        return;
    }
    let field = |name: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == name)
            .map(|kv| kv.value.as_str().into_owned())
    };
    if let (Some(method), Some(path)) = (field("method"), field("path")) {
        let route = aauth_metadata::ops::route_label(&path);
        span.name = format!("{method} {route}").into();
        span.span_kind = SpanKind::Server;
    }
}

/// The exporter's HTTP client: the service's own hyper and rustls, on its runtime
/// (the exporter's thread has none). A failing collector is logged once, and again
/// when it answers.
#[derive(Debug)]
struct Collector {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    failing: Arc<AtomicBool>,
}

impl Collector {
    fn new(
        roots: rustls::RootCertStore,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, CliError> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Operational(format!("otel: TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            runtime,
            failing: Arc::new(AtomicBool::new(false)),
        })
    }
}

type HttpError = opentelemetry_http::HttpError;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Collector {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let endpoint = request.uri().clone();
        let request = request.map(Full::new);
        let sent = self.runtime.spawn(async move {
            let exchange = async {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_ANSWER).collect().await?;
                Ok::<_, HttpError>(Response::from_parts(parts, body.to_bytes()))
            };
            tokio::time::timeout(EXPORT_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| Err("the collector did not answer in time".into()))
        });
        let answer = sent.await.map_err(HttpError::from).and_then(|a| a);
        let failure = match &answer {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the collector answered {}", r.status())),
            Err(e) => Some(with_causes(e.as_ref())),
        };
        match failure {
            Some(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(%endpoint, error = %e, "exporting traces failed");
            }
            None if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(%endpoint, "exporting traces again");
            }
            _ => {}
        }
        answer
    }
}

/// `e` and its causes, `: `-separated.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn section(endpoint: Option<&str>) -> Otel {
        Otel {
            endpoint: endpoint.map(str::to_owned),
            service_name: None,
        }
    }

    #[test]
    fn the_endpoint_comes_from_the_file_then_the_otel_variables() {
        let none = env(&[]);
        assert!(
            endpoint(None, &none).unwrap().is_none(),
            "no section, no variable"
        );
        let url = |o: Option<&Otel>, e: &dyn Fn(&str) -> Option<String>| {
            endpoint(o, e).unwrap().unwrap().to_string()
        };
        assert_eq!(url(Some(&section(None)), &none), DEFAULT_ENDPOINT);
        let base = env(&[(ANY_ENDPOINT, "http://collector:4318/")]);
        assert_eq!(url(None, &base), "http://collector:4318/v1/traces");
        let both = env(&[
            (ANY_ENDPOINT, "http://collector:4318"),
            (TRACES_ENDPOINT, "https://traces.example/otlp"),
        ]);
        assert_eq!(url(None, &both), "https://traces.example/otlp");
        let file = section(Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(url(Some(&file), &both), "http://127.0.0.1:4318/v1/traces");
        let empty = env(&[(ANY_ENDPOINT, " ")]);
        assert!(endpoint(None, &empty).unwrap().is_none());
    }

    #[test]
    fn a_bad_endpoint_is_named_by_its_key() {
        let none = env(&[]);
        for (url, says) in [
            ("ftp://collector/v1/traces", "scheme"),
            ("collector:4318", "scheme"),
            (
                "http://user:secret@collector/v1/traces",
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
        ] {
            let e = endpoint(Some(&section(Some(url))), &none)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("otel.endpoint") && e.contains(says), "{e}");
        }
        let bad = env(&[(ANY_ENDPOINT, "not a url")]);
        let e = endpoint(None, &bad).unwrap_err().to_string();
        assert!(e.starts_with(ANY_ENDPOINT), "{e}");
    }

    #[test]
    fn request_spans_are_named_by_method_and_route() {
        use opentelemetry::KeyValue;
        use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
        use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
        let span = |name: &'static str, parent: SpanId| SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: std::time::UNIX_EPOCH,
            end_time: std::time::UNIX_EPOCH,
            attributes: vec![
                KeyValue::new("request_id", "r-1"),
                KeyValue::new("method", "GET"),
                KeyValue::new("path", "/pending/3f9aXy"),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: opentelemetry::InstrumentationScope::default(),
        };
        let mut root = span("request", SpanId::INVALID);
        name_request(&mut root);
        assert_eq!(
            (root.name.as_ref(), root.span_kind),
            ("GET /pending", SpanKind::Server)
        );
        let mut child = span("request", SpanId::from_bytes([1; 8]));
        name_request(&mut child);
        assert_eq!(child.name, "request", "only a root span is the request");
        let mut other = span("fetch", SpanId::INVALID);
        name_request(&mut other);
        assert_eq!(other.name, "fetch");
    }
}
