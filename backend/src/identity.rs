//! A store's identity: a random id made once, when the store is created.
//! A device records the identity its cursor belongs to and refuses any
//! other store at the configured place (an unmounted disk, a recreated
//! folder, a bucket emptied by hand).

use std::fmt;
use std::str::FromStr;

/// The identity of one store (one namespace on one backend): 128 random
/// bits, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreId([u8; 16]);

impl StoreId {
    /// A fresh random id, from the kernel's random source.
    pub fn random() -> StoreId {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if read.is_err() {
            // No /dev/urandom (a chroot): time, process and address, hashed.
            let seed = format!(
                "{:?} {} {:p}",
                std::time::SystemTime::now(),
                std::process::id(),
                &bytes
            );
            bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
        }
        StoreId(bytes)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Text that is not a store id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a store id is 32 hex digits")]
pub struct ParseStoreIdError;

impl FromStr for StoreId {
    type Err = ParseStoreIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.len() != 32 || !text.is_ascii() {
            return Err(ParseStoreIdError);
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| ParseStoreIdError)?;
        }
        Ok(StoreId(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_round_trip() {
        let (a, b) = (StoreId::random(), StoreId::random());
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<StoreId>().unwrap(), a);
        assert_eq!(a.to_string().len(), 32);
        assert!("xyz".parse::<StoreId>().is_err());
        assert!("zz".repeat(16).parse::<StoreId>().is_err());
    }
}
