//! Uploads from a certificate that cannot belong to any collaborator are
//! refused before the stream is read, so such a peer cannot make the server
//! buffer up to the maximum message size.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use openfl_transport::proto::DataStream;

/// A stream that sends one chunk and then never ends.
fn endless_upload() -> impl tokio_stream::Stream<Item = DataStream> + Send + 'static {
    let first = DataStream { size: 4, npbytes: Bytes::from_static(b"\x0a\x02\x0a\x00") };
    tokio_stream::StreamExt::chain(tokio_stream::iter(vec![first]), tokio_stream::pending())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_certificate_is_refused_before_the_upload_is_read() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let mut raw = raw_client(server.local_addr().port(), Some(client_tls(&pki().col3)));
    let outcome = tokio::time::timeout(Duration::from_secs(10), raw.send_local_task_results(endless_upload()))
        .await
        .expect("answered without waiting for the stream to end");
    assert_status(outcome.map(|_| ()), tonic::Code::Unauthenticated, "CN: |col3|");
    assert!(logic.results().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collaborator_certificate_may_still_upload() {
    let logic = TestLogic::new();
    let server = start_server(Some(server_tls()), logic.clone()).await;
    let client = client(server.local_addr().port(), Some(client_tls(&pki().col2)));
    within(20, client.send_local_task_results("col2", &task_results(1024, 5))).await.expect("upload");
    assert_eq!(logic.results().len(), 1);
}
