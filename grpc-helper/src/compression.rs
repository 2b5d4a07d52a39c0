//! Message compression. Every service of the server, built-in ones included, accepts gzip and
//! deflate requests (and zstd, with the `zstd` feature), as gRPC's own servers do; replies are compressed only when the
//! server is configured to and the caller says it accepts the encoding (tonic negotiates).

use tonic::codec::CompressionEncoding;

/// The server's compression settings, handed to each service it builds.
#[derive(Debug, Clone, Default)]
pub struct Compression {
    /// Encodings replies may use; empty: replies are not compressed.
    pub(crate) replies: Vec<CompressionEncoding>,
}

/// Applies the settings to a tonic server through its own builder methods (passed in, since
/// generated servers share no trait): the same code for hosted, health and reflection services.
pub fn compressed<S>(
    server: S,
    compression: &Compression,
    accept: fn(S, CompressionEncoding) -> S,
    send: fn(S, CompressionEncoding) -> S,
) -> S {
    // Every service accepts in requests every encoding this build speaks.
    let server = crate::wire::ENCODINGS.iter().copied().fold(server, accept);
    compression.replies.iter().copied().fold(server, send)
}
