//! The reference GetTasks server: tonic's generated Aggregator service from
//! the same proto, answering GetTasks with a fixed reply and no checks,
//! served by tonic's own `Server` over a tokio-rustls mTLS acceptor.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use openfl_transport::proto::aggregator::aggregator_server::{Aggregator, AggregatorServer};
use openfl_transport::proto::aggregator::{GetTasksRequest, GetTasksResponse, MessageHeader};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::pki::{self, Pki};
use crate::roles::{self, Args};

/// Answers every GetTasks with the same reply (one task, as ours gives).
struct Bare {
    reply: GetTasksResponse,
}

#[tonic::async_trait]
impl Aggregator for Bare {
    async fn get_tasks(
        &self,
        _: Request<GetTasksRequest>,
    ) -> Result<Response<GetTasksResponse>, Status> {
        Ok(Response::new(self.reply.clone()))
    }
}

/// A server-side TLS stream as tonic wants it (no connection info).
struct Conn(TlsStream<TcpStream>);

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Role `gettasks-bare --pki DIR`.
pub fn role(args: &Args) -> ! {
    let pki = Pki::at(
        args.str("pki")
            .unwrap_or_else(|e| roles::fail("gettasks-bare", e)),
    );
    let config = pki::rustls_server(&pki).unwrap_or_else(|e| roles::fail("gettasks-bare", e));
    let runtime = roles::runtime();
    let port = runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| roles::fail("gettasks-bare", e));
        let port = listener.local_addr().expect("bound").port();
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                // Handshakes run concurrently; failed ones are dropped.
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = tx.send(Ok(Conn(tls))).await;
                    }
                });
            }
        });
        let reply = GetTasksResponse {
            header: Some(MessageHeader {
                sender: pki::AGGREGATOR_UUID.into(),
                receiver: pki::CLIENT_CN.into(),
                federation_uuid: pki::FEDERATION_UUID.into(),
                single_col_cert_common_name: pki::CLIENT_CN.into(),
            }),
            tasks: vec![crate::ours::train_task()],
            ..Default::default()
        };
        let service = AggregatorServer::new(Bare { reply });
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(ReceiverStream::new(rx))
                .await;
            if let Err(e) = served {
                roles::fail("gettasks-bare", format!("tonic server: {e}"));
            }
        });
        port
    });
    roles::serve_stats(port)
}
