//! A layer in front of h2 that normalises the HTTP/2 `:authority`
//! pseudo-header on the raw client byte stream.
//!
//! grpc-core (Python/C++/Ruby `grpcio`), grpc-java and kube-apiserver before
//! 1.32 send a unix socket's path (percent-encoded or not) as `:authority`.
//! That is not an RFC 3986 authority, and h2 (under tonic) resets such a
//! stream with `PROTOCOL_ERROR` before any service sees it. Go's HTTP/2
//! server accepts it, so Go KMS plugins answer these clients.
//!
//! [`NormalizeAuthority`] wraps each accepted connection. Bytes from the
//! server pass through untouched. Bytes from the client are parsed as
//! HTTP/2 frames: every header block (HEADERS plus CONTINUATION frames) is
//! HPACK-decoded with the client's compression context, an `:authority`
//! that `http::uri::Authority` (the parser h2 uses) rejects is replaced by
//! `localhost` (what grpc-go sends for unix sockets), and the block is
//! re-encoded with a compression context of our own towards h2. All other
//! frames are copied as they are. Because both HPACK contexts are ours,
//! every header block is re-encoded, not only the ones we change.
//!
//! Limits: a header block may hold at most 1 MiB, a frame at most 1 MiB,
//! and the client's dynamic table at most 64 KiB; beyond that the
//! connection is closed (h2's own limits are lower).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const MAX_FRAME: usize = 1 << 20;
const MAX_HEADER_BLOCK: usize = 1 << 20;
const MAX_CLIENT_TABLE: usize = 64 * 1024;
/// h2's default SETTINGS_MAX_FRAME_SIZE: the largest frame we send it.
const OUT_FRAME: usize = 16_384;
const READ_CHUNK: usize = 16 * 1024;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// What `:authority` becomes when it is not a valid authority.
pub const REPLACEMENT: &[u8] = b"localhost";

/// How many `:authority` values this process has replaced (for logs and tests).
pub static REWRITTEN: AtomicU64 = AtomicU64::new(0);

/// A connection whose client-to-server HTTP/2 header blocks are normalised.
pub struct NormalizeAuthority<S> {
    inner: S,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    preface_left: usize,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    eof: bool,
}

struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

impl<S> std::fmt::Debug for NormalizeAuthority<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NormalizeAuthority").finish_non_exhaustive()
    }
}

