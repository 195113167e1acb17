//! A local misbehaving HTTPS server: a test CA, a TLS listener on 127.0.0.1:0, and per-path
//! behaviours (answer, hang, drip the body, stream without end).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A certificate authority generated for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Self {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }

    /// A server configuration with a certificate for `names`.
    pub fn server_config(&self, names: &[&str]) -> rustls::ServerConfig {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let chain: Vec<CertificateDer<'static>> =
            vec![cert.der().clone(), self.issuer.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap()
    }
}

/// What the server does for one path.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Status, extra header lines, body.
    Answer(u16, Vec<(String, String)>, Vec<u8>),
    /// Reads the request and never answers.
    Hang,
    /// Declares `len` bytes and sends one every `every`.
    Drip { len: usize, every: Duration },
    /// Sends a body without end and without Content-Length (close-delimited).
    Endless,
}

pub fn json(body: &str) -> Mode {
    Mode::Answer(
        200,
        vec![("content-type".to_owned(), "application/json".to_owned())],
        body.as_bytes().to_vec(),
    )
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    routes: Arc<Mutex<BTreeMap<String, Mode>>>,
    /// Request heads received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(config: rustls::ServerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<BTreeMap<String, Mode>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (r, q) = (Arc::clone(&routes), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, r, q) = (acceptor.clone(), Arc::clone(&r), Arc::clone(&q));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    q.lock().unwrap().push(head);
                    let mode = r.lock().unwrap().get(&path).cloned();
                    let _ = serve(&mut tls, mode).await;
                });
            }
        });
        Self {
            addr,
            routes,
            requests,
            task,
        }
    }

    pub fn route(&self, path: &str, mode: Mode) {
        self.routes.lock().unwrap().insert(path.to_owned(), mode);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.split(' ').nth(1) == Some(path))
            .count()
    }

    /// Stops accepting: later connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<S: tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    mode: Option<Mode>,
) -> std::io::Result<()> {
    match mode {
        None => {
            s.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await?;
        }
        Some(Mode::Answer(status, headers, body)) => {
            let mut out = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            s.write_all(out.as_bytes()).await?;
            s.write_all(&body).await?;
        }
        Some(Mode::Hang) => std::future::pending::<()>().await,
        Some(Mode::Drip { len, every }) => {
            s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes())
                .await?;
            for _ in 0..len {
                s.flush().await?;
                tokio::time::sleep(every).await;
                s.write_all(b" ").await?;
            }
        }
        Some(Mode::Endless) => {
            s.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                .await?;
            let chunk = vec![b'x'; 16 * 1024];
            loop {
                s.write_all(&chunk).await?;
            }
        }
    }
    s.flush().await?;
    s.shutdown().await
}
