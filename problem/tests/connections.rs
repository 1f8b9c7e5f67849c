//! Connection hygiene against real sockets: a server on a guarded listener closes a connection
//! that sends nothing, one that idles after its request, one that trickles its head, and holds
//! no more than its cap — while valid requests keep their answers.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use problem::connections::{ConnectionLimits, Guarded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 3,
    first_byte: Duration::from_millis(300),
    idle: Duration::from_millis(400),
    request: Duration::from_millis(1_500),
};

async fn server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            "slow"
        }),
    );
    tokio::spawn(async move {
        axum::serve(Guarded::new(listener, LIMITS), app)
            .await
            .unwrap();
    });
    address
}

/// Reads until the server closes the connection (EOF or reset), within `within`: whether it
/// did, and what it sent.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn get_once(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_its_slot_freed() {
    let address = server().await;
    let mut silent = Vec::new();
    for _ in 0..LIMITS.max_connections {
        silent.push(TcpStream::connect(address).await.unwrap());
    }
    // Past the cap: closed at once, nothing answered.
    let mut over = TcpStream::connect(address).await.unwrap();
    let (closed, sent) = closed_within(&mut over, Duration::from_millis(200)).await;
    assert!(closed && sent.is_empty(), "over the cap: {closed} {sent:?}");
    // The silent ones are closed after their first-byte deadline…
    for stream in &mut silent {
        let (closed, sent) = closed_within(stream, Duration::from_secs(3)).await;
        assert!(closed && sent.is_empty(), "{sent:?}");
    }
    // …and a valid request is served again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(get_once(address, "/").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_after_idling_and_a_slow_answer_is_not_cut() {
    let address = server().await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    // A handler longer than the first-byte and idle deadlines, within the request's.
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow"),
        "{answer}"
    );
    // Kept alive, then idle past its deadline: closed.
    let (closed, sent) = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(closed && sent.is_empty(), "{sent:?}");
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off() {
    let address = server().await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut cut = false;
    // One byte every 100 ms, each well within the idle deadline: only the request's deadline
    // ends it.
    for byte in b"GET / HTTP/1.1\r\nx-slow: "
        .iter()
        .chain([b'a'; 200].iter())
    {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    if !cut {
        let (closed, _) = closed_within(&mut stream, Duration::from_secs(1)).await;
        cut = closed;
    }
    assert!(cut, "a trickled head is cut off by the request's deadline");
    assert!(started.elapsed() < Duration::from_secs(5));
}
