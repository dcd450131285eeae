//! Pouch's [`Backend`](pouch_backend::Backend) on Amazon S3 and
//! S3-compatible stores (MinIO, Ceph RGW, Cloudflare R2, …).
//!
//! Requests go through `object_store` (Apache Arrow): SigV4 signing,
//! retries with backoff on 5xx, throttling and timeouts, conditional puts
//! and ranged reads, with none of it written here.
//!
//! - **Journal**: one object per entry, `journal/{seq:020}`, created with
//!   `If-None-Match: *`; of racing writers the store lets exactly one
//!   create the key. [`S3Backend::probe_conditional_writes`] refuses stores
//!   that ignore the header (Garage does, silently).
//! - **Blocks** are packed: every `put_blocks` call becomes pack objects of
//!   about [`S3Config::pack_size`] bytes plus one small index per pack, so
//!   requests grow with bytes, not with the number of files. Reads are
//!   ranged GETs; a cache of the pack indexes (in memory and on disk)
//!   answers where a block is, and the bucket is listed again only on a
//!   miss. Deletes write tombstones.
//! - **Garbage collection** (`gc`): a lease object per collector run,
//!   marks as condemned (block, pack) pairs that devices stop trusting,
//!   sweeps as tombstones, then dead packs deleted and mostly dead ones
//!   rewritten.
//! - **Waiting** for journal entries polls with one HEAD per
//!   [`S3Config::poll_interval_ms`]: S3 cannot push.

mod backend;
mod batch_read;
mod blocks;
mod config;
mod credentials;
mod errors;
mod gc;
mod index;
mod journal;
mod keys;
mod pack;
mod request;

pub use backend::S3Backend;
pub use config::S3Config;
pub use credentials::Credentials;
