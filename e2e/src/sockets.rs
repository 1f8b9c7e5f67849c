//! Sockets that connect and send nothing, and whether the server closed them.

use std::time::Duration;

use tokio::net::TcpStream;

/// Opens `count` connections to `base` (`http://host:port`) and sends nothing on them.
pub async fn silent(base: &str, count: usize) -> Vec<TcpStream> {
    let address = base.trim_start_matches("http://");
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        sockets.push(TcpStream::connect(address).await.unwrap());
    }
    sockets
}

/// How many of `sockets` the server closed (EOF or reset) within `within`, none answered.
pub async fn closed_by_server(sockets: Vec<TcpStream>, within: Duration) -> usize {
    let mut reads = tokio::task::JoinSet::new();
    for mut socket in sockets {
        reads.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            matches!(
                tokio::time::timeout(within, socket.read(&mut buf)).await,
                Ok(Ok(0) | Err(_))
            )
        });
    }
    reads.join_all().await.into_iter().filter(|c| *c).count()
}
