//! Admission's response body: the inner service's, or a refusal's.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

pin_project! {
    /// The body of an admitted request's response, or of a refusal.
    #[derive(Debug)]
    pub struct AdmissionBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Admitted { #[pin] body: B },
        Refused { body: Full<Bytes> },
    }
}

impl<B> AdmissionBody<B> {
    pub(super) fn admitted(body: B) -> Self {
        AdmissionBody { kind: Kind::Admitted { body } }
    }

    pub(crate) fn refused(body: Full<Bytes>) -> Self {
        AdmissionBody { kind: Kind::Refused { body } }
    }
}

impl<B> Body for AdmissionBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Admitted { body } => body.poll_frame(cx),
            KindProj::Refused { body } => Pin::new(body).poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Admitted { body } => body.is_end_stream(),
            Kind::Refused { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Admitted { body } => body.size_hint(),
            Kind::Refused { body } => body.size_hint(),
        }
    }
}
