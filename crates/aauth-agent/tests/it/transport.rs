//! The reqwest adapter's time limit: a server that answers its headers and then stalls
//! (or dribbles its body) does not hold the agent past the limit.

use std::time::Duration;

use aauth_agent::{ReqwestTransport, Transport};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn the_reqwest_adapter_gives_up_on_a_server_that_stalls_after_its_headers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _read = conn.read(&mut request).await.unwrap();
        // The headers and one byte of the hundred promised, then nothing, the connection
        // held open.
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nx")
            .await
            .unwrap();
        conn.flush().await.unwrap();
        std::future::pending::<()>().await;
        drop(conn);
    });
    // Whatever reqwest's features in this build: with rustls and no provider chosen, a
    // client cannot be built until one is installed (already installed: no matter).
    let _installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let transport = ReqwestTransport::new(reqwest::Client::builder())
        .unwrap()
        .timeout(Duration::from_millis(300));
    let req = http::Request::get(format!("http://{addr}/pending/abc"))
        .body(Bytes::new())
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), transport.send(req))
        .await
        .expect("the adapter's own limit ends the exchange");
    let err = outcome.unwrap_err();
    assert!(
        err.reason.contains("no complete response within 300 ms"),
        "{}",
        err.reason
    );
    server.abort();
}
