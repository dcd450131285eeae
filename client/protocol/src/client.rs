//! The client side: one request and its answer, or a subscription to the
//! event stream.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;

use crate::framing::{read_message, write_message};
use crate::{Error, Event, Request, Response, Result};

/// Connects to `socket`; `Ok(None)` when no daemon listens there.
async fn connect(socket: &Path) -> Result<Option<UnixStream>> {
    match UnixStream::connect(socket).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(Error::Io {
            path: socket.to_owned(),
            source,
        }),
    }
}

fn io(socket: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: socket.to_owned(),
        source,
    }
}

fn hung_up() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the daemon hung up without answering",
    )
}

/// Sends one request to the daemon behind `socket` and reads its answer.
/// `Ok(None)` when no daemon listens there.
pub async fn request(socket: &Path, request: &Request) -> Result<Option<Response>> {
    let Some(stream) = connect(socket).await? else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    write_message(&mut write, request)
        .await
        .map_err(io(socket))?;
    let answer = read_message(&mut BufReader::new(read))
        .await
        .map_err(io(socket))?
        .ok_or_else(|| io(socket)(hung_up()))?;
    answer.map(Some).map_err(|source| Error::Malformed {
        path: socket.to_owned(),
        source,
    })
}

/// Subscribes to the daemon's events; `Ok(None)` when no daemon listens.
/// Events that happen after this returns are all delivered.
pub async fn subscribe(socket: &Path) -> Result<Option<Subscription>> {
    let Some(stream) = connect(socket).await? else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    write_message(&mut write, &Request::Subscribe)
        .await
        .map_err(io(socket))?;
    Ok(Some(Subscription {
        socket: socket.to_owned(),
        lines: BufReader::new(read).lines(),
        _write: write,
    }))
}

/// A stream of the daemon's events.
pub struct Subscription {
    socket: PathBuf,
    // `Lines::next_line` is cancel-safe, so `next` can sit in a `select!`
    // beside other branches without losing half a line.
    lines: Lines<BufReader<OwnedReadHalf>>,
    // Kept open: the daemon streams until the client hangs up.
    _write: tokio::net::unix::OwnedWriteHalf,
}

impl Subscription {
    /// The next event; `Ok(None)` once the daemon has gone away. A line
    /// that is not an event (from a newer daemon) is an `Error::Malformed`,
    /// after which the stream goes on. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        match self.lines.next_line().await {
            Ok(None) => Ok(None),
            Ok(Some(line)) => {
                serde_json::from_str(&line)
                    .map(Some)
                    .map_err(|source| Error::Malformed {
                        path: self.socket.clone(),
                        source,
                    })
            }
            Err(source) => Err(Error::Io {
                path: self.socket.clone(),
                source,
            }),
        }
    }
}
