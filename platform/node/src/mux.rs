//! The stream multiplexer: yamux (`/yamux/1.0.0`, the same protocol as
//! `libp2p::yamux`), with frames sized to fill one noise message.
//!
//! `libp2p::yamux` cuts every write into 16 KiB frames and offers no way to
//! change it. Under noise each frame then becomes a message of its own: a
//! 4 MiB HUDS fragment took 256 frames, 256 AEAD calls and about as many
//! socket writes, and the per-frame work (a buffer, a channel hop to the
//! connection, a flush) cost more than the encryption. [`FRAME_BYTES`] fills
//! one noise message exactly (its 65 519 payload bytes: frame plus yamux's
//! 12-byte header), a quarter of the frames for the same bytes
//! (`ios bench huds`: devnet get 340-410 -> 470-480 MB/s). A frame of it
//! holds a link for ~5 ms at 100 Mbit/s, so small consensus messages still
//! interleave with bulk transfers.
//!
//! The wire format is unchanged: any yamux peer reads frames of any size up
//! to its window, so this node talks to every libp2p implementation.

use futures::{ready, AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Payload bytes of one yamux data frame: with its 12-byte header, the
/// 65 519-byte payload of one noise transport message.
pub const FRAME_BYTES: usize = 65_519 - 12;

/// Inbound streams held while the swarm is not asking for them; more are
/// dropped (the peer sees a reset), as `libp2p::yamux` does.
const MAX_BUFFERED_INBOUND: usize = 256;

/// The multiplexer upgrade (`SwarmBuilder::with_tcp(.., mux::Config::default)`).
#[derive(Clone, Debug)]
pub struct Config(yamux::Config);

impl Default for Config {
    fn default() -> Self {
        let mut c = yamux::Config::default();
        c.set_split_send_size(FRAME_BYTES);
        Config(c)
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = std::future::Ready<Result<Muxer<C>, io::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        std::future::ready(Ok(Muxer::new(io, self.0, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = std::future::Ready<Result<Muxer<C>, io::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        std::future::ready(Ok(Muxer::new(io, self.0, yamux::Mode::Client)))
    }
}

/// One multiplexed connection.
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    /// Streams the peer opened while the swarm polled for other progress
    /// (yamux only moves on through `poll_next_inbound`).
    inbound: VecDeque<Stream>,
    inbound_waker: Option<Waker>,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Muxer<C> {
    fn new(io: C, config: yamux::Config, mode: yamux::Mode) -> Self {
        Muxer {
            connection: yamux::Connection::new(io, config, mode),
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }

    fn poll_next_stream(&mut self, cx: &mut Context<'_>) -> Poll<Result<Stream, Error>> {
        match ready!(self.connection.poll_next_inbound(cx)) {
            Some(Ok(s)) => Poll::Ready(Ok(Stream(s))),
            Some(Err(e)) => Poll::Ready(Err(Error(e))),
            None => Poll::Ready(Err(Error(yamux::ConnectionError::Closed))),
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> StreamMuxer for Muxer<C> {
    type Substream = Stream;
    type Error = Error;

    fn poll_inbound(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Stream, Error>> {
        let this = self.get_mut();
        if let Some(s) = this.inbound.pop_front() {
            return Poll::Ready(Ok(s));
        }
        if let Poll::Ready(r) = this.poll_next_stream(cx) {
            return Poll::Ready(r);
        }
        this.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Stream, Error>> {
        let s = ready!(self.get_mut().connection.poll_new_outbound(cx)).map_err(Error)?;
        Poll::Ready(Ok(Stream(s)))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().connection.poll_close(cx).map_err(Error)
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<StreamMuxerEvent, Error>> {
        let this = self.get_mut();
        let s = ready!(this.poll_next_stream(cx))?;
        if this.inbound.len() >= MAX_BUFFERED_INBOUND {
            tracing::warn!(stream = %s.0, "dropping an inbound stream: too many unclaimed");
        } else {
            this.inbound.push_back(s);
            if let Some(w) = this.inbound_waker.take() {
                w.wake();
            }
        }
        // Let the swarm claim it (and others run) before yamux goes on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A stream of a [`Muxer`].
#[derive(Debug)]
pub struct Stream(yamux::Stream);

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

/// A yamux connection error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(yamux::ConnectionError);

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e.0 {
            yamux::ConnectionError::Io(e) => e,
            e => io::Error::other(e),
        }
    }
}
