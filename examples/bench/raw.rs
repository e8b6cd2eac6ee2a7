//! The ceiling of the transfers: the payload over one raw rustls mTLS
//! stream (tokio-rustls, same certificates), no HTTP/2, no gRPC. The sender
//! writes the payload from memory in one `write_all`; the receiver reads it
//! into a buffer of the full payload size (a real receiver must hold it),
//! then sends a 1-byte ack that the sender waits for.

use std::time::Instant;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ours::payload;
use crate::pki::{self, Pki};
use crate::roles::{self, Args};
use crate::stats::ProcStats;

/// Sends `data` and waits for the receiver's ack.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
) -> std::io::Result<()> {
    stream.write_all(data).await?;
    stream.flush().await?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await?;
    Ok(())
}

/// Receives `size` bytes into a buffer allocated for them, then acks.
async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    size: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; size];
    stream.read_exact(&mut buffer).await?;
    stream.write_all(b"k").await?;
    stream.flush().await?;
    Ok(buffer)
}

/// Role `raw-server --pki DIR --dir up|down --size BYTES`: serves one
/// transfer (receives an upload, or sends a download built before READY).
pub fn server_role(args: &Args) -> ! {
    let role = "raw-server";
    let parsed = (|| -> Result<_, String> {
        let pki = Pki::at(args.str("pki")?);
        Ok((
            pki::rustls_server(&pki)?,
            args.str("dir")? == "down",
            args.num::<usize>("size")?,
        ))
    })();
    let (config, download, size) = parsed.unwrap_or_else(|e| roles::fail(role, e));
    let data = download.then(|| payload(size));
    let runtime = roles::runtime();
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| roles::fail(role, e));
    let port = listener.local_addr().expect("bound").port();
    runtime.spawn(async move {
        let served = async {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            let mut tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
            match &data {
                Some(data) => send(&mut tls, data).await,
                None => receive(&mut tls, size).await.map(drop),
            }
        };
        if let Err(e) = served.await {
            roles::fail(role, format!("transfer: {e}"));
        }
    });
    roles::serve_stats(port)
}

/// Role `raw-client --pki DIR --port P --dir up|down --size BYTES`: one
/// transfer, timed from connect to the end (ack received, or all read);
/// prints `RESULT <seconds> <utime> <stime> <peak_rss>` (CPU over the
/// transfer, peak RSS of the whole process).
pub fn client_role(args: &Args) -> ! {
    let role = "raw-client";
    let parsed = (|| -> Result<_, String> {
        let pki = Pki::at(args.str("pki")?);
        Ok((
            pki::rustls_client(&pki)?,
            args.num::<u16>("port")?,
            args.str("dir")? == "up",
            args.num::<usize>("size")?,
        ))
    })();
    let (config, port, upload, size) = parsed.unwrap_or_else(|e| roles::fail(role, e));
    let data = upload.then(|| payload(size));
    let runtime = roles::runtime();
    let before = ProcStats::current();
    let started = Instant::now();
    let moved = runtime.block_on(async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("valid name");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        match &data {
            Some(data) => send(&mut tls, data).await.map(|()| None),
            None => receive(&mut tls, size).await.map(Some),
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let figures = ProcStats::current().since(&before);
    match moved {
        Ok(received) => {
            drop(received);
            print_result(secs, &figures)
        }
        Err(e) => roles::fail(role, format!("transfer: {e}")),
    }
}

/// Prints a client's `RESULT` line and exits.
pub fn print_result(secs: f64, figures: &ProcStats) -> ! {
    println!(
        "RESULT {secs:.6} {:.6} {:.6} {}",
        figures.user, figures.system, figures.peak_rss
    );
    std::process::exit(0)
}
