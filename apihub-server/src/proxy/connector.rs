//! The upstream client's connector: hyper-util's `HttpConnector` with connections that report
//! nothing about themselves.
//!
//! hyper-util's own TCP connection reports its two addresses (`HttpInfo`), and the pooled client
//! copies them into the extensions of every response it returns: a boxed value and a slot in the
//! response's type map, on every request, that nothing in the gateway reads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A connection to an upstream, as [`HttpConnector`] makes it.
#[derive(Debug)]
pub struct Plain(TokioIo<TcpStream>);

impl Connection for Plain {
    fn connected(&self) -> Connected {
        // Neither proxied nor negotiated (plain HTTP/1), and no `HttpInfo`.
        Connected::new()
    }
}

impl Read for Plain {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for Plain {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// [`HttpConnector`], its connections wrapped in [`Plain`].
#[derive(Debug, Clone)]
pub struct PlainConnector(pub HttpConnector);

/// A connection on its way (boxed: a connection is made once and then pooled).
type Connecting = Pin<Box<dyn Future<Output = Result<Plain, <HttpConnector as tower::Service<Uri>>::Error>> + Send>>;

impl tower::Service<Uri> for PlainConnector {
    type Response = Plain;
    type Error = <HttpConnector as tower::Service<Uri>>::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<Uri>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = tower::Service::<Uri>::call(&mut self.0, uri);
        Box::pin(async move { connecting.await.map(Plain) })
    }
}