impl<S> NormalizeAuthority<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_CLIENT_TABLE);
        Self {
            inner,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            preface_left: PREFACE_LEN,
            pending: None,
            decoder,
            encoder: loona_hpack::Encoder::new(),
            eof: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves complete frames from `raw` to `out`, rewriting header blocks.
    fn process(&mut self) -> io::Result<()> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.raw.len());
            self.out.extend(self.raw.drain(..n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        let mut at = 0;
        while let Some(head) = self.raw.get(at..at + FRAME_HEADER_LEN) {
            let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            if len > MAX_FRAME {
                return Err(protocol(format!("a {len}-byte frame exceeds the {MAX_FRAME}-byte limit")));
            }
            let end = at + FRAME_HEADER_LEN + len;
            if self.raw.len() < end {
                break;
            }
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
            let payload = self.raw[at + FRAME_HEADER_LEN..end].to_vec();
            let frame = at..end;
            at = end;
            match (kind, self.pending.is_some()) {
                (HEADERS, false) => self.start_block(stream, flags, &payload)?,
                (CONTINUATION, true) => self.continue_block(stream, flags, &payload)?,
                (_, true) => return Err(protocol("a header block was interrupted by another frame".into())),
                (_, false) => self.out.extend_from_slice(&self.raw[frame]),
            }
        }
        self.raw.drain(..at);
        Ok(())
    }

    fn start_block(&mut self, stream: u32, flags: u8, payload: &[u8]) -> io::Result<()> {
        let mut body = payload;
        if flags & PADDED != 0 {
            let (&pad, rest) = body.split_first().ok_or_else(|| protocol("empty padded HEADERS".into()))?;
            body = rest
                .get(..rest.len().saturating_sub(usize::from(pad)))
                .filter(|_| usize::from(pad) <= rest.len())
                .ok_or_else(|| protocol("HEADERS padding longer than the frame".into()))?;
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            let (p, rest) = body.split_at_checked(5).ok_or_else(|| protocol("short HEADERS priority".into()))?;
            let mut a = [0u8; 5];
            a.copy_from_slice(p);
            priority = Some(a);
            body = rest;
        }
        self.pending = Some(Pending { stream, flags, priority, block: body.to_vec() });
        if flags & END_HEADERS != 0 { self.finish_block() } else { Ok(()) }
    }

    fn continue_block(&mut self, stream: u32, flags: u8, payload: &[u8]) -> io::Result<()> {
        let pending = self.pending.as_mut().ok_or_else(|| protocol("CONTINUATION without HEADERS".into()))?;
        if pending.stream != stream {
            return Err(protocol("CONTINUATION on another stream".into()));
        }
        if pending.block.len() + payload.len() > MAX_HEADER_BLOCK {
            return Err(protocol(format!("a header block exceeds {MAX_HEADER_BLOCK} bytes")));
        }
        pending.block.extend_from_slice(payload);
        if flags & END_HEADERS != 0 { self.finish_block() } else { Ok(()) }
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        let mut headers =
            self.decoder.decode(&p.block).map_err(|e| protocol(format!("HPACK decoding failed: {e:?}")))?;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" && http::uri::Authority::try_from(value.as_slice()).is_err() {
                tracing::debug!(
                    authority = %String::from_utf8_lossy(value),
                    "normalised a non-authority :authority (a unix socket path) to localhost"
                );
                *value = REPLACEMENT.to_vec();
                REWRITTEN.fetch_add(1, Ordering::Relaxed);
            }
        }
        let block = self.encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let first_room = OUT_FRAME - p.priority.map_or(0, |_| 5);
        let (first, mut rest) = block.split_at(block.len().min(first_room));
        let mut payload = Vec::with_capacity(first.len() + 5);
        if let Some(prio) = p.priority {
            payload.extend_from_slice(&prio);
        }
        payload.extend_from_slice(first);
        let mut flags = p.flags & (END_STREAM | PRIORITY);
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        push_frame(&mut self.out, HEADERS, flags, p.stream, &payload);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(OUT_FRAME));
            rest = tail;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            push_frame(&mut self.out, CONTINUATION, flags, p.stream, chunk);
        }
        Ok(())
    }
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn protocol(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 from the client: {what}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for NormalizeAuthority<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                        continue;
                    }
                    this.raw.extend_from_slice(rb.filled());
                    this.process()?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NormalizeAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for NormalizeAuthority<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(enc: &mut loona_hpack::Encoder<'_>, authority: &[u8]) -> Vec<u8> {
        enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/v2.KeyManagementService/Status"),
            (b":authority", authority),
            (b"te", b"trailers"),
        ])
    }

    fn run(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut n = NormalizeAuthority::new(());
        n.raw.extend_from_slice(input);
        n.process()?;
        Ok(n.out)
    }

    fn headers_of(out: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut dec = loona_hpack::Decoder::new();
        let mut at = PREFACE_LEN;
        let mut all = Vec::new();
        while at + 9 <= out.len() {
            let len = (usize::from(out[at]) << 16) | (usize::from(out[at + 1]) << 8) | usize::from(out[at + 2]);
            if out[at + 3] == HEADERS {
                all.extend(dec.decode(&out[at + 9..at + 9 + len]).unwrap());
            }
            at += 9 + len;
        }
        all
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_a_valid_one_stays() {
        let mut enc = loona_hpack::Encoder::new();
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        push_frame(&mut input, 0x4, 0, 0, &[]);
        push_frame(&mut input, HEADERS, END_HEADERS, 1, &block(&mut enc, b"%2Frun%2Fkms.sock"));
        // The same value again comes from the client's dynamic table this time.
        push_frame(&mut input, HEADERS, END_HEADERS | END_STREAM, 3, &block(&mut enc, b"%2Frun%2Fkms.sock"));
        push_frame(&mut input, HEADERS, END_HEADERS, 5, &block(&mut enc, b"localhost:50051"));
        let out = run(&input).unwrap();
        assert!(out.starts_with(b"PRI * HTTP/2.0"));
        let auth: Vec<_> = headers_of(&out).into_iter().filter(|(n, _)| n == b":authority").map(|(_, v)| v).collect();
        assert_eq!(auth, [b"localhost".to_vec(), b"localhost".to_vec(), b"localhost:50051".to_vec()]);
    }

    #[test]
    fn continuation_padding_and_partial_frames() {
        let mut enc = loona_hpack::Encoder::new();
        let b = block(&mut enc, b"/run/kms.sock");
        let (one, two) = b.split_at(10);
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let mut padded = vec![3u8];
        padded.extend_from_slice(one);
        padded.extend_from_slice(&[0, 0, 0]);
        push_frame(&mut input, HEADERS, PADDED, 1, &padded);
        push_frame(&mut input, CONTINUATION, END_HEADERS, 1, two);
        // Byte by byte: frames split across reads are reassembled.
        let mut n = NormalizeAuthority::new(());
        for byte in &input {
            n.raw.push(*byte);
            n.process().unwrap();
        }
        let auth: Vec<_> = headers_of(&n.out).into_iter().filter(|(k, _)| k == b":authority").collect();
        assert_eq!(auth, [(b":authority".to_vec(), b"localhost".to_vec())]);
        // An interrupted block and a garbage block close the connection.
        let mut bad = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        push_frame(&mut bad, HEADERS, 0, 1, one);
        push_frame(&mut bad, 0x0, 0, 1, b"data");
        assert!(run(&bad).is_err());
        let mut garbage = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        push_frame(&mut garbage, HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(run(&garbage).is_err());
    }
}
