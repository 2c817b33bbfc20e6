//! The gRPC codec of every diego service and client: prost encoding, and decoding that first
//! bounds a request with [`crate::bounds`]. Generated servers and clients name it through
//! `codec_path` in `build.rs`, so no service can forget it.
//!
//! Decoding errors are classified for the side that sees them: a request a server cannot decode
//! or that breaks a limit is INVALID_ARGUMENT (the client's fault, nothing was done); a response
//! a client cannot decode stays INTERNAL, as in tonic.

use std::marker::PhantomData;

use prost::{Message, Name};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::bounds;
use crate::error::ErrorCode;

/// A prost codec whose decoder bounds requests before decoding them.
#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder { _pd: PhantomData }
    }
}

/// Decodes a `U`, bounding it first when it is a request type.
#[derive(Debug)]
pub struct BoundedDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Name + Default> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Bounds and decodes one message from `buf`.
pub fn decode<U: Message + Name + Default>(buf: &mut impl bytes_buf::Buf) -> Result<Option<U>, Status> {
    let bytes = buf.copy_to_bytes(buf.remaining());
    let name = U::full_name();
    let request = bounds::is_request(&name);
    if request {
        bounds::check_message(&name, &bytes).map_err(|e| invalid(e.to_string()))?;
    }
    U::decode(bytes).map(Some).map_err(|e| {
        if request {
            invalid(format!("request is not a valid {name}: {e}"))
        } else {
            Status::internal(format!("response is not a valid {name}: {e}"))
        }
    })
}

/// INVALID_ARGUMENT carrying the Diego error type, as every other refusal of input does.
fn invalid(reason: String) -> Status {
    ErrorCode::InvalidRequest.to_status(format!("invalid request: {reason}"))
}

/// `bytes::Buf`, through prost's re-export.
mod bytes_buf {
    pub use prost::bytes::Buf;
}
