//! A response body that gives a model back its public name: a channel that knows `gpt-4o` as
//! `gpt-4o-2024-11-20` answers with the latter, and the client must see the name it asked for.
//!
//! The JSON string token `"gpt-4o-2024-11-20"` (quotes included) is replaced wherever it occurs,
//! across chunk boundaries. Inside a JSON string, quotes are escaped (`\"`), so text that merely
//! mentions the name is never a token and stays as it is. Only a suffix that could begin the token
//! is held back between chunks, so a stream's events are never delayed.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use apihub_tower::body::BoxError;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// The token to find and what replaces it.
#[derive(Debug, Clone)]
pub struct Rename {
    from: Vec<u8>,
    to: Vec<u8>,
}

impl Rename {
    /// Replaces the JSON string `upstream` by the JSON string `public`; `None` when they are equal.
    /// Both names must need no JSON escaping (channel definitions refuse quotes, backslashes and
    /// control characters).
    pub fn model(upstream: &str, public: &str) -> Option<Rename> {
        (upstream != public)
            .then(|| Rename { from: format!("\"{upstream}\"").into_bytes(), to: format!("\"{public}\"").into_bytes() })
    }

    /// Rewrites `buf` into `out`; returns how many bytes at its end were held back (a proper
    /// prefix of the token that the next chunk may complete).
    fn apply(&self, buf: &[u8], out: &mut BytesMut) -> usize {
        let mut start = 0;
        while let Some(found) = find(&buf[start..], &self.from) {
            out.extend_from_slice(&buf[start..start + found]);
            out.extend_from_slice(&self.to);
            start += found + self.from.len();
        }
        let rest = &buf[start..];
        let held =
            (1..self.from.len().min(rest.len() + 1)).rev().find(|&n| rest.ends_with(&self.from[..n])).unwrap_or(0);
        out.extend_from_slice(&rest[..rest.len() - held]);
        held
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// `inner`, with [`Rename`] applied to its data when there is one.
#[derive(Debug)]
pub struct Renamed<B> {
    inner: B,
    rename: Option<Rename>,
    /// Bytes held back from the previous chunk.
    carry: Vec<u8>,
    /// A trailers frame that arrived while bytes were held back: sent after them.
    pending: Option<Frame<Bytes>>,
    done: bool,
}

impl<B> Renamed<B> {
    /// Passes `inner` through as it is.
    pub fn plain(inner: B) -> Self {
        Renamed::new(inner, None)
    }

    /// Applies `rename` to `inner`.
    pub fn new(inner: B, rename: Option<Rename>) -> Self {
        Renamed { inner, rename, carry: Vec::new(), pending: None, done: false }
    }
}

impl<B> Body for Renamed<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(frame) = this.pending.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let Some(rename) = &this.rename else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        loop {
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    this.done = true;
                    if this.carry.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(std::mem::take(&mut this.carry))))));
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let mut buf = std::mem::take(&mut this.carry);
                    buf.extend_from_slice(&data);
                    let mut out = BytesMut::with_capacity(buf.len() + 16);
                    let held = rename.apply(&buf, &mut out);
                    this.carry = buf.split_off(buf.len() - held);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                }
                Err(frame) => {
                    if this.carry.is_empty() {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    this.pending = Some(frame);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(std::mem::take(&mut this.carry))))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.carry.is_empty() && (self.done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match self.rename {
            None => self.inner.size_hint(),
            Some(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    async fn renamed(chunks: &[&str]) -> Vec<String> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::copy_from_slice(c.as_bytes())))).collect();
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let mut body = Renamed::new(body, Rename::model("gpt-4o-2024-11-20", "gpt-4o"));
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(String::from_utf8(frame.unwrap().into_data().unwrap().to_vec()).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn the_upstream_name_is_replaced_even_across_chunks() {
        let out = renamed(&[r#"data: {"model":"gpt-4o-20"#, r#"24-11-20","x":1}"#, "\n\n"]).await;
        assert_eq!(out.concat(), "data: {\"model\":\"gpt-4o\",\"x\":1}\n\n");
    }

    #[tokio::test]
    async fn an_event_is_never_held_back_and_mentions_in_text_stay() {
        let event = r#"data: {"model":"gpt-4o-2024-11-20","content":"say \"gpt-4o-2024-11-20\""}"#;
        let out = renamed(&[&format!("{event}\n\n"), "data: [DONE]\n\n"]).await;
        assert_eq!(out[0], "data: {\"model\":\"gpt-4o\",\"content\":\"say \\\"gpt-4o-2024-11-20\\\"\"}\n\n");
        assert_eq!(out[1], "data: [DONE]\n\n");
    }

    #[tokio::test]
    async fn a_held_back_prefix_that_is_not_the_name_is_sent_at_the_end() {
        assert_eq!(renamed(&["{\"a\":\"gpt", "-5\"}"]).await.concat(), "{\"a\":\"gpt-5\"}");
        assert_eq!(renamed(&["ends with \"gpt-4o"]).await.concat(), "ends with \"gpt-4o");
    }
}
