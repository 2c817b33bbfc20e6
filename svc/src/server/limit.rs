//! The request size limit of a gRPC port ([`RequestLimitLayer`]): every request message is held
//! to the server's `max_request_bytes` by reading the length prefix of each gRPC frame as the body
//! arrives. A message over the limit is refused with RESOURCE_EXHAUSTED naming its size and the
//! limit before any of it is buffered or decoded, so the handler never runs and nothing is
//! written.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tonic::Status;
use tonic::codegen::http;

/// Bytes of a gRPC frame's prefix: a compression flag and a big-endian 32-bit length.
const PREFIX: usize = 5;

/// Holds every request message of the wrapped service to `max_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimitLayer {
    max_bytes: usize,
}

impl RequestLimitLayer {
    /// A limit of `max_bytes` per request message.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<S> tower::Layer<S> for RequestLimitLayer {
    type Service = RequestLimit<S>;

    fn layer(&self, inner: S) -> RequestLimit<S> {
        RequestLimit { inner, max_bytes: self.max_bytes }
    }
}

/// The service of [`RequestLimitLayer`]: passes each request on with its body wrapped in a
/// [`LimitedBody`].
#[derive(Debug, Clone)]
pub struct RequestLimit<S> {
    inner: S,
    max_bytes: usize,
}

impl<S, B> tower::Service<http::Request<B>> for RequestLimit<S>
where
    S: tower::Service<http::Request<LimitedBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        let max_bytes = self.max_bytes;
        self.inner.call(request.map(|body| LimitedBody::new(body, max_bytes)))
    }
}

/// A request body that yields RESOURCE_EXHAUSTED in place of the first data chunk announcing a
/// message over its limit. Chunks pass through unchanged; only the frame prefixes are read,
/// wherever the chunk boundaries fall.
#[derive(Debug)]
pub struct LimitedBody<B> {
    inner: B,
    scanner: FrameScanner,
}

impl<B> LimitedBody<B> {
    fn new(inner: B, max_bytes: usize) -> Self {
        Self { inner, scanner: FrameScanner::new(max_bytes) }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::codegen::StdError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.scanner.refused {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.scanner.scan(data)
                {
                    return Poll::Ready(Some(Err(Box::new(status))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.scanner.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Follows the gRPC framing of a byte stream: where each message's prefix starts, and whether
/// the length it announces is within the limit.
#[derive(Debug, Clone)]
pub(crate) struct FrameScanner {
    max_bytes: usize,
    /// The prefix read so far.
    prefix: [u8; PREFIX],
    /// How many bytes of `prefix` are read.
    have: usize,
    /// Bytes of the current message still to pass before the next prefix.
    skip: u64,
    /// A message over the limit was seen; nothing more is read.
    refused: bool,
}

impl FrameScanner {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self { max_bytes, prefix: [0; PREFIX], have: 0, skip: 0, refused: false }
    }

    /// Reads the next `data` of the stream; the refusal of the first message over the limit.
    pub(crate) fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(data.len());
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (PREFIX - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == PREFIX {
                self.have = 0;
                let len = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]);
                if u64::from(len) > self.max_bytes as u64 {
                    self.refused = true;
                    metrics::counter!("grpc_requests_over_size_limit_total").increment(1);
                    return Err(Status::resource_exhausted(format!(
                        "request message of {len} bytes is over this server's limit of {} bytes \
                         (max_request_bytes)",
                        self.max_bytes
                    )));
                }
                self.skip = u64::from(len);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut bytes = vec![0_u8];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7_u8, len as usize));
        bytes
    }

    #[test]
    fn messages_up_to_the_limit_pass_and_the_next_larger_one_is_refused() {
        let mut scanner = FrameScanner::new(10);
        assert!(scanner.scan(&frame(10)).is_ok());
        assert!(scanner.scan(&frame(0)).is_ok());
        let refused = scanner.scan(&frame(11)).expect_err("11 bytes is over 10");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "request message of 11 bytes is over this server's limit of 10 bytes (max_request_bytes)"
        );
    }

    #[test]
    fn prefixes_split_across_chunks_are_read_whole() {
        // Two messages, 3 and 20 bytes, cut into chunks of every size from 1 to the whole.
        let mut stream = frame(3);
        stream.extend(frame(20));
        for chunk in 1..=stream.len() {
            let mut scanner = FrameScanner::new(19);
            let results: Vec<_> = stream.chunks(chunk).map(|c| scanner.scan(c).is_ok()).collect();
            assert!(results.contains(&false), "chunk size {chunk}: the 20-byte message must be refused");
            let first_refused = results.iter().position(|ok| !ok).expect("refused");
            // The refusal comes with the chunk that completes the second prefix (bytes 8..13).
            assert_eq!(first_refused, (8 + 5 - 1) / chunk, "chunk size {chunk}");
        }
    }

    #[test]
    fn a_payload_that_looks_like_a_prefix_is_skipped() {
        // A 5-byte message whose payload would announce 4 GiB if it were read as a prefix.
        let mut stream = vec![0, 0, 0, 0, 5, 0, 0xff, 0xff, 0xff, 0xff];
        stream.extend(frame(4));
        let mut scanner = FrameScanner::new(5);
        assert!(scanner.scan(&stream).is_ok());
        assert!(scanner.scan(&frame(6)).is_err(), "the scanner is still in step after the payload");
    }
}
