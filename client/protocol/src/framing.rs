//! One message per line: the only framing of the protocol, used by the
//! daemon and its clients alike.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Writes `message` as one JSON line.
pub async fn write_message<W, T>(write: &mut W, message: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let mut text = serde_json::to_vec(message).expect("protocol messages serialise");
    text.push(b'\n');
    write.write_all(&text).await
}

/// Reads the next line and parses it as a `T`. `Ok(None)` at the end of
/// the stream; `Ok(Some(Err(_)))` for a line that is not a `T` (the stream
/// stays usable). Not cancel-safe (a line half read is lost): for a stream
/// read inside `select!`, see [`crate::Subscription`].
pub async fn read_message<R, T>(
    read: &mut R,
) -> std::io::Result<Option<Result<T, serde_json::Error>>>
where
    R: AsyncBufRead + Unpin,
    T: DeserializeOwned,
{
    let mut line = String::new();
    if read.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(line.trim_end_matches('\n'))))
}
