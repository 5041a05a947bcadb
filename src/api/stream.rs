//! Wrappers around the API socket's stream, below hyper: [`ExplainErrors`] gives hyper's own
//! bodiless error answers Docker's `{"message"}` body, [`WriteTimeout`] drops a client that
//! stops reading its answers.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::server::MAX_HEADER_BYTES;

/// Gives hyper's own error answers a body. hyper answers a request it cannot parse with a bare
/// `400 Bad Request` (or 431, 414) and `content-length: 0`; every other 4xx answer of the local
/// API carries a JSON body. This stream wrapper rewrites such a bodiless 4xx head, as hyper
/// writes it, into the same answer with Docker's `{"message": ...}`, so a client is told what
/// was wrong rather than only that something was.
pub struct ExplainErrors<S> {
    inner: S,
    /// A rewritten answer still to be written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
}

impl<S> ExplainErrors<S> {
    pub fn new(inner: S) -> Self {
        ExplainErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The rewritten answer when `buf` starts with hyper's bodiless 4xx head.
fn explain(buf: &[u8]) -> Option<Vec<u8>> {
    let status = buf
        .strip_prefix(b"HTTP/1.1 4")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 4"))?;
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[..head_end];
    let needle = b"\r\ncontent-length: 0\r\n";
    let at = head.windows(needle.len()).position(|w| w == needle)?;
    let message = match status.get(..2)? {
        b"31" => format!("request headers larger than the {MAX_HEADER_BYTES}-byte limit"),
        b"14" => "request URI too long".to_string(),
        _ => "malformed HTTP request: the request line or a header could not be parsed".to_string(),
    };
    let mut body = serde_json::to_vec(&super::docker::ErrorMessage { message }).ok()?;
    body.push(b'\n');
    let mut out = Vec::with_capacity(buf.len() + body.len() + 64);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[at + needle.len()..]);
    out.extend_from_slice(&body);
    out.extend_from_slice(&buf[head_end..]);
    Some(out)
}

impl<S: AsyncWrite + Unpin> ExplainErrors<S> {
    /// Writes what is pending; Ready(Ok) once nothing is.
    fn poll_pending(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.written < self.pending.len() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..])
            {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ExplainErrors<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ExplainErrors<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        match self.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some(rewritten) = explain(buf) {
            self.pending = rewritten;
            // The caller's bytes are taken whole; the rewrite goes out now or on flush.
            if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands over each answer's head in one buffer (its Flatten
    // strategy), which is what `explain` looks at.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Fails a write that stays blocked (the client reads nothing) for longer than its limit.
pub struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Pending: arm the deadline (once) and report a timeout when it passed.
    fn check_stall(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Error> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match std::future::Future::poll(sleep.as_mut(), cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?}"),
            )),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => match self.check_stall(cx) {
                Poll::Ready(err) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            },
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => match self.check_stall(cx) {
                Poll::Ready(err) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            },
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_reads_nothing_times_the_write_out() {
        use tokio::io::AsyncWriteExt;
        let (server, _client) = tokio::io::duplex(64);
        let mut w = WriteTimeout::new(server, Duration::from_millis(50));
        let err = w.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        // A client that reads keeps the connection.
        let (server, mut client) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink)
                .await
                .map(|_| sink.len())
        });
        let mut w = WriteTimeout::new(server, Duration::from_millis(50));
        w.write_all(&[0u8; 4096]).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap().unwrap(), 4096);
    }

    #[test]
    fn hypers_bare_errors_get_a_message_and_others_pass() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(explain(bare).unwrap()).unwrap();
        assert!(
            out.starts_with(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
            ),
            "{out}"
        );
        assert!(out.ends_with("\r\ndate: x\r\n\r\n{\"message\":\"malformed HTTP request: the request line or a header could not be parsed\"}\n"), "{out}");
        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(explain(big).unwrap())
            .unwrap()
            .contains("65536-byte limit"));
        assert_eq!(
            explain(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            explain(b"HTTP/1.1 404 Not Found\r\ncontent-length: 27\r\n\r\n{}"),
            None
        );
        assert_eq!(explain(b"{\"message\":\"HTTP/1.1 4\"}"), None);
        assert_eq!(explain(b"HTTP/1.1 400 Bad"), None);
    }
}
