//! Journal news between front ends: an append notifies channel
//! `pouch_journal` in its own transaction (delivered at commit), and every
//! front end listens on one connection of its own, waking the long-polls of
//! that namespace. A lost listening connection is made again; meanwhile
//! every waiter looks at the head again (and does so every few seconds
//! anyway), so news is late at worst, never lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel appends notify, with payload "{seq} {namespace}".
pub const CHANNEL: &str = "pouch_journal";

/// The latest head heard of, per namespace.
#[derive(Default)]
pub struct News {
    heads: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl News {
    /// A receiver that changes when namespace `ns` has news.
    pub fn subscribe(&self, ns: &str) -> watch::Receiver<u64> {
        let mut heads = self.heads.lock().expect("news lock");
        heads
            .entry(ns.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Namespace `ns` has entry `seq`.
    fn heard(&self, ns: &str, seq: u64) {
        let heads = self.heads.lock().expect("news lock");
        if let Some(sender) = heads.get(ns) {
            sender.send_if_modified(|head| {
                let newer = seq > *head;
                *head = (*head).max(seq);
                newer
            });
        }
    }

    /// Wakes every waiter (news may have been missed).
    fn wake_all(&self) {
        let heads = self.heads.lock().expect("news lock");
        for sender in heads.values() {
            sender.send_modify(|_| {});
        }
    }

    /// Listens on the database `config` names until the process ends,
    /// reconnecting after a lost connection.
    pub fn listen(self: &Arc<Self>, config: tokio_postgres::Config) {
        let news = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = news.listen_once(&config).await {
                    tracing::warn!("journal news: {e}; listening again shortly");
                }
                news.wake_all();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn listen_once(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // The connection delivers notifications only while it is polled.
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = tx.send(n.payload().to_owned());
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // Anything appended before the LISTEN took effect is news too.
        self.wake_all();
        while let Some(payload) = rx.recv().await {
            if let Some((seq, ns)) = payload.split_once(' ')
                && let Ok(seq) = seq.parse()
            {
                self.heard(ns, seq);
            }
        }
        drop(client);
        driver.await.unwrap_or(Ok(()))
    }
}
